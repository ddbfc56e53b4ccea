"""Run information of input files: which KM3NeT run a file belongs to, its size, events and replicas.

The run comes from catalog metadata (``run_number``, and ``DetectorID`` when the catalog gives it); when a file has
no ``run_number`` it is read from the KM3NeT file name ``KM3NeT_<detector:8 digits>_<run:8 digits>...``
(``KM3NeT_00000133_00012345.root`` -> detector 133, run 12345). Catalog metadata wins over the name.

A run's dataset is the file's parent directory (KM3DIRAC registers a run's files in one Rucio dataset); a run is
complete when every dataset holding its files is closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from KM3DIRAC.core.errors import KM3DiracError

KM3NET_FILE_NAME = re.compile(r"KM3NeT_(\d{8})_(\d{8})(?=[._]|$)")
RUN_KEY = "run_number"
EVENTS_KEY = "events"
DETECTOR_KEY = "DetectorID"
SIZE_KEY = "bytes"


class RunInfoError(KM3DiracError, ValueError):
    """A file whose run, size or events cannot be known; the message names the file and what is missing."""


class RunKey(NamedTuple):
    """A run of one detector. ``detector`` is None when neither metadata nor the file name tell it."""

    detector: int | None
    run: int

    def __str__(self) -> str:
        return f"run {self.run}" if self.detector is None else f"detector {self.detector} run {self.run}"


class FileRecord(NamedTuple):
    """One input file as the chunking sees it. ``events`` is None when the catalog does not know it.

    A tuple (not a dataclass): a million of them are made per plugin call, and tuples are the cheapest to make.
    Records order by LFN first.
    """

    lfn: str
    run: RunKey
    size: int
    events: int | None
    ses: tuple[str, ...]


def _is_flat_name(lfn: str) -> bool:
    """A flat-name DID (plain ``rucio upload``): LFN ``/<vo>/<scope>:<name>`` or ``<scope>:<name>``."""
    if lfn.startswith("/"):
        parts = lfn.split("/")
        return len(parts) > 2 and ":" in parts[2]
    return ":" in lfn and not lfn.split(":", 1)[1].startswith("/")


def file_name_of(lfn: str) -> str:
    """The file name: after the last ``/`` (and after ``<scope>:`` for a flat name)."""
    name = lfn.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if _is_flat_name(lfn) and ":" in name else name


def dataset_of(lfn: str) -> str:
    """The run dataset of a file: its parent directory (``/`` for a flat-name DID: no run dataset)."""
    if _is_flat_name(lfn):
        return "/"
    return lfn[:lfn.rfind("/")] or "/"


def parse_km3net_file_name(lfn: str) -> RunKey:
    """Detector and run from ``KM3NeT_<detector:8>_<run:8>...``; :class:`RunInfoError` names the file otherwise."""
    match = KM3NET_FILE_NAME.match(file_name_of(lfn))
    if match is None:
        raise RunInfoError(f"{lfn}: no {RUN_KEY} metadata and the file name is not "
                           "KM3NeT_<detector:8 digits>_<run:8 digits>...")
    return RunKey(int(match.group(1)), int(match.group(2)))


def _as_int(lfn: str, key: str, value: Any) -> int:
    if type(value) is int and value >= 0:  # the common case, kept cheap: it runs once per file and key
        return value
    if isinstance(value, bool):
        raise RunInfoError(f"{lfn}: metadata {key}={value!r} is not an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RunInfoError(f"{lfn}: metadata {key}={value!r} is not an integer") from None
    if number < 0 or number != float(value):
        raise RunInfoError(f"{lfn}: metadata {key}={value!r} is not a non-negative integer")
    return number


def run_of(lfn: str, metadata: Mapping[str, Any], shared: dict[RunKey, RunKey] | None = None) -> RunKey:
    """The run of a file: ``run_number`` (and ``DetectorID``) metadata first, then the KM3NeT file name.
    ``shared`` interns equal keys, so the files of one run share one :class:`RunKey`."""
    run = metadata.get(RUN_KEY)
    detector = metadata.get(DETECTOR_KEY)
    if run is None:
        key = parse_km3net_file_name(lfn)
        if detector is not None:
            key = RunKey(_as_int(lfn, DETECTOR_KEY, detector), key.run)
    else:
        if detector is None:
            match = KM3NET_FILE_NAME.match(lfn, lfn.rfind("/") + 1)
            detector = int(match.group(1)) if match else None
        key = RunKey(None if detector is None else _as_int(lfn, DETECTOR_KEY, detector), _as_int(lfn, RUN_KEY, run))
    return key if shared is None else shared.setdefault(key, key)


def file_record(lfn: str, ses: Sequence[str], metadata: Mapping[str, Any], need_events: bool = False,
                shared_runs: dict[RunKey, RunKey] | None = None) -> FileRecord:
    """The :class:`FileRecord` of one file; :class:`RunInfoError` names the file when something is missing."""
    run = run_of(lfn, metadata, shared_runs)
    size = metadata.get(SIZE_KEY)
    if size is None:
        raise RunInfoError(f"{lfn}: the catalog gives no size")
    events = metadata.get(EVENTS_KEY)
    if events is None and need_events:
        raise RunInfoError(f"{lfn}: no {EVENTS_KEY} metadata (needed to plan tasks by events or CPU time)")
    return FileRecord(lfn, run, _as_int(lfn, SIZE_KEY, size),
                      None if events is None else _as_int(lfn, EVENTS_KEY, events), tuple(ses))


def build_file_records(replicas: Mapping[str, Sequence[str]], metadata: Mapping[str, Mapping[str, Any]],
                       need_events: bool = False) -> tuple[list[FileRecord], dict[str, str]]:
    """Records of the files with replicas, and ``{lfn: reason}`` of those that cannot be planned.

    Files with no replica are left out (as DIRAC's own plugins do). Identical SE lists and run keys are shared, so
    a million files over a handful of SEs and 10k runs cost one tuple per SE combination and one key per run.
    """
    records: list[FileRecord] = []
    problems: dict[str, str] = {}
    shared_ses: dict[tuple[str, ...], tuple[str, ...]] = {}
    shared_runs: dict[RunKey, RunKey] = {}
    for lfn, ses in replicas.items():
        if not ses:
            continue
        key = tuple(ses) if len(ses) == 1 else tuple(sorted(set(ses)))
        ses_tuple = shared_ses.setdefault(key, key)
        meta = metadata.get(lfn)
        if meta is None:
            problems[lfn] = f"{lfn}: no catalog metadata (not in the catalog?)"
            continue
        try:
            records.append(file_record(lfn, ses_tuple, meta, need_events, shared_runs))
        except RunInfoError as error:
            problems[lfn] = str(error)
    return records, problems


def complete_runs(records: Iterable[FileRecord], closed_datasets: set[str]) -> set[RunKey]:
    """Runs all of whose files sit in closed datasets."""
    seen: set[RunKey] = set()
    incomplete: set[RunKey] = set()
    for record in records:
        seen.add(record.run)
        if dataset_of(record.lfn) not in closed_datasets:
            incomplete.add(record.run)
    return seen - incomplete
