"""Benchmark: shore-station ingestion (``dirac-km3-ingest``'s core) against the raw bulk rucio-clients calls doing
the same in one stream (issue 13: 100k files in under 5 minutes, linear growth).

Run with ``make bench-ingest`` (or ``.venv/bin/python -m bench.ingest_bench --help``). A Rucio server of its own
(PostgreSQL) is started; a non-deterministic shore RSE holds the DAQ directory, a deterministic RSE stands for a
computing centre. At each size (``--sizes``, default 10k and 100k files, ``--files-per-run`` per run, every run
with its end-of-run marker), the DAQ directory is filled with small files named like KM3NeT raw data, then:

- ``km3dirac``: one ingestion pass (:class:`KM3DIRAC.core.ingest.Ingestion`, ``--streams`` calls in flight):
  scan, existence check in Rucio, adler32, run datasets (with their parent containers and the run's metadata),
  registration with PFN and attachment in one ``attach_dids_to_dids`` call per 1000 files naming the shore RSE, a
  rule per run dataset at the shore RSE and one at the computing-centre RSE, closing the run datasets; the run's
  metadata is on the run dataset, which the files inherit in DIRAC's metadata searches;
  each file carries ``run_number`` and ``datatype`` too (``FileMetadata = columns``, the default);
- ``km3dirac-all``: the same with ``FileMetadata = all``: ``DetectorID`` and ``Stream`` on every file too (the raw
  calls write ``DetectorID``, ``run_number``, ``datatype`` on every file);
- ``raw``: the same writes as plain bulk rucio-clients calls in one stream, with no existence check: containers
  and datasets by ``add_dids``, ``add_replicas`` (1000 files a call, PFN and metadata), ``attach_dids_to_dids``,
  ``add_replication_rule`` on 1000 datasets a call per RSE, ``set_status`` per dataset; adler32 computed alike.

Each approach writes into its own scope (fresh names). km3io is not run (the files are not ROOT files; reading
events costs per file what km3io costs, the same with or without KM3DIRAC). HTTP requests are counted from the
server's access log.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from KM3DIRAC.sandbox.rucio_server import client_config_text, start_rucio_server

SHORE, CENTRE = "BENCH-SHORE", "BENCH-CC"
#: ``km3dirac``: the default (the run's metadata on its run dataset, the files inherit it in DIRAC's searches;
#: run_number and datatype on every file too, Rucio DID columns);
#: ``km3dirac-all``: ``FileMetadata = all`` (DetectorID and Stream on every file too)
ALL_METADATA_VARIANT = "km3dirac-all"
APPROACHES = ("raw", "km3dirac", ALL_METADATA_VARIANT)
SCOPE_PREFIX = {"raw": "raw", "km3dirac": "km3", ALL_METADATA_VARIANT: "km3f"}
DETECTOR = 133


def write_files(daq: Path, files: int, per_run: int, first_run: int) -> list[int]:
    runs = []
    for index in range(files):
        run = first_run + index // per_run
        if not runs or runs[-1] != run:
            runs.append(run)
            (daq / f"KM3NeT_{DETECTOR:08d}_{run:08d}.end").write_text("")
        name = f"KM3NeT_{DETECTOR:08d}_{run:08d}.f{index % per_run:05d}.root"
        (daq / name).write_bytes(name.encode() * 4)
    old = time.time() - 3600
    for path in daq.iterdir():
        os.utime(path, (old, old))
    return runs


def count_requests(access_log: Path) -> int:
    with open(access_log, "rb") as log:
        return sum(1 for _ in log)


def ingest_km3dirac(client, scope: str, daq: Path, streams: int, file_metadata: str = "columns") -> None:
    from KM3DIRAC.core.catalog import RucioCatalog
    from KM3DIRAC.core.ingest import Ingestion, IngestSettings

    settings = IngestSettings(rse=SHORE, directory=daq, scope=scope, settle_seconds=0, read_events=False,
                              dataset_rules=(CENTRE,), streams=streams, file_metadata=file_metadata)
    result = Ingestion(RucioCatalog(client), settings).run_pass()
    assert not result.refused, list(result.refused.items())[:3]
    assert sum(o.closed for o in result.runs.values()) == len(result.runs)


def locks_made(client, scope: str) -> int:
    """Locks of every rule in ``scope`` (ok, replicating or stuck): one per file and rule once evaluated."""
    return sum(rule["locks_ok_cnt"] + rule["locks_replicating_cnt"] + rule["locks_stuck_cnt"]
               for rule in client.list_replication_rules(filters={"scope": scope}))


def evaluate_rules(server, client, scope: str, expected_locks: int, max_passes: int = 50) -> int:
    """Run Rucio's judge-evaluator (one pass a process, as the sandbox runs it) until the rules of ``scope`` have
    ``expected_locks``; the passes it took."""
    for passes in range(1, max_passes + 1):
        subprocess.run([str(server.venv / "bin" / "python"), "-m", "KM3DIRAC.sandbox.rucio_daemons", "--once",
                        "--only", "judge-evaluator"], env=server.server_env(), check=True, capture_output=True)
        if locks_made(client, scope) >= expected_locks:
            return passes
    raise RuntimeError(f"{scope}: {locks_made(client, scope)} locks after {max_passes} judge-evaluator passes, "
                       f"{expected_locks} expected")


def ingest_raw(client, scope: str, daq: Path, pfn_prefix: str) -> None:
    from KM3DIRAC.core.checksums import adler32_of_file
    from KM3DIRAC.core.runs import KM3NET_FILE_NAME

    by_run: dict[int, list[Path]] = defaultdict(list)
    for path in sorted(daq.iterdir()):
        if path.suffix == ".root":
            by_run[int(KM3NET_FILE_NAME.match(path.name).group(2))].append(path)
    top = f"/km3net/{scope}/raw"
    detector = f"{top}/{DETECTOR}"
    datasets = {run: f"{detector}/{run}" for run in by_run}
    client.add_dids([{"scope": scope, "name": top, "type": "CONTAINER"},
                     {"scope": scope, "name": detector, "type": "CONTAINER"}])
    client.attach_dids(scope, top, [{"scope": scope, "name": detector}])
    names = list(datasets.values())
    for start in range(0, len(names), 1000):
        chunk = names[start:start + 1000]
        client.add_dids([{"scope": scope, "name": name, "type": "DATASET"} for name in chunk])
        client.attach_dids(scope, detector, [{"scope": scope, "name": name} for name in chunk])
    files = [(run, path) for run, paths in by_run.items() for path in paths]
    for start in range(0, len(files), 1000):
        chunk = files[start:start + 1000]
        replicas = []
        for run, path in chunk:
            replicas.append({"scope": scope, "name": f"{datasets[run]}/{path.name}", "bytes": path.stat().st_size,
                             "adler32": adler32_of_file(path), "pfn": f"{pfn_prefix}{path}",
                             "meta": {"DetectorID": DETECTOR, "run_number": run, "datatype": "raw"}})
        client.add_replicas(SHORE, replicas)
        children = defaultdict(list)
        for (run, _), replica in zip(chunk, replicas, strict=True):
            children[datasets[run]].append({"scope": scope, "name": replica["name"]})
        client.attach_dids_to_dids([{"scope": scope, "name": d, "dids": c} for d, c in children.items()])
    for rse in (SHORE, CENTRE):
        for start in range(0, len(names), 1000):
            client.add_replication_rule([{"scope": scope, "name": n} for n in names[start:start + 1000]], 1, rse,
                                        grouping="NONE", ignore_availability=True)
    for name in names:
        client.set_status(scope, name, open=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="files per measurement (default 10000,100000)")
    parser.add_argument("--files-per-run", type=int, default=100)
    parser.add_argument("--streams", type=int, default=2, help="KM3DIRAC's calls in flight (Ingestion/Streams)")
    parser.add_argument("--approaches", default=",".join(APPROACHES),
                        help=f"comma-separated, of {', '.join(APPROACHES)} (default: all)")
    args = parser.parse_args(argv)
    approaches = [a for a in APPROACHES if a in args.approaches.split(",")]
    if "raw" not in approaches:
        parser.error("--approaches must include raw: the ratios are against it")
    sizes = [int(size) for size in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="km3dirac-ingest-bench-"))
    os.environ["TMPDIR"] = str(work)
    access_log = work / "access.log"
    print(f"starting a Rucio server in {work} ...", flush=True)
    server = start_rucio_server(work / "rucio", access_log=access_log)
    rows = []
    try:
        client_cfg = work / "rucio-client.cfg"
        client_cfg.write_text(client_config_text(server.url))
        os.environ["RUCIO_CONFIG"] = str(client_cfg)
        from rucio.client import Client

        from KM3DIRAC.sandbox.rucio_setup import add_directory_rse, connect_rses, ensure_scope

        client = Client(timeout=3600)  # the raw rule calls on 1000 datasets make 100k locks synchronously
        add_directory_rse(client, SHORE, work / "shore", deterministic=False)
        add_directory_rse(client, CENTRE, work / "centre")
        connect_rses(client, [SHORE, CENTRE])
        first_run = 10000
        for size in sizes:
            for approach in approaches:
                scope = f"{SCOPE_PREFIX[approach]}{size}"
                ensure_scope(client, scope)
                daq = work / "shore" / f"daq-{scope}"
                daq.mkdir(parents=True)
                runs = write_files(daq, size, args.files_per_run, first_run)
                before = count_requests(access_log)
                started = time.monotonic()
                if approach == "raw":
                    ingest_raw(client, scope, daq, "file://localhost")
                else:
                    mode = "all" if approach == ALL_METADATA_VARIANT else "columns"
                    ingest_km3dirac(client, scope, daq, args.streams, file_metadata=mode)
                seconds = time.monotonic() - started
                requests = count_requests(access_log) - before
                # KM3DIRAC's rules exist before the files: Rucio's judge-evaluator makes their locks afterwards
                evaluated = time.monotonic()
                passes = evaluate_rules(server, client, scope, 2 * size) if approach != "raw" else 0
                locks_seconds = time.monotonic() - evaluated
                assert locks_made(client, scope) == 2 * size, (scope, locks_made(client, scope))
                rows.append((size, approach, len(runs), seconds, requests, locks_seconds))
                load = os.getloadavg()[0]
                print(f"{size:>7} files, {len(runs):>5} runs, {approach:<14}: {seconds:7.1f} s, "
                      f"{size / seconds:6.0f} files/s, {1000 * seconds / size:5.2f} ms a file, {requests} requests, "
                      f"then locks by judge-evaluator {locks_seconds:.1f} s ({passes} passes), "
                      f"load average {load:.1f} (2 cores)", flush=True)
    finally:
        server.stop()
    print()
    print("pass: the ingestion itself (raw: every call, its rules' locks made synchronously); +locks: until Rucio's")
    print("judge-evaluator has made the locks of rules made before their files (KM3DIRAC), daemon start-ups included")
    print("files    runs  approach         pass s  files/s  ms a file  pass/raw  +locks s  (+locks)/raw  reqs (raw)")
    by_size = defaultdict(dict)
    for size, approach, runs, seconds, requests, locks_seconds in rows:
        by_size[size][approach] = (runs, seconds, requests, locks_seconds)
    for size, entry in by_size.items():
        _, raw_s, raw_r, _ = entry["raw"]
        for approach in approaches:
            runs, seconds, requests, locks_seconds = entry[approach]
            print(f"{size:<8} {runs:<5} {approach:<16} {seconds:6.1f} {size / seconds:8.0f} "
                  f"{1000 * seconds / size:10.2f} {seconds / raw_s:9.2f} {seconds + locks_seconds:9.1f} "
                  f"{(seconds + locks_seconds) / raw_s:12.2f}  {requests} ({raw_r})")
    if len(by_size) > 1:
        small, large = min(by_size), max(by_size)
        for approach in approaches:
            for what, total in (("pass", lambda entry: entry[1]), ("pass+locks", lambda entry: entry[1] + entry[3])):
                growth = total(by_size[large][approach]) / total(by_size[small][approach])
                print(f"{approach} {what} growth {small} -> {large} files: x{growth:.1f} time for "
                      f"x{large / small:.0f} files, time per file x{growth * small / large:.2f} (linear: 1.00)")
    print("absolute times are on a machine shared with other work (loaded): compare the ratios")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
