"""Run-aware chunking: split input files into tasks that never mix runs, bounded by files, bytes or events.

Per run, in one pass over its files:

1. locality: each file gets a home storage element, the one of its SEs that holds most files of the run (ties:
   SE name), so a run's files gather at as few SEs as possible;
2. per home SE, files in LFN order fill a chunk until the next file would break a limit (or the chunk reaches a
   limit): that chunk is full and becomes a task at once, whatever the state of the run;
3. the files left over choose their home SE again among themselves, and steps 1-2 repeat until they make no full
   chunk: a file at several SEs may have lost its first home's other files to full chunks and now fill one at its
   other SE. So one call reaches the state the next call on the files it left would reach (that next call makes
   nothing new while nothing changed);
4. the last, not full, chunks are held back while the run is still open (more files may come), and made once the
   run is complete (its datasets closed) or the transformation flushes. Then the remainders of a run's SEs are
   pooled and chunked again, so a complete run ends in as few small tasks as possible.

A task's SE string lists the SEs holding every file of the task; when a pooled remainder has no SE in common, it
lists the SEs holding any of its files, most files first. Time and memory are linear in the number of files:
each repetition of steps 1-2 sees only the files the previous one left (at most a chunk per SE short of full),
and only LFN order within one run is sorted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.runs import FileRecord, RunKey


class ChunkingError(KM3DiracError, ValueError):
    """Parameters that cannot make tasks; the message names the parameter."""


@dataclass(frozen=True)
class ChunkLimits:
    """Upper bounds of one task (None: unbounded). All None: one task per run and SE.

    With ``hard`` (CPU budgets), a single file above ``max_events`` cannot make a task and is reported instead;
    otherwise such a file makes a task of its own (as DIRAC's BySize does with a file above GroupSize).
    """

    max_files: int | None = None
    max_bytes: int | None = None
    max_events: int | None = None
    hard: bool = False

    def __post_init__(self) -> None:
        for name in ("max_files", "max_bytes", "max_events"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ChunkingError(f"{name} = {value!r}: must be a positive integer (or None for no limit)")

    @property
    def needs_events(self) -> bool:
        return self.max_events is not None


@dataclass(frozen=True)
class Chunk:
    run: RunKey
    ses: tuple[str, ...]
    lfns: list[str]

    @property
    def se_string(self) -> str:
        return ",".join(self.ses)


@dataclass
class ChunkPlan:
    """Tasks to make now; runs held back (run -> files waiting); files that fit no task (lfn -> reason)."""

    chunks: list[Chunk] = field(default_factory=list)
    waiting_runs: dict[RunKey, int] = field(default_factory=dict)
    unplannable: dict[str, str] = field(default_factory=dict)

    def tasks(self) -> list[tuple[str, list[str]]]:
        """DIRAC's plugin answer: ``[(seString, [lfns]), ...]``."""
        return [(chunk.se_string, chunk.lfns) for chunk in self.chunks]


class _Filling:
    """The chunk being filled and its running totals."""

    __slots__ = ("bytes", "events", "files")

    def __init__(self) -> None:
        self.files: list[FileRecord] = []
        self.bytes = 0
        self.events = 0

    def add(self, record: FileRecord) -> None:
        self.files.append(record)
        self.bytes += record.size
        self.events += record.events or 0


def _would_exceed(filling: _Filling, record: FileRecord, limits: ChunkLimits) -> bool:
    return ((limits.max_files is not None and len(filling.files) + 1 > limits.max_files)
            or (limits.max_bytes is not None and filling.bytes + record.size > limits.max_bytes)
            or (limits.max_events is not None and filling.events + (record.events or 0) > limits.max_events))


def _reached(filling: _Filling, limits: ChunkLimits) -> bool:
    return ((limits.max_files is not None and len(filling.files) >= limits.max_files)
            or (limits.max_bytes is not None and filling.bytes >= limits.max_bytes)
            or (limits.max_events is not None and filling.events >= limits.max_events))


def fill_chunks(records: Iterable[FileRecord], limits: ChunkLimits) -> tuple[list[list[FileRecord]],
                                                                              list[FileRecord]]:
    """Greedy fill in the given order: (full chunks, the last not-full chunk's files)."""
    full: list[list[FileRecord]] = []
    filling = _Filling()
    for record in records:
        if filling.files and _would_exceed(filling, record, limits):
            full.append(filling.files)
            filling = _Filling()
        filling.add(record)
        if _reached(filling, limits):
            full.append(filling.files)
            filling = _Filling()
    return full, filling.files


def home_ses(records: list[FileRecord]) -> dict[str, list[FileRecord]]:
    """Files of one run by home SE (the file's SE holding most of the run's files), most populated SE first."""
    holding = Counter(se for record in records for se in record.ses)
    by_se: dict[str, list[FileRecord]] = defaultdict(list)
    for record in records:
        home = record.ses[0] if len(record.ses) == 1 else min(record.ses, key=lambda se: (-holding[se], se))
        by_se[home].append(record)
    return dict(sorted(by_se.items(), key=lambda item: (-len(item[1]), item[0])))


def task_ses(files: list[FileRecord]) -> tuple[str, ...]:
    """SEs holding every file; when there are none, SEs holding any file, most files first."""
    common = set(files[0].ses)
    for record in files[1:]:
        common.intersection_update(record.ses)
        if not common:
            break
    if common:
        return tuple(sorted(common))
    holding = Counter(se for record in files for se in record.ses)
    return tuple(sorted(holding, key=lambda se: (-holding[se], se)))


def _lfn_order(records: list[FileRecord]) -> list[FileRecord]:
    return sorted(records)  # records are tuples that start with their (unique) LFN


def _unplannable(records: list[FileRecord], limits: ChunkLimits, plan: ChunkPlan) -> list[FileRecord]:
    """With hard limits, drop (and report) files that alone break ``max_events``."""
    if not limits.hard or limits.max_events is None:
        return records
    kept = []
    for record in records:
        if (record.events or 0) > limits.max_events:
            plan.unplannable[record.lfn] = (f"{record.lfn}: {record.events} events exceed the task budget of "
                                            f"{limits.max_events} events")
        else:
            kept.append(record)
    return kept


def _full_chunks_at_home_ses(run: RunKey, records: list[FileRecord],
                             limits: ChunkLimits) -> tuple[list[Chunk], list[FileRecord]]:
    """One pass of steps 1 and 2: the full chunks at the files' home SEs, and the files left over."""
    made: list[Chunk] = []
    remainders: list[FileRecord] = []
    for files in home_ses(records).values():
        full, remainder = fill_chunks(_lfn_order(files), limits)
        made.extend(Chunk(run, task_ses(chunk), [r.lfn for r in chunk]) for chunk in full)
        remainders.extend(remainder)
    return made, remainders


def plan_run(run: RunKey, records: list[FileRecord], limits: ChunkLimits, run_is_complete: bool,
             plan: ChunkPlan) -> None:
    """Add the tasks of one run to ``plan`` (see the module docstring)."""
    remainders = _unplannable(records, limits, plan)
    while remainders:  # until the files left would make no full chunk at a next call either
        made, remainders = _full_chunks_at_home_ses(run, remainders, limits)
        plan.chunks.extend(made)
        if not made:
            break
    if not remainders:
        return
    if not run_is_complete:
        plan.waiting_runs[run] = len(remainders)
        return
    full, last = fill_chunks(remainders, limits)
    for chunk in [*full, last] if last else full:
        plan.chunks.append(Chunk(run, task_ses(chunk), [r.lfn for r in chunk]))


def plan_chunks(records: Iterable[FileRecord], limits: ChunkLimits, complete: Container[RunKey],
                flush: bool = False) -> ChunkPlan:
    """Tasks for ``records``: runs never mixed, full chunks at once, a run's last chunk only once it is complete
    (run in ``complete``) or on ``flush``. Runs come out in run order."""
    by_run: dict[RunKey, list[FileRecord]] = defaultdict(list)
    for record in records:
        by_run[record.run].append(record)
    plan = ChunkPlan()
    for run in sorted(by_run, key=lambda key: (key.detector is None, key.detector or 0, key.run)):
        plan_run(run, by_run[run], limits, flush or run in complete, plan)
    return plan


# ----------------------------------------------------------------------------------------------- strategies
def _optional_cap(name: str, value: int) -> int | None:
    if value < 0:
        raise ChunkingError(f"{name} = {value}: must be 0 (no limit) or positive")
    return value or None


def by_run(max_files_per_task: int = 0) -> ChunkLimits:
    """``ByRun``: a run's files (per SE) in one task, once the run is complete; optionally capped in files."""
    return ChunkLimits(max_files=_optional_cap("MaxFilesPerTask", max_files_per_task))


def by_run_files(group_size: int) -> ChunkLimits:
    """``ByRunFiles``: ``GroupSize`` files per task."""
    if group_size <= 0:
        raise ChunkingError(f"GroupSize = {group_size}: ByRunFiles needs a positive number of files per task")
    return ChunkLimits(max_files=group_size)


def by_run_size(group_size_gb: float, max_files_per_task: int = 0) -> ChunkLimits:
    """``ByRunSize``: at most ``GroupSize`` GB (10^9 bytes, as DIRAC's BySize) per task."""
    if group_size_gb <= 0:
        raise ChunkingError(f"GroupSize = {group_size_gb}: ByRunSize needs a positive size in GB")
    return ChunkLimits(max_bytes=int(group_size_gb * 1e9),
                       max_files=_optional_cap("MaxFilesPerTask", max_files_per_task))


def by_run_events(events_per_task: int, max_files_per_task: int = 0) -> ChunkLimits:
    """``ByRunEvents``: at most ``MaxEventsPerTask`` events per task (a larger single file is a task alone)."""
    if events_per_task <= 0:
        raise ChunkingError(f"MaxEventsPerTask = {events_per_task}: ByRunEvents needs a positive number of events")
    return ChunkLimits(max_events=events_per_task, max_files=_optional_cap("MaxFilesPerTask", max_files_per_task))


def by_run_cpu(cpu_time_per_task: float, cpu_time_per_event: float, max_files_per_task: int = 0) -> ChunkLimits:
    """``ByRunCPU``: events x ``CPUTimePerEvent`` <= ``CPUTimePerTask`` (seconds); a file that alone exceeds the
    budget is reported, not put in a task bound to be killed."""
    if cpu_time_per_event <= 0:
        raise ChunkingError(f"CPUTimePerEvent = {cpu_time_per_event}: ByRunCPU needs the CPU seconds one event takes")
    if cpu_time_per_task <= 0:
        raise ChunkingError(f"CPUTimePerTask = {cpu_time_per_task}: ByRunCPU needs a positive CPU time per job")
    # in decimal, as the parameters are written: in binary floating point 36000 // 3.6 is 9999, and a 10000-event file
    # of exactly 36000 s would be left out as too big
    events = int(Decimal(str(cpu_time_per_task)) // Decimal(str(cpu_time_per_event)))
    if events < 1:
        raise ChunkingError(f"CPUTimePerTask = {cpu_time_per_task} s is less than one event "
                            f"(CPUTimePerEvent = {cpu_time_per_event} s)")
    return ChunkLimits(max_events=events, max_files=_optional_cap("MaxFilesPerTask", max_files_per_task), hard=True)


# ----------------------------------------------------------------------------------------------- plugins
ParameterGetter = Callable[[str, Any], Any]

#: Each KM3DIRAC TransformationSystem plugin: its chunk limits from its parameters (name, default -> value), with
#: the defaults documented in ConfigTemplate.cfg. Shared by the plugins and by processing-train validation.
PLUGIN_LIMITS: dict[str, Callable[[ParameterGetter], ChunkLimits]] = {
    "ByRun": lambda param: by_run(param("MaxFilesPerTask", 0)),
    "ByRunFiles": lambda param: by_run_files(param("GroupSize", 10)),
    "ByRunSize": lambda param: by_run_size(param("GroupSize", 1.0), param("MaxFilesPerTask", 100)),
    "ByRunEvents": lambda param: by_run_events(param("MaxEventsPerTask", 100000), param("MaxFilesPerTask", 0)),
    "ByRunCPU": lambda param: by_run_cpu(param("CPUTimePerTask", 86400.0), param("CPUTimePerEvent", 0.0),
                                         param("MaxFilesPerTask", 0)),
}


def parameters_from(values: dict[str, Any]) -> ParameterGetter:
    """A parameter getter over a plain dict, converting each value to its default's type (as getPluginParam)."""

    def get(name: str, default: Any) -> Any:
        value = values.get(name, default)
        try:
            return type(default)(value)
        except (TypeError, ValueError) as error:
            raise ChunkingError(f"{name} = {value!r}: not a {type(default).__name__}") from error

    return get
