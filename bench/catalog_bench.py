"""Benchmark: KM3DIRAC's Rucio catalog against DIRAC core's RucioFileCatalogClient and raw bulk rucio-clients calls.

Same freshly started Rucio server (PostgreSQL), same run, side by side. Run with ``make bench-catalog`` (or
``.venv/bin/python -m bench.catalog_bench --help``). HTTP requests are counted from the server's access log.

Workloads (issue "A Rucio FileCatalog plugin ..."): register N files; ``exists``, ``getFileMetadata``,
``getReplicas`` on N LFNs; ``findFilesByMetadata`` over M DIDs. DIRAC core's client costs about 50 s per 1000
registrations, so it runs on ``--core-files`` LFNs and its numbers are compared per LFN.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from KM3DIRAC.sandbox.dirac_config import LocalDiracConfig, LocalStorage, RucioCatalogSettings
from KM3DIRAC.sandbox.rucio_server import (
    ROOT_ACCOUNT,
    ROOT_PASSWORD,
    ROOT_USERNAME,
    RucioServer,
    client_config_text,
    start_rucio_server,
)

RSE = "BENCH-DISK"
SCOPE = "bench"


@dataclass
class Measurement:
    workload: str
    approach: str
    lfns: int
    seconds: float
    requests: int

    @property
    def per_1000(self) -> float:
        return self.seconds * 1000 / self.lfns

    @property
    def requests_per_1000(self) -> float:
        return self.requests * 1000 / self.lfns


class RequestCounter:
    def __init__(self, access_log: Path) -> None:
        self.access_log = access_log

    def count(self) -> int:
        try:
            with open(self.access_log, "rb") as log:
                return sum(1 for _ in log)
        except FileNotFoundError:
            return 0


def measure(counter: RequestCounter, workload: str, approach: str, lfns: int, action: Callable[[], object],
            check: Callable[[object], None], repeats: int = 1) -> Measurement:
    """Median wall time of ``repeats`` runs (writes run once); requests counted on the last run."""
    times = []
    for _ in range(repeats):
        time.sleep(0.2)  # let gunicorn flush its access log
        before = counter.count()
        start = time.perf_counter()
        outcome = action()
        times.append(time.perf_counter() - start)
        time.sleep(0.2)
        requests = counter.count() - before
        check(outcome)
    return Measurement(workload, approach, lfns, statistics.median(times), requests)


def all_successful(expected: int) -> Callable[[dict], None]:
    def check(result: dict) -> None:
        assert result["OK"], result
        value = result["Value"]
        assert not value["Failed"], list(value["Failed"].items())[:3]
        assert len(value["Successful"]) == expected, (len(value["Successful"]), expected)

    return check


def file_entries(lfns: list[str]) -> dict[str, dict]:
    return {lfn: {"PFN": "", "Size": 1000 + i, "SE": RSE, "GUID": str(uuid.uuid4()).upper(),
                  "Checksum": f"{(i * 7919) % 0xFFFFFFFF:08x}", "ChecksumType": "AD"} for i, lfn in enumerate(lfns)}


def raw_register(client, lfns: list[str], entries: dict[str, dict]) -> dict:
    """The raw bulk calls doing what KM3DIRAC's addFile does: replicas, attachment, one dataset rule."""
    dataset = lfns[0].rsplit("/", 1)[0]
    client.add_dataset(SCOPE, dataset)
    for start in range(0, len(lfns), 1000):
        chunk = lfns[start:start + 1000]
        client.add_replicas(RSE, [{"scope": SCOPE, "name": lfn, "bytes": entries[lfn]["Size"],
                                   "adler32": entries[lfn]["Checksum"],
                                   "meta": {"guid": entries[lfn]["GUID"].replace("-", "").lower()}} for lfn in chunk])
        client.attach_dids(SCOPE, dataset, [{"scope": SCOPE, "name": lfn} for lfn in chunk])
    client.add_replication_rule([{"scope": SCOPE, "name": dataset}], 1, RSE, grouping="NONE")
    return {"OK": True, "Value": {"Successful": dict.fromkeys(lfns, True), "Failed": {}}}


def raw_bulk_read(call: Callable[[list[dict]], list], lfns: list[str]) -> dict:
    found = {}
    for start in range(0, len(lfns), 1000):
        for row in call([{"scope": SCOPE, "name": lfn} for lfn in lfns[start:start + 1000]]):
            found[row["name"]] = row
    return {"OK": True, "Value": {"Successful": found, "Failed": {}}}


def run(args: argparse.Namespace) -> list[Measurement]:
    work_dir = Path(tempfile.mkdtemp(prefix="km3dirac-bench-"))
    os.environ["TMPDIR"] = str(work_dir)
    access_log = work_dir / "access.log"
    print(f"starting a Rucio server in {work_dir} ...", flush=True)
    server = start_rucio_server(work_dir / "rucio", access_log=access_log)
    try:
        return _run_against(server, work_dir, RequestCounter(access_log), args)
    finally:
        server.stop()


def _run_against(server: RucioServer, work_dir: Path, counter: RequestCounter,
                 args: argparse.Namespace) -> list[Measurement]:
    client_cfg = work_dir / "rucio-client.cfg"
    client_cfg.write_text(client_config_text(server.url))
    os.environ["RUCIO_CONFIG"] = str(client_cfg)

    from DIRAC.Resources.Catalog.RucioFileCatalogClient import RucioFileCatalogClient as CoreCatalog
    from DIRAC.tests.Utilities.utils import generateDIRACConfig
    from rucio.client import Client

    from KM3DIRAC.sandbox.rucio_setup import add_directory_rse, ensure_scope

    client = Client()
    add_directory_rse(client, RSE, work_dir / "storage")
    client.add_rse_attribute(RSE, "ANY", True)  # Rucio's DIRAC endpoint (DIRAC core's addFile) pins with ANY=true
    ensure_scope(client, SCOPE)
    # Rucio's DIRAC endpoint (DIRAC core's addFile) also registers the VO root /km3net, in scope km3net, and fails
    # with an IndexError (rucio/core/dirac.py) unless that top container already exists
    ensure_scope(client, "km3net")
    client.add_container("km3net", "/km3net")
    settings = RucioCatalogSettings(server.url, server.url, ROOT_ACCOUNT, ROOT_USERNAME, ROOT_PASSWORD)
    cfg = LocalDiracConfig(catalog=settings, storages=[LocalStorage(RSE, work_dir / "storage")]).render()
    results: list[Measurement] = []
    with generateDIRACConfig(cfg, f"km3dirac-bench-{uuid.uuid4().hex}.cfg"):
        from DIRAC.Resources.Catalog.FileCatalogFactory import FileCatalogFactory

        ours = FileCatalogFactory().createCatalog("RucioFileCatalog")["Value"]
        assert type(ours).__module__.startswith("KM3DIRAC"), type(ours)
        core = CoreCatalog(DiracScopeAlg="dirac")
        sets = {
            "KM3DIRAC": [f"/km3net/{SCOPE}/ours/run1/f{i:06d}.root" for i in range(args.files)],
            "raw bulk": [f"/km3net/{SCOPE}/raw/run1/f{i:06d}.root" for i in range(args.files)],
            "DIRAC core": [f"/km3net/{SCOPE}/core/run1/f{i:06d}.root" for i in range(args.core_files)],
        }
        entries = {name: file_entries(lfns) for name, lfns in sets.items()}
        print(f"register: {args.files} files (KM3DIRAC, raw), {args.core_files} (DIRAC core)", flush=True)
        results += [
            measure(counter, "register", "KM3DIRAC", args.files, lambda: ours.addFile(entries["KM3DIRAC"]),
                    all_successful(args.files)),
            measure(counter, "register", "raw bulk", args.files,
                    lambda: raw_register(client, sets["raw bulk"], entries["raw bulk"]), all_successful(args.files)),
            measure(counter, "register", "DIRAC core", args.core_files, lambda: core.addFile(entries["DIRAC core"]),
                    all_successful(args.core_files)),
        ]
        for workload, ours_call, core_call, raw_call in (
            ("exists", ours.exists, core.exists,
             lambda dids: client.get_metadata_bulk(dids, plugin="DID_COLUMN")),
            ("getFileMetadata", ours.getFileMetadata, core.getFileMetadata,
             lambda dids: client.get_metadata_bulk(dids, plugin="DID_COLUMN")),
            ("getReplicas", ours.getReplicas, core.getReplicas,
             lambda dids: client.list_replicas(dids, resolve_archives=False)),
        ):
            print(f"{workload}: {args.files} / {args.core_files} LFNs", flush=True)
            results += [
                measure(counter, workload, "KM3DIRAC", args.files, lambda c=ours_call: c(sets["KM3DIRAC"]),
                        all_successful(args.files), args.repeats),
                measure(counter, workload, "raw bulk", args.files,
                        lambda c=raw_call: raw_bulk_read(c, sets["raw bulk"]), all_successful(args.files),
                        args.repeats),
                measure(counter, workload, "DIRAC core", args.core_files,
                        lambda c=core_call: c(sets["DIRAC core"]), all_successful(args.core_files), args.repeats),
            ]
        results += _find_benchmark(client, ours, core, counter, args)
    return results


def _find_benchmark(client, ours, core, counter: RequestCounter, args: argparse.Namespace) -> list[Measurement]:
    """findFilesByMetadata over ``args.find_dids`` files with run_number metadata (a Rucio column key)."""
    print(f"findFilesByMetadata: registering {args.find_dids} DIDs with metadata (setup, not timed)", flush=True)
    runs = 100
    per_run = max(1, args.find_dids // runs)
    for run in range(runs):
        dataset = f"/km3net/{SCOPE}/find/run{run:05d}"
        client.add_dataset(SCOPE, dataset)
        names = [f"{dataset}/f{i:06d}.root" for i in range(per_run)]
        for start in range(0, len(names), 1000):
            chunk = names[start:start + 1000]
            client.add_replicas(RSE, [{"scope": SCOPE, "name": name, "bytes": 1, "adler32": "00000001",
                                       "meta": {"run_number": run}} for name in chunk])
            client.attach_dids(SCOPE, dataset, [{"scope": SCOPE, "name": name} for name in chunk])
    query = {"run_number": {">=": runs - 5}}
    expected = 5 * per_run
    path = f"/km3net/{SCOPE}/find"

    def check(result) -> None:
        lfns = result["Value"] if isinstance(result, dict) else result
        assert len(lfns) == expected, (len(lfns), expected)

    def raw_find():
        return list(client.list_dids(SCOPE, [{"run_number.gte": runs - 5, "name": f"{path}/*"}], did_type="file"))

    measurements = [
        measure(counter, "findFilesByMetadata", "KM3DIRAC", args.find_dids,
                lambda: ours.findFilesByMetadata(query, path), check, args.repeats),
        measure(counter, "findFilesByMetadata", "raw bulk", args.find_dids, raw_find, check, args.repeats),
    ]
    core_result = None
    try:
        core_result = measure(counter, "findFilesByMetadata", "DIRAC core", args.find_dids,
                              lambda: core.findFilesByMetadata(query, path), check, args.repeats)
    except AssertionError as error:
        print(f"DIRAC core findFilesByMetadata gave a wrong answer: {error}", flush=True)
    if core_result:
        measurements.append(core_result)
    return measurements


def report(results: list[Measurement]) -> None:
    print()
    print(f"{'workload':<20} {'approach':<11} {'LFNs':>7} {'seconds':>9} {'s/1000':>8} {'req/1000':>9}")
    for m in results:
        print(f"{m.workload:<20} {m.approach:<11} {m.lfns:>7} {m.seconds:>9.2f} {m.per_1000:>8.3f} "
              f"{m.requests_per_1000:>9.1f}")
    print()
    print(f"{'workload':<20} {'DIRAC core / KM3DIRAC':>22} {'KM3DIRAC / raw bulk':>20}   (per LFN)")
    workloads = list(dict.fromkeys(m.workload for m in results))
    for workload in workloads:
        by = {m.approach: m for m in results if m.workload == workload}
        ours = by["KM3DIRAC"].per_1000
        speedup = f"{by['DIRAC core'].per_1000 / ours:.1f}x faster" if "DIRAC core" in by else "n/a"
        versus_raw = f"{ours / by['raw bulk'].per_1000:.2f}" if "raw bulk" in by else "n/a"
        print(f"{workload:<20} {speedup:>22} {versus_raw:>20}")
    geo = statistics.geometric_mean(
        [by_ratio for by_ratio in (
            next(m for m in results if m.workload == w and m.approach == "KM3DIRAC").per_1000
            / next(m for m in results if m.workload == w and m.approach == "raw bulk").per_1000
            for w in workloads)])
    print(f"geometric mean KM3DIRAC / raw bulk: {geo:.2f} (target <= 1.3 everywhere)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000, help="LFNs for KM3DIRAC and raw bulk (default 10000)")
    parser.add_argument("--core-files", type=int, default=1000, help="LFNs for DIRAC core's client (default 1000)")
    parser.add_argument("--find-dids", type=int, default=100_000,
                        help="DIDs findFilesByMetadata searches (default 100000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each read workload, median (default 3)")
    args = parser.parse_args(argv)
    report(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
