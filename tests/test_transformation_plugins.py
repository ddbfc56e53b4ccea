"""Run-aware chunking: the core on realistic run layouts, then the plugins through DIRAC's own plugin dispatch with
KM3DIRAC's catalog on the session's Rucio server."""

from __future__ import annotations

import random

import pytest

from KM3DIRAC.core.run_chunking import (
    ChunkingError,
    ChunkLimits,
    by_run,
    by_run_cpu,
    by_run_events,
    by_run_files,
    by_run_size,
    plan_chunks,
)
from KM3DIRAC.core.runs import (
    FileRecord,
    RunInfoError,
    RunKey,
    build_file_records,
    complete_runs,
    parse_km3net_file_name,
    run_of,
)

DETECTOR = 133
GB = 10**9


def lfn_of(run: int, part: int, detector: int = DETECTOR, base: str = "/km3net/km3test/data") -> str:
    return f"{base}/det{detector}/run{run}/KM3NeT_{detector:08d}_{run:08d}.jchain.{part:04d}.root"


def record(run: int, part: int, size: int = GB // 4, events: int | None = 1000, ses: tuple[str, ...] = ("SE-A",),
           detector: int = DETECTOR) -> FileRecord:
    return FileRecord(lfn_of(run, part, detector), RunKey(detector, run), size, events, ses)


def by_lfn(plan) -> dict[str, tuple[str, list[str]]]:
    return {lfns[0]: (se, lfns) for se, lfns in plan.tasks()}


def assert_runs_never_mixed(plan) -> None:
    for chunk in plan.chunks:
        assert {parse_km3net_file_name(lfn) for lfn in chunk.lfns} == {chunk.run}, chunk


# --------------------------------------------------------------------------------------------- run information
def test_run_and_detector_come_from_km3net_file_names():
    assert parse_km3net_file_name("/km3net/raw/KM3NeT_00000133_00012345.root") == RunKey(133, 12345)
    assert parse_km3net_file_name("/x/KM3NeT_00000049_00008456.summaryslice-167941.root") == RunKey(49, 8456)
    assert parse_km3net_file_name("/x/KM3NeT_00000267_00025291_JDAQEvent_JDAQSummaryslice.root") == RunKey(267, 25291)
    for bad in ("/x/KM3NeT_00000133_D_1.0.0_00017397_00017496_1.orientations.root", "/x/run12345.root",
                "/x/KM3NeT_0000133_00012345.root"):
        with pytest.raises(RunInfoError, match=bad.replace(".", r"\.")):
            parse_km3net_file_name(bad)


def test_catalog_metadata_wins_over_the_file_name():
    lfn = lfn_of(12345, 1)
    assert run_of(lfn, {"run_number": 12346}) == RunKey(133, 12346)
    assert run_of(lfn, {"run_number": 7, "DetectorID": 49}) == RunKey(49, 7)
    assert run_of("/km3net/s/mc/gsg_muon_42.root", {"run_number": 42}) == RunKey(None, 42)
    assert run_of(lfn, {}) == RunKey(133, 12345)
    with pytest.raises(RunInfoError, match=r"run_number='x12' is not an integer"):
        run_of(lfn, {"run_number": "x12"})


def test_file_records_name_every_file_that_cannot_be_planned():
    good, nameless, eventless = lfn_of(1, 1), "/km3net/s/mc/gsg_muon.root", lfn_of(1, 2)
    replicas = {good: ["SE-A"], nameless: ["SE-A"], eventless: ["SE-B", "SE-A"], lfn_of(1, 3): [], "/km3net/s/u": ["X"]}
    metadata = {good: {"bytes": 10, "events": 5}, nameless: {"bytes": 10}, eventless: {"bytes": 3},
                lfn_of(1, 3): {"bytes": 1}}
    records, problems = build_file_records(replicas, metadata, need_events=True)
    assert records == [FileRecord(good, RunKey(133, 1), 10, 5, ("SE-A",))]
    assert problems == {
        nameless: f"{nameless}: no run_number metadata and the file name is not "
                  "KM3NeT_<detector:8 digits>_<run:8 digits>...",
        eventless: f"{eventless}: no events metadata (needed to plan tasks by events or CPU time)",
        "/km3net/s/u": "/km3net/s/u: no catalog metadata (not in the catalog?)",
    }
    records, problems = build_file_records(replicas, metadata)
    assert [r.lfn for r in records] == [good, eventless] and records[1].ses == ("SE-A", "SE-B")
    assert list(problems) == [nameless, "/km3net/s/u"]


def test_a_run_is_complete_when_all_its_datasets_are_closed():
    records = [record(1, 1), record(1, 2), record(2, 1),
               FileRecord("/km3net/km3test/late/run2/KM3NeT_00000133_00000002.x.root", RunKey(133, 2), 1, 1, ("A",))]
    closed = {lfn_of(1, 1).rsplit("/", 1)[0], lfn_of(2, 1).rsplit("/", 1)[0]}
    assert complete_runs(records, closed) == {RunKey(133, 1)}


# --------------------------------------------------------------------------------------------- chunking
def test_by_run_files_on_many_uneven_runs():
    rng = random.Random(5)
    files_per_run = {run: rng.randint(1, 37) for run in range(14000, 14060)}
    records = [record(run, part) for run, count in files_per_run.items() for part in range(count)]
    rng.shuffle(records)
    plan = plan_chunks(records, by_run_files(10), complete=set(), flush=False)

    assert_runs_never_mixed(plan)
    assert all(len(chunk.lfns) == 10 for chunk in plan.chunks)  # open runs: only full tasks
    assert len(plan.chunks) == sum(count // 10 for count in files_per_run.values())
    assert plan.waiting_runs == {RunKey(133, run): count % 10 for run, count in files_per_run.items() if count % 10}
    first = plan.chunks[0]
    assert first.run == RunKey(133, min(run for run, n in files_per_run.items() if n >= 10))
    assert first.lfns == [lfn_of(first.run.run, part) for part in range(10)] and first.se_string == "SE-A"

    complete = {RunKey(133, run) for run in files_per_run}
    plan = plan_chunks(records, by_run_files(10), complete=complete)
    assert_runs_never_mixed(plan)
    assert not plan.waiting_runs
    assert sorted(lfn for chunk in plan.chunks for lfn in chunk.lfns) == sorted(r.lfn for r in records)
    assert len(plan.chunks) == sum(-(-count // 10) for count in files_per_run.values())


def test_files_arriving_late_and_a_run_closed_midway():
    """Cycle 1: run 100 open with 25 files, run 101 closed with 12. Cycle 2: the 5 Unused files of run 100 plus 7
    late ones, run 100 now closed."""
    limits = by_run_files(10)
    first_cycle = [record(100, part) for part in range(25)] + [record(101, part) for part in range(12)]
    plan = plan_chunks(first_cycle, limits, complete={RunKey(133, 101)})
    assert [(c.run.run, c.lfns) for c in plan.chunks] == [
        (100, [lfn_of(100, p) for p in range(0, 10)]),
        (100, [lfn_of(100, p) for p in range(10, 20)]),
        (101, [lfn_of(101, p) for p in range(0, 10)]),
        (101, [lfn_of(101, p) for p in range(10, 12)]),
    ]
    assert plan.waiting_runs == {RunKey(133, 100): 5}

    second_cycle = [record(100, part) for part in range(20, 32)]
    still_open = plan_chunks(second_cycle, limits, complete=set())
    assert [c.lfns for c in still_open.chunks] == [[lfn_of(100, p) for p in range(20, 30)]]
    assert still_open.waiting_runs == {RunKey(133, 100): 2}
    closed = plan_chunks(second_cycle, limits, complete={RunKey(133, 100)})
    assert [c.lfns for c in closed.chunks] == [[lfn_of(100, p) for p in range(20, 30)],
                                               [lfn_of(100, 30), lfn_of(100, 31)]]
    assert not closed.waiting_runs


def test_flush_makes_the_last_chunks_of_open_runs():
    records = [record(7, part) for part in range(13)] + [record(8, part) for part in range(4)]
    plan = plan_chunks(records, by_run_files(5), complete=set(), flush=True)
    assert [(c.run.run, len(c.lfns)) for c in plan.chunks] == [(7, 5), (7, 5), (7, 3), (8, 4)]
    assert not plan.waiting_runs


def test_by_run_size_with_uneven_file_sizes():
    sizes = [0.4, 0.3, 0.5, 2.5, 0.2, 0.9, 0.05]  # GB, in part order
    records = [record(3, part, size=int(size * GB)) for part, size in enumerate(sizes)]
    plan = plan_chunks(records, by_run_size(1.0), complete=set())
    # greedy in LFN order: 0.4+0.3 (+0.5 would pass 1 GB); 0.5; 2.5 alone (larger than a task); 0.2 (+0.9 passes)
    assert [c.lfns for c in plan.chunks] == [[lfn_of(3, 0), lfn_of(3, 1)], [lfn_of(3, 2)], [lfn_of(3, 3)],
                                             [lfn_of(3, 4)]]
    assert plan.waiting_runs == {RunKey(133, 3): 2}
    done = plan_chunks(records, by_run_size(1.0), complete={RunKey(133, 3)})
    assert [c.lfns for c in done.chunks][-1] == [lfn_of(3, 5), lfn_of(3, 6)]
    capped = plan_chunks([record(4, p, size=1000) for p in range(7)], by_run_size(1.0, 3), complete=set())
    assert [len(c.lfns) for c in capped.chunks] == [3, 3]


def test_by_run_events_and_cpu_budget():
    events = [400, 300, 500, 100, 250, 1200]
    records = [record(9, part, events=n) for part, n in enumerate(events)]
    plan = plan_chunks(records, by_run_events(1000), complete={RunKey(133, 9)})
    assert [[lfn.rsplit(".", 2)[-2] for lfn in c.lfns] for c in plan.chunks] == [
        ["0000", "0001"], ["0002", "0003", "0004"], ["0005"]]

    # 2 s per event in a 2000 s job: at most 1000 events; the 1200-event file can never fit and is named
    cpu = by_run_cpu(cpu_time_per_task=2000, cpu_time_per_event=2.0)
    plan = plan_chunks(records, cpu, complete={RunKey(133, 9)})
    assert [len(c.lfns) for c in plan.chunks] == [2, 3]
    for chunk in plan.chunks:
        assert sum(events[int(lfn.rsplit(".", 2)[-2])] for lfn in chunk.lfns) * 2.0 <= 2000
    assert plan.unplannable == {lfn_of(9, 5): f"{lfn_of(9, 5)}: 1200 events exceed the task budget of 1000 events"}


def test_by_run_makes_one_task_per_complete_run():
    records = [record(1, p) for p in range(30)] + [record(2, p) for p in range(3)]
    plan = plan_chunks(records, by_run(), complete={RunKey(133, 2)})
    assert [(c.run.run, len(c.lfns)) for c in plan.chunks] == [(2, 3)]
    assert plan.waiting_runs == {RunKey(133, 1): 30}


def test_replica_locality_keeps_tasks_at_one_storage_element():
    """Run 5: 6 files only at SE-A, 3 only at SE-B, 3 at both. The shared ones join SE-A (most files)."""
    records = ([record(5, p, ses=("SE-A",)) for p in range(6)] + [record(5, p, ses=("SE-B",)) for p in range(6, 9)]
               + [record(5, p, ses=("SE-A", "SE-B")) for p in range(9, 12)])
    plan = plan_chunks(records, by_run_files(4), complete=set())
    # the files left after SE-A's two full chunks (part 11, also at SE-B; parts 6-8 at SE-B) choose again among
    # themselves: SE-B now holds most of them, and they fill a chunk there, even while the run is open
    assert plan.tasks() == [
        ("SE-A", [lfn_of(5, p) for p in range(0, 4)]),
        ("SE-A", [lfn_of(5, 4), lfn_of(5, 5), lfn_of(5, 9), lfn_of(5, 10)]),
        ("SE-B", [lfn_of(5, 6), lfn_of(5, 7), lfn_of(5, 8), lfn_of(5, 11)]),
    ]
    assert not plan.waiting_runs
    done = plan_chunks(records, by_run_files(4), complete={RunKey(133, 5)})
    assert done.tasks() == plan.tasks()
    # with no SE in common, the task names the SEs holding its files, most files first
    spread = [record(6, 0, ses=("SE-B",)), record(6, 1, ses=("SE-A",)), record(6, 2, ses=("SE-A",))]
    assert plan_chunks(spread, by_run_files(4), complete={RunKey(133, 6)}).tasks() == [
        ("SE-A,SE-B", [lfn_of(6, 1), lfn_of(6, 2), lfn_of(6, 0)])]
    # a chunk whose files are all at two SEs names both
    both = plan_chunks([record(7, p, ses=("SE-B", "SE-A")) for p in range(2)], by_run_files(2), complete=set())
    assert both.tasks() == [("SE-A,SE-B", [lfn_of(7, 0), lfn_of(7, 1)])]


def _left_over(records: list[FileRecord], plan) -> list[FileRecord]:
    planned = {lfn for chunk in plan.chunks for lfn in chunk.lfns} | set(plan.unplannable)
    return [r for r in records if r.lfn not in planned]


def test_a_second_call_on_the_files_left_makes_nothing_new():
    """Issue 13, item 5: open runs whose files have replicas at several SEs. Run 40: parts 0-1 only at SE-A, part 2
    at both, part 3 only at SE-B; two files a task. The first call homes part 2 at SE-A (3 files there against 2)
    and makes [0, 1]; the files left (2 and 3) are both at SE-B, so a second call, with nothing changed, made
    [2, 3] at SE-B. One call now makes it."""
    records = [record(40, 0, ses=("SE-A",)), record(40, 1, ses=("SE-A",)), record(40, 2, ses=("SE-A", "SE-B")),
               record(40, 3, ses=("SE-B",))]
    first = plan_chunks(records, by_run_files(2), complete=set())
    assert first.tasks() == [("SE-A", [lfn_of(40, 0), lfn_of(40, 1)]), ("SE-B", [lfn_of(40, 2), lfn_of(40, 3)])]
    assert plan_chunks(_left_over(records, first), by_run_files(2), complete=set()).tasks() == []


@pytest.mark.parametrize("seed", range(6))
def test_the_plan_of_the_files_left_is_empty_on_random_multi_se_layouts(seed):
    rng = random.Random(seed)
    ses = ["SE-A", "SE-B", "SE-C"]
    records = [record(run, part, size=rng.randint(1, 5) * GB // 10, events=rng.randint(100, 900),
                      ses=tuple(rng.sample(ses, rng.randint(1, 3))))
               for run in range(200, 206) for part in range(rng.randint(3, 40))]
    for limits in (by_run_files(4), by_run_size(1.0), by_run_events(2000), by_run_cpu(2000, 1.0)):
        first = plan_chunks(records, limits, complete=set())
        again = plan_chunks(_left_over(records, first), limits, complete=set())
        assert again.tasks() == [], (limits, again.tasks())
        assert again.waiting_runs == first.waiting_runs


def test_runs_of_different_detectors_are_different_runs():
    records = [record(10, p, detector=133) for p in range(3)] + [record(10, p, detector=49) for p in range(3)]
    plan = plan_chunks(records, by_run_files(3), complete=set())
    assert [c.run for c in plan.chunks] == [RunKey(49, 10), RunKey(133, 10)]


def test_by_run_cpu_budget_is_exact_for_decimal_parameters():
    """36000 s at 3.6 s an event is 10000 events (binary floating point floors it to 9999): a 10000-event file of
    exactly the budget makes a task instead of being left out as too big (issue 13, item 5)."""
    assert by_run_cpu(cpu_time_per_task=36000, cpu_time_per_event=3.6).max_events == 10000
    assert by_run_cpu(cpu_time_per_task=36000.0, cpu_time_per_event=3.7).max_events == 9729


def test_bad_parameters_are_named():
    with pytest.raises(ChunkingError, match="GroupSize = 0"):
        by_run_files(0)
    with pytest.raises(ChunkingError, match="CPUTimePerEvent = 0"):
        by_run_cpu(3600, 0)
    with pytest.raises(ChunkingError, match="CPUTimePerTask = 1 s is less than one event"):
        by_run_cpu(1, 2.5)
    with pytest.raises(ChunkingError, match="MaxFilesPerTask = -1"):
        by_run_size(1.0, -1)
    with pytest.raises(ChunkingError, match="max_bytes"):
        ChunkLimits(max_bytes=0)


# --------------------------------------------------------------------------------------------- through DIRAC
class TransformationManagerStandIn:
    """Stands in for the TransformationManager service (the local sandbox provides the real one).

    DIRAC's ``TransformationPlugin.run()`` for Standard and BySize, and KM3DIRAC's ByRun* plugins, call no method
    of the TransformationClient (Flush comes in as the transformation's ``Status`` parameter; only ByShare calls
    ``getCounters``), so this object implements none and fails loudly, naming the method, if one is ever called.
    """

    def __getattr__(self, name):
        raise AssertionError(f"the plugin called TransformationClient.{name}, which this stand-in does not provide")


def _ok(result):
    assert result["OK"], result
    return result["Value"]


def run_plugin(name: str, fc, replicas: dict[str, list[str]], status: str = "Active", **parameters):
    """DIRAC's plugin dispatch, as the TransformationAgent does it (PluginLocation, setParameters, setInputData,
    setTransformationFiles, run)."""
    from importlib import import_module

    from KM3DIRAC.TransformationSystem import PLUGIN_LOCATION

    plugin_class = import_module(PLUGIN_LOCATION).TransformationPlugin
    plugin = plugin_class(name, transClient=TransformationManagerStandIn(), fc=fc)
    plugin.setParameters({"TransformationID": 1, "Status": status, "Type": "Processing", "Plugin": name,
                          "GroupSize": 1, **parameters})
    plugin.setInputData(replicas)
    plugin.setTransformationFiles([{"LFN": lfn, "Status": "Unused", "FileID": i} for i, lfn in enumerate(replicas)])
    return plugin.run()


class RunLayout:
    """Files of detector 133 registered through DIRAC's FileCatalog: ``/km3net/<scope>/raw/run<run>/...``, one Rucio
    dataset per run."""

    def __init__(self, fc, scope: str) -> None:
        self.fc = fc
        self.scope = scope

    def dataset(self, run: int) -> str:
        return f"/km3net/{self.scope}/raw/run{run}"

    def lfn(self, run: int, part: int) -> str:
        return f"{self.dataset(run)}/KM3NeT_{DETECTOR:08d}_{run:08d}.jchain.{part:04d}.root"

    def add(self, files: dict[str, dict], se: str = "KM3-DISK-1") -> list[str]:
        """``{lfn: {"Size": bytes, **metadata}}``: register at ``se`` and set the metadata in bulk."""
        added = _ok(self.fc.addFile({lfn: {"PFN": "", "Size": spec["Size"], "SE": se, "GUID": "",
                                           "Checksum": "0000abcd"} for lfn, spec in files.items()}))
        assert not added["Failed"], added["Failed"]
        metadata = {lfn: {k: v for k, v in spec.items() if k != "Size"} for lfn, spec in files.items()}
        metadata = {lfn: meta for lfn, meta in metadata.items() if meta}
        if metadata:
            assert not _ok(self.fc.setMetadataBulk(metadata))["Failed"]
        return list(files)

    def replicas(self, lfns: list[str]) -> dict[str, list[str]]:
        found = _ok(self.fc.getReplicas(lfns))
        assert not found["Failed"], found["Failed"]
        return {lfn: sorted(ses) for lfn, ses in found["Successful"].items()}


@pytest.fixture
def layout(fc, scope_factory):
    return RunLayout(fc, scope_factory())


@pytest.mark.rucio
def test_by_run_size_through_dirac_dispatch_with_closed_and_open_runs(fc, layout, rucio_client):
    """Run 501 (4 files, 0.4 GB each) is closed, run 502 (5 files) open: ByRunSize at 1 GB per task."""
    sizes = {501: [400_000_000] * 4, 502: [400_000_000] * 5}
    lfns = layout.add({layout.lfn(run, part): {"Size": size, "run_number": run, "events": 1000}
                       for run, run_sizes in sizes.items() for part, size in enumerate(run_sizes)})
    rucio_client.close(layout.scope, layout.dataset(501))

    result = run_plugin("ByRunSize", fc, layout.replicas(lfns))
    assert result["OK"], result
    assert result["Value"] == [
        ("KM3-DISK-1", [layout.lfn(501, 0), layout.lfn(501, 1)]),
        ("KM3-DISK-1", [layout.lfn(501, 2), layout.lfn(501, 3)]),
        ("KM3-DISK-1", [layout.lfn(502, 0), layout.lfn(502, 1)]),
        ("KM3-DISK-1", [layout.lfn(502, 2), layout.lfn(502, 3)]),
    ]
    assert result["Timeout"] is True  # run 502 waits: call the plugin again next cycle

    # next cycle: run 502's last file is still Unused; the run closes
    rucio_client.close(layout.scope, layout.dataset(502))
    result = run_plugin("ByRunSize", fc, layout.replicas([layout.lfn(502, 4)]))
    assert result["Value"] == [("KM3-DISK-1", [layout.lfn(502, 4)])] and "Timeout" not in result


@pytest.mark.rucio
def test_run_numbers_from_metadata_or_file_names_and_bad_files_left_out(fc, layout):
    """Files named freely carry run_number metadata; KM3NeT-named files without metadata are read by name; a
    file with neither is left out of every task."""
    mc = [f"/km3net/{layout.scope}/mc/gsg_muon_{i}.root" for i in range(4)]
    named = [layout.lfn(777, part) for part in range(2)]
    stray = f"/km3net/{layout.scope}/mc/notes.root"
    layout.add({**{lfn: {"Size": 10, "run_number": 777} for lfn in mc[:2]},
                **{lfn: {"Size": 10, "run_number": 778} for lfn in mc[2:]},
                **{lfn: {"Size": 10} for lfn in named}, stray: {"Size": 10}})
    result = run_plugin("ByRunFiles", fc, layout.replicas([*mc, *named, stray]), status="Flush", GroupSize=10)
    assert result["OK"], result
    # run 777 of the metadata-only files has no detector; the named files are detector 133's run 777
    assert result["Value"] == [("KM3-DISK-1", named), ("KM3-DISK-1", mc[:2]), ("KM3-DISK-1", mc[2:])]
    assert stray not in {lfn for _, task in result["Value"] for lfn in task}


@pytest.mark.rucio
def test_by_run_cpu_and_events_through_dirac_dispatch(fc, layout, rucio_client):
    events = [3000, 5000, 1500, 9000, 20000]
    lfns = layout.add({layout.lfn(900, part): {"Size": 1000, "run_number": 900, "events": n}
                       for part, n in enumerate(events)})
    rucio_client.close(layout.scope, layout.dataset(900))
    replicas = layout.replicas(lfns)

    # 36000 s jobs at 3.6 s per event: 10000 events; the 20000-event file fits no job and is left out
    cpu = run_plugin("ByRunCPU", fc, replicas, CPUTimePerTask=36000, CPUTimePerEvent=3.6)
    assert cpu["OK"], cpu
    assert [lfns.index(lfn) for _, task in cpu["Value"] for lfn in task] == [0, 1, 2, 3]
    assert [[lfns.index(lfn) for lfn in task] for _, task in cpu["Value"]] == [[0, 1, 2], [3]]

    by_events = run_plugin("ByRunEvents", fc, replicas, MaxEventsPerTask=10000)
    assert [[lfns.index(lfn) for lfn in task] for _, task in by_events["Value"]] == [[0, 1, 2], [3], [4]]

    missing = run_plugin("ByRunCPU", fc, replicas)
    assert not missing["OK"] and "CPUTimePerEvent = 0.0" in missing["Message"]


@pytest.mark.rucio
def test_by_run_and_locality_across_two_storage_elements(fc, layout, rucio_client):
    at_disk1 = layout.add({layout.lfn(60, p): {"Size": 10, "run_number": 60} for p in range(3)}, se="KM3-DISK-1")
    at_disk2 = layout.add({layout.lfn(61, p): {"Size": 10, "run_number": 61} for p in range(2)}, se="KM3-DISK-2")
    rucio_client.close(layout.scope, layout.dataset(60))
    result = run_plugin("ByRun", fc, layout.replicas(at_disk1 + at_disk2))
    assert result["Value"] == [("KM3-DISK-1", at_disk1)]
    assert result["Timeout"] is True
    flushed = run_plugin("ByRun", fc, layout.replicas(at_disk2), status="Flush")
    assert flushed["Value"] == [("KM3-DISK-2", at_disk2)] and "Timeout" not in flushed


@pytest.mark.rucio
def test_plugin_called_again_on_the_files_it_left_makes_no_task(fc, layout):
    """An open run with replicas at two SEs, through DIRAC's dispatch: the TransformationAgent calls the plugin again
    on the Unused files; with nothing changed, it must make no task."""
    lfns = layout.add({layout.lfn(950, p): {"Size": 10, "run_number": 950} for p in range(3)}, se="KM3-DISK-1")
    lfns += layout.add({layout.lfn(950, 3): {"Size": 10, "run_number": 950}}, se="KM3-DISK-2")
    added = _ok(layout.fc.addReplica({lfns[2]: {"SE": "KM3-DISK-2", "PFN": ""}}))
    assert not added["Failed"], added
    replicas = layout.replicas(lfns)
    assert replicas[lfns[2]] == ["KM3-DISK-1", "KM3-DISK-2"]
    first = run_plugin("ByRunFiles", fc, replicas, GroupSize=2)
    assert first["OK"], first
    assigned = {lfn for _, task in first["Value"] for lfn in task}
    second = run_plugin("ByRunFiles", fc, {lfn: ses for lfn, ses in replicas.items() if lfn not in assigned},
                        GroupSize=2)
    assert second["OK"] and second["Value"] == [], (first, second)


@pytest.mark.rucio
def test_dirac_plugins_still_work_through_km3dirac_class(fc, layout):
    lfns = layout.add({layout.lfn(70, p): {"Size": 10} for p in range(5)})
    result = run_plugin("Standard", fc, layout.replicas(lfns), GroupSize=2)
    assert result["Value"] == [("KM3-DISK-1", lfns[0:2]), ("KM3-DISK-1", lfns[2:4])]


def test_allowed_plugins_keep_dirac_ones_and_name_every_km3dirac_plugin():
    from KM3DIRAC.TransformationSystem import ALLOWED_PLUGINS, KM3DIRAC_PLUGINS, allowed_plugins_option
    from KM3DIRAC.TransformationSystem.Agent.TransformationPlugin import TransformationPlugin

    assert {"Standard", "BySize", "Broadcast", "ByShare"} <= set(ALLOWED_PLUGINS)
    assert all(callable(getattr(TransformationPlugin, f"_{name}")) and name.isalpha() for name in KM3DIRAC_PLUGINS)
    assert allowed_plugins_option().split(", ") == list(ALLOWED_PLUGINS)


def test_config_template_documents_allowed_plugins_and_every_plugin_parameter():
    from pathlib import Path

    from diraccfg import CFG

    import KM3DIRAC
    from KM3DIRAC.core.run_chunking import PLUGIN_LIMITS
    from KM3DIRAC.TransformationSystem import ALLOWED_PLUGINS, KM3DIRAC_PLUGINS, PLUGIN_LOCATION

    package = Path(KM3DIRAC.__file__).parent
    template = CFG().loadFromBuffer((package / "ConfigTemplate.cfg").read_text())
    agent = template["Systems"]["Transformation"]["Agents"]["TransformationAgent"]
    assert agent["PluginLocation"] == PLUGIN_LOCATION
    defaults = template["Operations"]["Defaults"]
    assert defaults["Transformations"]["AllowedPlugins"].replace(" ", "").split(",") == list(ALLOWED_PLUGINS)
    assert sorted(PLUGIN_LIMITS) == sorted(KM3DIRAC_PLUGINS)
    for plugin in KM3DIRAC_PLUGINS:
        read = set()

        def recorder(name, default, read=read):  # what the plugin asks getPluginParam for
            read.add(name)
            return default or type(default)(1)

        PLUGIN_LIMITS[plugin](recorder)
        assert read and read == set(defaults["TransformationPlugins"][plugin].listOptions()), plugin


@pytest.mark.rucio
def test_plugins_read_metadata_through_km3dirac_rucio_catalog_in_bulk(fc):
    from KM3DIRAC.core.catalog import RucioCatalog
    from KM3DIRAC.TransformationSystem.Agent.TransformationPlugin import rucio_catalog_of

    assert isinstance(rucio_catalog_of(fc), RucioCatalog)


@pytest.fixture
def cs_option(dirac_cs):
    """Set options of the in-process CS for one test, removed afterwards."""
    from DIRAC.ConfigurationSystem.Client.ConfigurationData import gConfigurationData

    added: list[str] = []

    def set_option(path: str, value: str) -> None:
        gConfigurationData.setOptionInCFG(path, value)
        gConfigurationData.generateNewVersion()  # Operations() caches /Operations per CS version
        added.append(path)

    yield set_option
    for path in added:
        gConfigurationData.deleteOptionInCFG(path)
    gConfigurationData.generateNewVersion()


@pytest.mark.rucio
def test_plugin_parameters_come_from_the_operations_section_when_the_transformation_has_none(fc, layout, cs_option,
                                                                                          rucio_client):
    lfns = layout.add({layout.lfn(910, part): {"Size": 1000, "run_number": 910, "events": 100} for part in range(5)})
    rucio_client.close(layout.scope, layout.dataset(910))
    cs_option("/Operations/Defaults/TransformationPlugins/ByRunCPU/CPUTimePerEvent", "2.5")
    cs_option("/Operations/Defaults/TransformationPlugins/ByRunCPU/CPUTimePerTask", "500")  # 200 events
    result = run_plugin("ByRunCPU", fc, layout.replicas(lfns))
    assert result["OK"], result
    assert [task for _, task in result["Value"]] == [lfns[0:2], lfns[2:4], lfns[4:5]]
    # the transformation's own parameter wins over the CS
    result = run_plugin("ByRunCPU", fc, layout.replicas(lfns), CPUTimePerTask=750)
    assert [task for _, task in result["Value"]] == [lfns[0:3], lfns[3:5]]


class OtherDiracCatalog:
    """A DIRAC catalog that is not KM3DIRAC's Rucio catalog (DFC-like answers, served in-process)."""

    def __init__(self, files: dict[str, dict]) -> None:
        self.files = files
        self.user_metadata_calls = 0

    def getFileSize(self, lfns):
        from DIRAC import S_OK

        return S_OK({"Successful": {lfn: self.files[lfn]["Size"] for lfn in lfns if lfn in self.files},
                     "Failed": {lfn: "No such file or directory" for lfn in lfns if lfn not in self.files}})

    def getFileUserMetadata(self, lfn):
        from DIRAC import S_OK

        self.user_metadata_calls += 1
        return S_OK({key: value for key, value in self.files[lfn].items() if key != "Size"})


@pytest.mark.rucio
def test_with_another_catalog_runs_complete_only_on_flush(dirac_cs):
    files = {lfn_of(5, part): {"Size": 10, "events": 10} for part in range(3)}
    gone = lfn_of(5, 9)
    catalog = OtherDiracCatalog(files)
    replicas = {**{lfn: ["KM3-DISK-1"] for lfn in files}, gone: ["KM3-DISK-1"]}
    active = run_plugin("ByRunFiles", catalog, replicas, GroupSize=2)
    assert active["Value"] == [("KM3-DISK-1", list(files)[:2])] and active["Timeout"] is True
    flushed = run_plugin("ByRunFiles", catalog, replicas, status="Flush", GroupSize=2)
    assert flushed["Value"] == [("KM3-DISK-1", list(files)[:2]), ("KM3-DISK-1", list(files)[2:])]
    assert catalog.user_metadata_calls == 6  # per file: the reason KM3DIRAC's catalog reads in bulk instead


@pytest.mark.rucio
def test_no_input_makes_no_tasks(fc):
    result = run_plugin("ByRunSize", fc, {})
    assert result["OK"] and result["Value"] == [] and "Timeout" not in result
