"""Rucio's own daemons for the local sandbox, as a production Rucio runs them, one pass each every ``interval``
seconds, in this order:

- transmogrifier: applies Rucio subscriptions (``as: subscription`` in policies/replication.yaml) to new DIDs, i.e.
  makes the rules for a new run dataset whose metadata match (``dirac-km3-ingest`` sets ``datatype``,
  ``DetectorID``, ``run_number`` on a run dataset when it creates it);
- judge-evaluator: re-evaluates the rules of collections whose content changed: a rule on a still-open run
  dataset gets the locks (and so the copies) of the files attached after it was made;
- judge-cleaner: removes expired rules, marking their replicas for deletion;
- reaper (greedy): deletes every replica with a tombstone and no lock, bytes on storage first.

Run with the Rucio *server's* Python and configuration (``.venv-rucio-server``, ``RUCIO_CONFIG`` of the server:
the daemons talk to the database), started by ``dirac-km3-sandbox up``::

    .venv-rucio-server/bin/python -m KM3DIRAC.sandbox.rucio_daemons 3
    .venv-rucio-server/bin/python -m KM3DIRAC.sandbox.rucio_daemons --once --only transmogrifier,judge-evaluator

Nothing transfers here: Rucio's conveyor needs FTS; copies are made by the sandbox's DIRAC RMS mover
(``dirac-km3-replicate``, README "Replication and deletion at the shore station").
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

#: DIDs (new ones for the transmogrifier, changed collections for the judge-evaluator) taken in one pass; Rucio's
#: defaults (5 and 100) leave a night's runs for many passes
DIDS_PER_PASS = 10000


def daemon_passes() -> dict[str, Callable[[], object]]:
    """One pass of each daemon, by name, in the order they run."""
    from rucio.daemons.judge.cleaner import rule_cleaner
    from rucio.daemons.judge.evaluator import re_evaluator
    from rucio.daemons.reaper.reaper import reaper
    from rucio.daemons.transmogrifier.transmogrifier import transmogrifier

    return {
        "transmogrifier": lambda: transmogrifier(bulk=DIDS_PER_PASS, once=True),
        "judge-evaluator": lambda: re_evaluator(once=True, did_limit=DIDS_PER_PASS),
        "judge-cleaner": lambda: rule_cleaner(once=True),
        "reaper": lambda: reaper(rses=[], include_rses=None, exclude_rses=None, once=True, greedy=True),
    }


def run_passes(names: list[str]) -> None:
    passes = daemon_passes()
    for name in names:
        try:
            passes[name]()
        except Exception:  # one failed pass (database busy ...) must not stop the others
            logging.getLogger("km3dirac.rucio_daemons").exception("%s pass failed", name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("interval", nargs="?", type=float, default=3.0, help="seconds between passes (3)")
    parser.add_argument("--once", action="store_true", help="one pass of each daemon, then exit")
    parser.add_argument("--only", default="", help="comma-separated daemons to run (default: all)")
    args = parser.parse_args(argv)
    known = list(daemon_passes())
    names = [name.strip() for name in args.only.split(",") if name.strip()] or known
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown daemon(s) {', '.join(unknown)}: choose among {', '.join(known)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    while True:
        run_passes(names)
        if args.once:
            return
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
