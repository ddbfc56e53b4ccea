"""Rucio's own deletion daemons for the local sandbox, as a production Rucio runs them: judge-cleaner (removes
expired rules, marking their replicas for deletion) then reaper (greedy: deletes every replica with a tombstone
and no lock, bytes on storage first), one pass every ``interval`` seconds.

Run with the Rucio *server's* Python and configuration (``.venv-rucio-server``, ``RUCIO_CONFIG`` of the server:
the daemons talk to the database), started by ``dirac-km3-sandbox up``::

    .venv-rucio-server/bin/python -m KM3DIRAC.sandbox.rucio_daemons 3

Nothing transfers here: Rucio's conveyor needs FTS; copies are made by the sandbox's DIRAC RMS mover
(``dirac-km3-replicate``, README "Replication and deletion at the shore station").
"""

from __future__ import annotations

import logging
import sys
import time


def main(interval: float) -> None:
    from rucio.daemons.judge.cleaner import rule_cleaner
    from rucio.daemons.reaper.reaper import reaper

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    while True:
        for name, daemon in (("judge-cleaner", lambda: rule_cleaner(once=True)),
                             ("reaper", lambda: reaper(rses=[], include_rses=None, exclude_rses=None, once=True,
                                                       greedy=True))):
            try:
                daemon()
            except Exception:  # one failed pass (database busy ...) must not stop the loop
                logging.getLogger("km3dirac.rucio_daemons").exception("%s pass failed", name)
        time.sleep(interval)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
