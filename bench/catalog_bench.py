"""Benchmark: KM3DIRAC's Rucio catalog against DIRAC core's RucioFileCatalogClient and raw bulk rucio-clients calls.

Same freshly started Rucio server (PostgreSQL), same run, side by side. Run with ``make bench-catalog`` (or
``.venv/bin/python -m bench.catalog_bench --help``). HTTP requests are counted from the server's access log.

Workloads (issue "A Rucio FileCatalog plugin ..."): register N files; ``exists``, ``getFileMetadata``,
``getReplicas`` on N LFNs; ``findFilesByMetadata`` over M DIDs. DIRAC core's client costs about 50 s per 1000
registrations, so it runs on ``--core-files`` LFNs and its numbers are compared per LFN.

Scale (issue "The catalog: ... fast at a million files"): ``--sizes`` (default 10k, 100k, 1M files in
``--datasets`` run datasets) are seeded by SQL straight into the benchmark's own PostgreSQL: one file, its
replica and its attachment are registered through KM3DIRAC's ``addFile`` as a template, and their rows in Rucio's
``dids``, ``contents`` and ``replicas`` tables are copied with new names (``INSERT ... SELECT ... generate_series``),
then ``ANALYZE``. Registering 1M files through the REST API would take about an hour here; the reads measured
afterwards go through the same server, tables and indexes as rows Rucio inserted itself. Measured at each size:
``exists`` and the TransformationAgent's question, ``getReplicas`` without URLs, against raw rucio-clients calls
(``get_metadata_bulk``; ``list_replicas``, the raw way to learn where each file is, on ``--raw-sample`` files of
the same tables and compared per LFN; and the raw deep ``list_dataset_replicas`` + ``list_files`` calls KM3DIRAC
makes). Peak memory: the rise of this process's resident memory during the call (sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
    peak_mb: float = 0.0

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


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """The rise of this process's resident memory while a call runs, sampled every 20 ms."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed memory back, for a clean starting level
        except OSError:
            pass
        self.start = self.peak = _resident_bytes()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _resident_bytes())

    def __exit__(self, *exc) -> None:
        self.peak = max(self.peak, _resident_bytes())
        self._done.set()
        self._thread.join()

    @property
    def rise_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def measure(counter: RequestCounter, workload: str, approach: str, lfns: int, action: Callable[[], object],
            check: Callable[[object], None], repeats: int = 1) -> Measurement:
    """Median wall time of ``repeats`` runs (writes run once); requests counted on the last run, memory: the
    largest rise."""
    times = []
    peak = 0.0
    for _ in range(repeats):
        time.sleep(0.2)  # let gunicorn flush its access log
        before = counter.count()
        with PeakMemory() as memory:
            start = time.perf_counter()
            outcome = action()
            times.append(time.perf_counter() - start)
        peak = max(peak, memory.rise_mb)
        time.sleep(0.2)
        requests = counter.count() - before
        check(outcome)
        del outcome
    result = Measurement(workload, approach, lfns, statistics.median(times), requests, peak)
    print(f"  {workload} {approach}: {lfns} LFNs in {result.seconds:.2f} s, {requests} requests, "
          f"peak {peak:.0f} MB", flush=True)
    return result


def measure_interleaved(counter: RequestCounter, workload: str,
                        approaches: list[tuple[str, int, Callable[[], object], Callable[[object], None]]],
                        repeats: int) -> list[Measurement]:
    """:func:`measure` of several approaches taking turns (A, B, A, B, ...), so that on a shared machine each sees
    the same load; median per approach."""
    runs: dict[str, list[Measurement]] = {name: [] for name, *_ in approaches}
    for _ in range(repeats):
        for name, lfns, action, check in approaches:
            runs[name].append(measure(counter, workload, name, lfns, action, check))
    medians = []
    for name, lfns, *_ in approaches:
        done = runs[name]
        medians.append(Measurement(workload, name, lfns, statistics.median(m.seconds for m in done), done[-1].requests,
                                   max(m.peak_mb for m in done)))
    return medians


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
        if args.files:
            results += _rest_benchmark(server, client, ours, core, counter, args)
        for size in args.sizes:
            results += _scale_benchmark(server, client, ours, counter, size, args)
    return results


def _rest_benchmark(server: RucioServer, client, ours, core, counter: RequestCounter,
                    args: argparse.Namespace) -> list[Measurement]:
    """Every workload on ``args.files`` files registered through the REST API, DIRAC core on ``args.core_files``."""
    results: list[Measurement] = []
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
        # the TransformationAgent's question: DataManager.getReplicasForJobs(lfns, getUrl=False)
        ("getReplicas no URLs", lambda lfns: ours.getReplicas(lfns, getUrl=False), core.getReplicas,
         lambda dids: client.list_replicas(dids, resolve_archives=False)),
    ):
        print(f"{workload}: {args.files} / {args.core_files} LFNs", flush=True)
        results += measure_interleaved(counter, workload, [  # taking turns: on a shared machine, the same load
            ("KM3DIRAC", args.files, lambda c=ours_call: c(sets["KM3DIRAC"]), all_successful(args.files)),
            ("raw bulk", args.files, lambda c=raw_call: raw_bulk_read(c, sets["raw bulk"]),
             all_successful(args.files)),
            ("DIRAC core", args.core_files, lambda c=core_call: c(sets["DIRAC core"]),
             all_successful(args.core_files)),
        ], args.repeats)
    results += _find_benchmark(server, client, ours, core, counter, args)
    return results


def _psql(server: RucioServer, sql: str) -> str:
    postgres = server.postgres
    command = [str(postgres.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres",
               "-d", "rucio", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def _columns(server: RucioServer, table: str) -> list[str]:
    return _psql(server, f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' "
                         "ORDER BY ordinal_position").split()


def _clone(server: RucioServer, table: str, template: str, count: int, names: dict[str, str]) -> None:
    """Copy the template row ``count`` times (``i`` = 0..count-1), with the given column expressions."""
    columns = _columns(server, table)
    select = ", ".join(names.get(column, f"t.{column}") for column in columns)
    _psql(server, f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM {table} t, "
                  f"generate_series(0, {count - 1}) AS i WHERE {template}")


def seed_by_sql(server: RucioServer, ours, size: int, datasets: int) -> tuple[list[str], list[str]]:
    """``size`` files in ``datasets`` run datasets at the benchmark RSE, as Rucio stores KM3DIRAC's addFile:
    DID rows, one AVAILABLE replica each, attached to their run dataset. Returns (file LFNs, dataset names)."""
    base = f"/km3net/{SCOPE}/s{size}"
    template_dataset = f"/km3net/{SCOPE}/template{size}/run"
    template_file = f"{template_dataset}/f.root"
    added = ours.addFile({template_file: {"PFN": "", "Size": 1000, "SE": RSE, "GUID": "", "Checksum": "0000abcd"}})
    assert added["OK"] and not added["Value"]["Failed"], added
    per = size // datasets
    run = f"lpad((i / {per})::text, 5, '0')"
    file_name = f"format('{base}/run%s/f%s.root', {run}, lpad(i::text, 7, '0'))"
    dataset_name = f"format('{base}/run%s', lpad(i::text, 5, '0'))"
    file_row = f"t.scope = '{SCOPE}' AND t.name = '{template_file}'"
    _clone(server, "dids", f"t.scope = '{SCOPE}' AND t.name = '{template_dataset}'", datasets,
           {"name": dataset_name, "length": str(per), "bytes": str(per * 1000)})
    _clone(server, "dids", file_row, size, {"name": file_name, "guid": f"md5({file_name})::uuid"})
    _clone(server, "replicas", file_row, size, {"name": file_name})
    _clone(server, "contents", f"t.scope = '{SCOPE}' AND t.child_name = '{template_file}'", size,
           {"name": f"format('{base}/run%s', {run})", "child_name": file_name, "guid": f"md5({file_name})::uuid"})
    _psql(server, "ANALYZE dids; ANALYZE contents; ANALYZE replicas")
    lfns = [f"{base}/run{i // per:05d}/f{i:07d}.root" for i in range(size)]
    return lfns, [f"{base}/run{d:05d}" for d in range(datasets)]


#: the statement of Rucio's deep ``list_dataset_replicas`` that dominates its time (rucio/core/replica.py): the
#: dataset's files joined to their AVAILABLE replicas, counted per RSE
DEEP_COUNT_SQL = ("SELECT r.rse_id, count(*) FROM contents c JOIN replicas r ON r.scope = c.child_scope AND "
                  "r.name = c.child_name WHERE c.scope = '{scope}' AND c.name = '{name}' AND r.state = 'A' "
                  "GROUP BY r.rse_id")


def print_count_plans(server: RucioServer, datasets: list[str]) -> None:
    """The deep count's statement planned with PostgreSQL's default random_page_cost (4, spinning disks) and with
    the sandbox's (1.1, SSD / cached: KM3DIRAC.sandbox.postgres.PLANNER_SETTINGS), on the same data."""
    for cost in ("4", "1.1"):
        total, scans = 0.0, set()
        for dataset in datasets:
            answer = _psql(server, f"SET random_page_cost = {cost}; EXPLAIN (ANALYZE, FORMAT JSON) "
                                   + DEEP_COUNT_SQL.format(scope=SCOPE, name=dataset))
            plan = json.loads(answer[answer.index("["):])[0]  # after SET's own answer
            total += plan["Execution Time"]
            scans |= set(_scan_kinds(plan["Plan"]))
        print(f"  deep count SQL, random_page_cost={cost}: {total / len(datasets):.0f} ms a dataset "
              f"({len(datasets)} datasets; replicas read by {', '.join(sorted(scans))})", flush=True)


def _scan_kinds(node: dict) -> list[str]:
    kinds = [node["Node Type"]] if node.get("Relation Name") == "replicas" else []
    for child in node.get("Plans", []):
        kinds += _scan_kinds(child)
    return kinds


def _scale_benchmark(server: RucioServer, client, ours, counter: RequestCounter, size: int,
                     args: argparse.Namespace) -> list[Measurement]:
    print(f"scale {size}: seeding {size} files in {args.datasets} datasets by SQL (setup, not timed)", flush=True)
    start = time.perf_counter()
    lfns, datasets = seed_by_sql(server, ours, size, args.datasets)
    print(f"scale {size}: seeded in {time.perf_counter() - start:.0f} s", flush=True)
    sample = lfns[:: max(1, size // min(size, args.raw_sample))][:args.raw_sample]
    expected_replicas = {RSE: True}

    def placement_check(expected: int) -> Callable[[dict], None]:
        def check(result: dict) -> None:
            all_successful(expected)(result)
            wrong = [lfn for lfn, reps in result["Value"]["Successful"].items() if set(reps) != set(expected_replicas)]
            assert not wrong, wrong[:3]

        return check

    def one_dataset(dataset: str) -> tuple[list[str], list[str]]:
        complete = [row["rse"] for row in client.list_dataset_replicas(SCOPE, dataset, deep=True)
                    if row["available_length"] == row["length"]]
        names = [row["name"] for row in client.list_files(SCOPE, dataset)]
        return names, complete

    def raw_dataset_calls() -> dict:
        """The calls KM3DIRAC's route makes, as many at a time (4), without its checks."""
        found = {}
        with ThreadPoolExecutor(max_workers=4) as pool:
            for names, complete in pool.map(one_dataset, datasets):
                for name in names:
                    found[name] = complete
        return {"OK": True, "Value": {"Successful": found, "Failed": {}}}

    def each_dataset(call: Callable[[str], object]) -> Callable[[], dict]:
        def calls() -> dict:
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(call, datasets))
            return {"OK": True, "Value": {"Successful": dict.fromkeys(lfns, True), "Failed": {}}}

        return calls

    repeats = args.repeats if size <= 100_000 else 1
    workload = f"noURL@{size // 1000}k"
    measurements = measure_interleaved(counter, workload, [
        ("raw dsets", size, raw_dataset_calls, all_successful(size)),
        ("KM3DIRAC", size, lambda: ours.getReplicas(lfns, getUrl=False), placement_check(size)),
    ], repeats)
    if args.breakdown:  # where the raw dataset calls' time goes: the deep counts alone, the file listings alone
        measurements += measure_interleaved(counter, workload, [
            ("counts", size, each_dataset(lambda d: list(client.list_dataset_replicas(SCOPE, d, deep=True))),
             all_successful(size)),
            ("listings", size, each_dataset(lambda d: list(client.list_files(SCOPE, d))), all_successful(size)),
        ], 1)
        print_count_plans(server, datasets[:10])
    measurements += [
        measure(counter, workload, "raw bulk", len(sample),
                lambda: raw_bulk_read(lambda dids: client.list_replicas(dids, resolve_archives=False), sample),
                all_successful(len(sample))),
    ]
    if size <= args.exists_max:
        workload = f"exists@{size // 1000}k"
        measurements += measure_interleaved(counter, workload, [
            ("raw bulk", size,
             lambda: raw_bulk_read(lambda dids: client.get_metadata_bulk(dids, plugin="DID_COLUMN"), lfns),
             all_successful(size)),
            ("KM3DIRAC", size, lambda: ours.exists(lfns), all_successful(size)),
        ], repeats)
    return measurements


#: an index Rucio does not ship, suggested for its database: the collections by name. DFC semantics (directory
#: metadata inherited by the files below) need, beside the files' search, the collections below the searched path
#: that have the key; without an index on the DID type or name prefixes PostgreSQL scans the whole dids table again
COLLECTIONS_INDEX = "km3dirac_collections_by_name"
COLLECTIONS_INDEX_SQL = (f"CREATE INDEX {COLLECTIONS_INDEX} ON dids (scope, name text_pattern_ops) "
                         "WHERE did_type IN ('D', 'C')")
#: workloads measured on a database changed as suggested, left out of the geometric mean (Rucio as it ships)
WITH_SUGGESTED_INDEX = " +index"


def _find_benchmark(server: RucioServer, client, ours, core, counter: RequestCounter,
                    args: argparse.Namespace) -> list[Measurement]:
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

    def ours_find():
        return ours.findFilesByMetadata(query, path)

    turns = [("KM3DIRAC", args.find_dids, ours_find, check), ("raw bulk", args.find_dids, raw_find, check)]
    measurements = measure_interleaved(counter, "findFilesByMetadata", turns, args.find_repeats)
    _psql(server, f"{COLLECTIONS_INDEX_SQL}; ANALYZE dids")
    try:
        measurements += measure_interleaved(counter, "findFilesByMetadata" + WITH_SUGGESTED_INDEX, turns,
                                            args.find_repeats)
    finally:
        _psql(server, f"DROP INDEX {COLLECTIONS_INDEX}")
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
    print(f"{'workload':<26} {'approach':<11} {'LFNs':>8} {'seconds':>9} {'s/1000':>8} {'req/1000':>9} {'peak MB':>8}")
    for m in results:
        print(f"{m.workload:<26} {m.approach:<11} {m.lfns:>8} {m.seconds:>9.2f} {m.per_1000:>8.3f} "
              f"{m.requests_per_1000:>9.1f} {m.peak_mb:>8.0f}")
    print()
    print(f"{'workload':<26} {'DIRAC core / KM3DIRAC':>22} {'KM3DIRAC / raw bulk':>20} {'KM3DIRAC / raw dsets':>21}"
          "   (per LFN)")
    workloads = list(dict.fromkeys(m.workload for m in results))
    ratios = []
    for workload in workloads:
        by = {m.approach: m for m in results if m.workload == workload}
        ours = by["KM3DIRAC"].per_1000
        speedup = f"{by['DIRAC core'].per_1000 / ours:.1f}x faster" if "DIRAC core" in by else "n/a"
        versus_raw = f"{ours / by['raw bulk'].per_1000:.2f}" if "raw bulk" in by else "n/a"
        versus_dsets = f"{ours / by['raw dsets'].per_1000:.2f}" if "raw dsets" in by else "n/a"
        if "raw bulk" in by and not workload.endswith(WITH_SUGGESTED_INDEX):
            ratios.append(ours / by["raw bulk"].per_1000)
        print(f"{workload:<26} {speedup:>22} {versus_raw:>20} {versus_dsets:>21}")
    print(f"geometric mean KM3DIRAC / raw bulk: {statistics.geometric_mean(ratios):.2f} (target <= 1.0 everywhere; "
          f"'{WITH_SUGGESTED_INDEX.strip()}': measured again with the collections index suggested for Rucio's "
          "database, left out of the mean)")
    _report_growth(results)


def _report_growth(results: list[Measurement]) -> None:
    """Per-file cost at the largest size over the smallest, per scale workload (target: within 1.2x)."""
    scale = [m for m in results if "@" in m.workload and m.approach == "KM3DIRAC"]
    kinds = list(dict.fromkeys(m.workload.split("@")[0] for m in scale))
    for kind in kinds:
        points = sorted((m for m in scale if m.workload.startswith(kind + "@")), key=lambda m: m.lfns)
        if len(points) < 2:
            continue
        small, large = points[0], points[-1]
        line = ", ".join(f"{m.lfns}: {m.seconds:.1f} s" for m in points)
        print(f"growth {kind}: {line}; per file {large.lfns} vs {small.lfns}: "
              f"{large.per_1000 / small.per_1000:.2f}x (target <= 1.2)")
    for m in scale:
        if m.workload.startswith("noURL@") and m.lfns >= 1_000_000:
            print(f"{m.workload} KM3DIRAC: {m.seconds:.1f} s for {m.lfns} LFNs (target: 1M in under 30 s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000,
                        help="LFNs registered through the REST API for every workload (default 10000; 0: scale only)")
    parser.add_argument("--core-files", type=int, default=1000, help="LFNs for DIRAC core's client (default 1000)")
    parser.add_argument("--find-dids", type=int, default=100_000,
                        help="DIDs findFilesByMetadata searches (default 100000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each read workload, median (default 3)")
    parser.add_argument("--find-repeats", type=int, default=15,
                        help="turns of the metadata search, KM3DIRAC's and raw list_dids', median (default 15): a "
                             "search takes about 0.1 s, so a few turns are at the mercy of one busy moment")
    parser.add_argument("--sizes", type=lambda text: [int(v) for v in text.split(",") if v],
                        default=[10_000, 100_000, 1_000_000],
                        help="files seeded by SQL for the scale workloads (default 10000,100000,1000000; '' none)")
    parser.add_argument("--datasets", type=int, default=100, help="run datasets the scale files are in (default 100)")
    parser.add_argument("--exists-max", type=int, default=100_000,
                        help="largest scale size exists is measured at (default 100000)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the raw dataset calls' two kinds apart (deep counts, file listings)")
    parser.add_argument("--raw-sample", type=int, default=3000,
                        help="files raw list_replicas reads at each scale size, compared per LFN (default 3000)")
    args = parser.parse_args(argv)
    report(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
