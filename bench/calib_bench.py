"""Benchmark: resolving the calibrations of many runs (issue 14), KM3DIRAC's bulk resolution against a naive
per-run query, side by side on one freshly started Rucio server (PostgreSQL). ``make bench-calib`` (or
``.venv/bin/python -m bench.calib_bench --help``). HTTP requests are counted from the server's access log.

Set-up (not timed): ``--calibrations`` files of one kind and version, each valid for ``--runs`` / ``--calibrations``
consecutive runs, registered through KM3DIRAC's catalog with their metadata (no bytes: resolution never reads them).

- bulk: :meth:`KM3DIRAC.core.calibration_store.CalibrationStore.resolve` for all runs: the version's files with their
  metadata in two requests (``list_files`` + ``get_metadata_bulk`` per 1000), then an interval index in memory.
- naive: one ``list_dids`` per run with the filter ``calib_first_run <= run <= calib_last_run`` (the metadata query
  a per-run lookup needs; it does not even fetch the file's size and checksum), on ``--baseline-runs`` runs (all by
  default). Both answers are compared run by run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.catalog_bench import RequestCounter
from KM3DIRAC.sandbox.rucio_server import client_config_text, start_rucio_server

RSE = "BENCH-DISK"
SCOPE = "bench"
KIND, VERSION, DETECTOR = "orientations", "1.0.0", 133


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000, help="runs to resolve (default 10000)")
    parser.add_argument("--calibrations", type=int, default=1_000, help="calibration files (default 1000)")
    parser.add_argument("--baseline-runs", type=int, default=0,
                        help="runs the naive per-run baseline resolves (default 0: all --runs)")
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="km3dirac-calib-bench-"))
    os.environ["TMPDIR"] = str(work_dir)
    access_log = work_dir / "access.log"
    print(f"starting a Rucio server in {work_dir} ...", flush=True)
    server = start_rucio_server(work_dir / "rucio", access_log=access_log)
    try:
        client_cfg = work_dir / "rucio-client.cfg"
        client_cfg.write_text(client_config_text(server.url))
        os.environ["RUCIO_CONFIG"] = str(client_cfg)
        return run(args, work_dir, RequestCounter(access_log))
    finally:
        server.stop()


def run(args: argparse.Namespace, work_dir: Path, counter: RequestCounter) -> int:
    from rucio.client import Client

    from KM3DIRAC.core.calibration import Period, Requirement, describe_calibration
    from KM3DIRAC.core.calibration_store import CalibrationStore
    from KM3DIRAC.core.catalog import RucioCatalog
    from KM3DIRAC.core.runs import RunKey
    from KM3DIRAC.sandbox.rucio_setup import add_directory_rse, ensure_scope

    client = Client()
    add_directory_rse(client, RSE, work_dir / "storage")
    ensure_scope(client, SCOPE)
    catalog = RucioCatalog(client)
    store = CalibrationStore(catalog, f"/km3net/{SCOPE}/calibration")
    per_file = max(1, args.runs // args.calibrations)
    dataset = store.dataset_lfn(KIND, VERSION)
    entries = {}
    for index in range(args.calibrations):
        first = 1 + index * per_file
        name = f"KM3NeT_{DETECTOR:08d}_D_{VERSION}_{first:08d}_{first + per_file - 1:08d}_1.{KIND}.root"
        calibration = describe_calibration(name, period=Period(first, first + per_file - 1))
        entries[f"{dataset}/{name}"] = {"Size": 1000, "Checksum": f"{index + 1:08x}", "SE": RSE,
                                        "Meta": calibration.metadata()}
    print(f"set-up: registering {len(entries)} calibration files ({per_file} runs each) ...", flush=True)
    registered = catalog.add_files(entries)
    assert not registered.failed, list(registered.failed.items())[:3]
    runs = [RunKey(DETECTOR, run) for run in range(1, args.runs + 1)]
    baseline_runs = runs[:args.baseline_runs or len(runs)]

    requests_before, start = counter.count(), time.perf_counter()
    resolution = store.resolve([Requirement(KIND, version=VERSION)], runs)
    bulk_seconds, bulk_requests = time.perf_counter() - start, counter.count() - requests_before
    chosen = {run.run: found.lfn if found else None for (_, run), found in resolution.chosen.items()}
    assert all(chosen.values()), "every run has a calibration in this set-up"

    did = store.catalog.mapper.to_did(dataset)
    print(f"naive: one query per run for {len(baseline_runs)} runs ...", flush=True)
    requests_before, start = counter.count(), time.perf_counter()
    naive = {}
    for run in baseline_runs:
        names = list(client.list_dids(did.scope, [{"calib_kind": KIND, "calib_version": VERSION,
                                                   "DetectorID": DETECTOR, "calib_first_run.lte": run.run,
                                                   "calib_last_run.gte": run.run}], did_type="file"))
        naive[run.run] = names[0] if len(names) == 1 else None
    naive_seconds, naive_requests = time.perf_counter() - start, counter.count() - requests_before
    wrong = [run for run, name in naive.items() if name != chosen[run]]
    assert not wrong, f"the two approaches disagree for runs {wrong[:5]}"

    scale = len(runs) / len(baseline_runs)
    print()
    print(f"{'approach':<8} {'runs':>7} {'calibrations':>12} {'seconds':>9} {'requests':>9} {'ms/run':>8}")
    print(f"{'bulk':<8} {len(runs):>7} {args.calibrations:>12} {bulk_seconds:>9.2f} {bulk_requests:>9} "
          f"{1000 * bulk_seconds / len(runs):>8.3f}")
    print(f"{'naive':<8} {len(baseline_runs):>7} {args.calibrations:>12} {naive_seconds:>9.2f} {naive_requests:>9} "
          f"{1000 * naive_seconds / len(baseline_runs):>8.3f}")
    print()
    note = "" if scale == 1 else f" (naive measured on {len(baseline_runs)} runs, scaled x{scale:.1f})"
    print(f"naive / bulk for {len(runs)} runs: time x{naive_seconds * scale / bulk_seconds:.1f}, "
          f"requests x{naive_requests * scale / max(1, bulk_requests):.0f}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
