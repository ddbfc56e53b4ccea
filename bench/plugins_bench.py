"""Benchmark: KM3DIRAC's run-aware chunking against DIRAC's Standard and BySize grouping, same input, same run.

Synthetic input: N files over N / ``--files-per-run`` runs (default 1M files over 10k runs at the largest size),
three SEs (most files at one, some at two), sizes 0.05-1 GB, 100-5000 events per file, 90 % of the runs closed.
Metadata is served in-process (a dict; for DIRAC a catalog stand-in answering ``getFileSize``), so this measures
grouping, not the network. DIRAC runs its own code paths: ``PluginUtilities.groupByReplicas`` (Standard) and
``PluginUtilities.groupBySize`` (BySize) with an in-process DIRAC configuration of the SEs.

Each grouping runs ``--repeats`` times timed (``time.perf_counter``, the fastest counts), then once under
``tracemalloc`` for its peak of new memory (the input excluded). Printed: seconds and peak MB per approach and
size, the ratio to BySize, and growth factors between sizes (10x more files: about 10 means linear).

Run with ``make bench-plugins`` (``BENCH_ARGS="--sizes 10000,100000"`` for a quick run).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from KM3DIRAC.core.run_chunking import ChunkLimits, by_run, by_run_cpu, by_run_events, by_run_files, by_run_size
from KM3DIRAC.core.run_chunking import plan_chunks as plan_run_chunks
from KM3DIRAC.core.runs import build_file_records, complete_runs, dataset_of
from KM3DIRAC.sandbox.dirac_config import LocalDiracConfig, LocalStorage

SES = ("BENCH-DISK-1", "BENCH-DISK-2", "BENCH-DISK-3")
DETECTOR = 133
GROUP_FILES = 10
GROUP_GB = 5.0


@dataclass
class SyntheticInput:
    replicas: dict[str, list[str]]
    metadata: dict[str, dict[str, int]]
    sizes: dict[str, int]
    closed_datasets: set[str]


def synthetic_input(files: int, files_per_run: int, seed: int = 133) -> SyntheticInput:
    rng = random.Random(seed)
    replicas: dict[str, list[str]] = {}
    metadata: dict[str, dict[str, int]] = {}
    sizes: dict[str, int] = {}
    runs = max(1, files // files_per_run)
    for index in range(files):
        run = 10_000 + index % runs
        part = index // runs
        lfn = f"/km3net/km3net/raw/det{DETECTOR}/run{run}/KM3NeT_{DETECTOR:08d}_{run:08d}.jchain.{part:04d}.root"
        first = rng.randrange(3)
        replicas[lfn] = [SES[first]] if rng.random() < 0.8 else [SES[first], SES[(first + 1) % 3]]
        size = rng.randint(50_000_000, 1_000_000_000)
        sizes[lfn] = size
        metadata[lfn] = {"bytes": size, "run_number": run, "events": rng.randint(100, 5000)}
    closed = {dataset_of(lfn) for lfn in replicas if int(lfn.rsplit("run", 1)[1].split("/")[0]) % 10}
    return SyntheticInput(replicas, metadata, sizes, closed)


# ----------------------------------------------------------------------------------------------- approaches
def km3dirac_grouping(limits: ChunkLimits) -> Callable[[SyntheticInput], list]:
    def group(data: SyntheticInput) -> list:
        records, _problems = build_file_records(data.replicas, data.metadata, need_events=limits.needs_events)
        plan = plan_run_chunks(records, limits, complete_runs(records, data.closed_datasets))
        return plan.tasks()

    return group


class InProcessSizes:
    """Serves DIRAC's ``getFileSize`` from memory (the only catalog call of groupBySize)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes

    def getFileSize(self, lfns):
        from DIRAC import S_OK

        return S_OK({"Successful": self.sizes, "Failed": {}})


class NoTransformationManager:
    def __getattr__(self, name):
        raise RuntimeError(f"TransformationClient.{name} called during grouping")


def dirac_grouping(method: str, group_size: float) -> Callable[[SyntheticInput], list]:
    def group(data: SyntheticInput) -> list:
        from DIRAC.TransformationSystem.Client.Utilities import PluginUtilities

        util = PluginUtilities("Standard" if method == "groupByReplicas" else "BySize",
                               transClient=NoTransformationManager(), dataManager=object(),
                               fc=InProcessSizes(data.sizes))
        util.setParameters({"TransformationID": 1, "Status": "Active", "GroupSize": group_size})
        result = getattr(util, method)(data.replicas, "Active")
        assert result["OK"], result
        return result["Value"]

    return group


APPROACHES: dict[str, Callable[[SyntheticInput], list]] = {
    "DIRAC Standard": dirac_grouping("groupByReplicas", GROUP_FILES),
    "DIRAC BySize": dirac_grouping("groupBySize", GROUP_GB),
    "ByRun": km3dirac_grouping(by_run()),
    "ByRunFiles": km3dirac_grouping(by_run_files(GROUP_FILES)),
    "ByRunSize": km3dirac_grouping(by_run_size(GROUP_GB, 100)),
    "ByRunEvents": km3dirac_grouping(by_run_events(20_000)),
    "ByRunCPU": km3dirac_grouping(by_run_cpu(cpu_time_per_task=86_400, cpu_time_per_event=4.0)),
}
BASELINE = "DIRAC BySize"


@dataclass
class Result:
    seconds: float
    peak_mb: float
    tasks: int
    files_in_tasks: int


def measure(group: Callable[[SyntheticInput], list], data: SyntheticInput, repeats: int) -> Result:
    seconds = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        tasks = group(data)
        seconds = min(seconds, time.perf_counter() - start)
        files_in_tasks = sum(len(lfns) for _, lfns in tasks)
        count = len(tasks)
        del tasks
    gc.collect()
    tracemalloc.start()
    group(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Result(seconds, peak / 1e6, count, files_in_tasks)


def in_process_dirac(work_dir: Path) -> Any:
    """DIRAC's configuration with the benchmark's SEs (DIRAC's sortSEs asks each SE's status)."""
    from DIRAC.tests.Utilities.utils import generateDIRACConfig

    from KM3DIRAC.sandbox.dirac_inprocess import answer_resource_status_in_process

    storages = [LocalStorage(se, work_dir / se) for se in SES]
    context = generateDIRACConfig(LocalDiracConfig(catalog=None, storages=storages).render(),
                                  f"km3dirac-bench-{uuid.uuid4().hex}.cfg")
    context.__enter__()
    answer_resource_status_in_process(SES)
    return context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="numbers of files, comma separated")
    parser.add_argument("--files-per-run", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per approach; the fastest counts")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="km3dirac-bench-") as work_dir:
        context = in_process_dirac(Path(work_dir))
        results: dict[int, dict[str, Result]] = {}
        for size in sizes:
            data = synthetic_input(size, args.files_per_run)
            print(f"\n{size} files over {max(1, size // args.files_per_run)} runs "
                  f"({len(data.closed_datasets)} run datasets closed)", flush=True)
            print(f"{'approach':<16} {'seconds':>9} {'peak MB':>9} {'tasks':>8} {'files':>9} "
                  f"{'time/BySize':>12} {'mem/BySize':>11}")
            results[size] = {}
            for name, group in APPROACHES.items():
                results[size][name] = measure(group, data, args.repeats)
            base = results[size][BASELINE]
            for name, r in results[size].items():
                print(f"{name:<16} {r.seconds:9.3f} {r.peak_mb:9.1f} {r.tasks:8d} {r.files_in_tasks:9d} "
                      f"{r.seconds / base.seconds:12.2f} {r.peak_mb / base.peak_mb:11.2f}", flush=True)
            del data
        context.__exit__(None, None, None)

    if len(sizes) > 1:
        print("\ngrowth factors (time, memory) between consecutive sizes; linear = the size ratio")
        for previous, current in itertools.pairwise(sizes):
            print(f"{previous} -> {current} files (x{current / previous:g}):")
            for name in APPROACHES:
                a, b = results[previous][name], results[current][name]
                print(f"  {name:<16} time x{b.seconds / a.seconds:6.2f}   memory x{b.peak_mb / a.peak_mb:6.2f}")


if __name__ == "__main__":
    main()
