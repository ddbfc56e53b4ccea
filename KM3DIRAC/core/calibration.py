"""Calibration sets: kinds, versions, applicability periods, tags, and the lookup "the calibration of this kind and
version valid for run R" (typed, no DIRAC, no Rucio: :mod:`KM3DIRAC.core.calibration_store` keeps them in Rucio).

A calibration file is one of a *kind* (``orientations``, ``detx``, ``t0`` ...), for one *detector*, in one
*version* (``1.0.0``), valid for a period: a run range (first..last, both included), a UTC time range
(start..end, both included), or both. KM3NeT's file names carry it:
``KM3NeT_00000133_D_1.0.0_00017397_00017496_1.orientations.root`` is detector 133, version 1.0.0, runs
17397..17496, kind ``orientations``.

Within one (kind, detector, version) periods never overlap (:func:`overlap_problems` refuses the second file), so a
run has at most one calibration there. A *requirement* (``orientations:1.0.0``, ``detx:campaign-2026a``,
``orientations``) names a kind and a version, a tag pointing at a version (tags start with a letter, versions with
a digit), or nothing: then the highest version whose period covers the run. :class:`CalibrationIndex` answers
for many runs at once from the files of one bulk listing (sorted starts, bisect).
"""

from __future__ import annotations

import bisect
import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from KM3DIRAC.core.errors import KM3DiracError

CALIBRATION_FILE_NAME = re.compile(
    r"^KM3NeT_(?P<detector>\d{8})_D_(?P<version>\d[0-9A-Za-z.+-]*)_(?P<first>\d{8})_(?P<last>\d{8})"
    r"(?:_(?P<part>\d+))?\.(?P<kind>[A-Za-z][A-Za-z0-9_-]*)\.[A-Za-z0-9.]+$")
KIND = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
VERSION = re.compile(r"^\d[0-9A-Za-z.+-]{0,63}$")
TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
LATEST = "latest"

# Metadata keys of a calibration file (Rucio JSON metadata; ``DetectorID`` is KM3DIRAC's usual key).
KIND_KEY = "calib_kind"
VERSION_KEY = "calib_version"
DETECTOR_KEY = "DetectorID"
FIRST_RUN_KEY = "calib_first_run"
LAST_RUN_KEY = "calib_last_run"
START_KEY = "calib_start"
END_KEY = "calib_end"
FROZEN_KEY = "calib_frozen"  # on a version's dataset
TAG_KEY_PREFIX = "calib_tag_"  # on a kind's container: calib_tag_<tag> = <version>


class CalibrationError(KM3DiracError, ValueError):
    """Bad calibration input (a name, a period, a requirement); the message names the item."""


class CalibrationNotFound(KM3DiracError):
    """No calibration covers a run; the message names the kind, the version and the run."""


def parse_time(value: Any, what: str = "time") -> datetime.datetime:
    """A UTC time from ISO 8601 text (``2026-01-31``, ``2026-01-31T12:00:00Z``) or a datetime; naive = UTC."""
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        try:
            moment = datetime.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError as error:
            raise CalibrationError(f"{what} {value!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Period:
    """Where a calibration applies: runs ``first_run..last_run`` and/or times ``start..end`` (all included)."""

    first_run: int | None = None
    last_run: int | None = None
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None

    def __post_init__(self) -> None:
        if (self.first_run is None) != (self.last_run is None):
            raise CalibrationError("a run range needs both its first and its last run")
        if (self.start is None) != (self.end is None):
            raise CalibrationError("a time range needs both its start and its end")
        if self.first_run is None and self.start is None:
            raise CalibrationError("an applicability period needs a run range, a time range, or both")
        if self.first_run is not None and not 0 <= self.first_run <= self.last_run:  # type: ignore[operator]
            raise CalibrationError(f"run range {self.first_run}..{self.last_run}: the first run must be <= the last")
        if self.start is not None and self.start > self.end:  # type: ignore[operator]
            raise CalibrationError(f"time range {self.start}..{self.end}: the start must be <= the end")

    @property
    def has_runs(self) -> bool:
        return self.first_run is not None

    @property
    def has_times(self) -> bool:
        return self.start is not None

    def overlaps(self, other: Period) -> bool:
        """True when a run or a time could fall in both: a shared kind of range intersects, or the two have no
        kind of range in common (then nothing orders them against each other)."""
        shared = False
        if self.has_runs and other.has_runs:
            shared = True
            if self.first_run <= other.last_run and other.first_run <= self.last_run:  # type: ignore[operator]
                return True
        if self.has_times and other.has_times:
            shared = True
            if self.start <= other.end and other.start <= self.end:  # type: ignore[operator]
                return True
        return not shared

    def covers(self, run: int | None, when: datetime.datetime | None = None) -> bool:
        if self.has_runs and run is not None:
            return self.first_run <= run <= self.last_run  # type: ignore[operator]
        if self.has_times and when is not None:
            return self.start <= when <= self.end  # type: ignore[operator]
        return False

    def describe(self) -> str:
        parts = []
        if self.has_runs:
            parts.append(f"runs {self.first_run}..{self.last_run}")
        if self.has_times:
            parts.append(f"{format_time(self.start)}..{format_time(self.end)}")  # type: ignore[arg-type]
        return ", ".join(parts)

    def as_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self.has_runs:
            meta.update({FIRST_RUN_KEY: self.first_run, LAST_RUN_KEY: self.last_run})
        if self.has_times:
            meta.update({START_KEY: format_time(self.start), END_KEY: format_time(self.end)})  # type: ignore[arg-type]
        return meta


@dataclass(frozen=True)
class Calibration:
    """One calibration file: where it is (``lfn``; ``did`` is ``scope:name``) and what it applies to."""

    kind: str
    detector: int
    version: str
    period: Period
    lfn: str = ""
    did: str = ""
    bytes: int = 0
    adler32: str = ""

    @property
    def name(self) -> str:
        return self.lfn.rsplit("/", 1)[-1]

    def metadata(self) -> dict[str, Any]:
        return {KIND_KEY: self.kind, VERSION_KEY: self.version, DETECTOR_KEY: self.detector,
                "datatype": "calibration", **self.period.as_metadata()}


def check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not KIND.match(kind):
        raise CalibrationError(f"calibration kind {kind!r}: 1-64 of letters, digits, '_', '-', starting with a letter")
    return kind


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION.match(version):
        raise CalibrationError(f"calibration version {version!r}: 1-64 of letters, digits, '.', '+', '-', starting "
                               "with a digit (a name starting with a letter is a tag)")
    return version


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not TAG.match(tag) or tag == LATEST:
        raise CalibrationError(f"tag {tag!r}: 1-64 of letters, digits, '_', '.', '-', starting with a letter "
                               f"('{LATEST}' is reserved)")
    return tag


def from_file_name(name: str) -> tuple[str, int, str, Period]:
    """(kind, detector, version, run period) from a KM3NeT calibration file name; an error names the file."""
    base = name.rsplit("/", 1)[-1]
    match = CALIBRATION_FILE_NAME.match(base)
    if match is None:
        raise CalibrationError(f"{base}: not a KM3NeT calibration file name "
                               "(KM3NeT_<detector:8>_D_<version>_<first run:8>_<last run:8>_<n>.<kind>.<ext>); "
                               "give --kind, --detector, --version and a period")
    return (match["kind"], int(match["detector"]), match["version"],
            Period(first_run=int(match["first"]), last_run=int(match["last"])))


def describe_calibration(path: str, kind: str | None = None, detector: int | None = None, version: str | None = None,
                         period: Period | None = None) -> Calibration:
    """What a file is: the values given, the rest from its KM3NeT name (a name that cannot tell is an error)."""
    named: tuple[str, int, str, Period] | None = None
    if kind is None or detector is None or version is None or period is None:
        named = from_file_name(path)
    kind = check_kind(kind if kind is not None else named[0])  # type: ignore[index]
    detector = detector if detector is not None else named[1]  # type: ignore[index]
    if isinstance(detector, bool) or not isinstance(detector, int) or detector <= 0:
        raise CalibrationError(f"{path}: detector {detector!r} must be a positive detector id")
    version = check_version(version if version is not None else named[2])  # type: ignore[index]
    return Calibration(kind, detector, version, period if period is not None else named[3], lfn=path)  # type: ignore[index]


def from_metadata(lfn: str, did: str, meta: dict[str, Any], size: int = 0, adler32: str = "") -> Calibration:
    """A registered calibration from its metadata; an error names the file and the key that is wrong."""
    try:
        start, end = meta.get(START_KEY), meta.get(END_KEY)
        period = Period(first_run=_int_or_none(meta.get(FIRST_RUN_KEY)), last_run=_int_or_none(meta.get(LAST_RUN_KEY)),
                        start=parse_time(start) if start else None, end=parse_time(end) if end else None)
        return Calibration(str(meta[KIND_KEY]), int(meta[DETECTOR_KEY]), str(meta[VERSION_KEY]), period, lfn=lfn,
                           did=did, bytes=size, adler32=adler32)
    except (KeyError, TypeError, ValueError) as error:
        raise CalibrationError(f"{lfn}: calibration metadata incomplete or wrong ({error})") from error


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def overlap_problems(existing: Iterable[Calibration], new: Sequence[Calibration]) -> dict[str, str]:
    """``{lfn of a new file: why it is refused}``: its period overlaps an existing one, or an earlier new one, of
    the same kind, detector and version. The message names both files."""
    accepted: dict[tuple[str, int, str], list[Calibration]] = {}
    for calibration in existing:
        accepted.setdefault((calibration.kind, calibration.detector, calibration.version), []).append(calibration)
    problems = {}
    for calibration in new:
        key = (calibration.kind, calibration.detector, calibration.version)
        peers = accepted.setdefault(key, [])
        clash = next((peer for peer in peers
                      if peer.name != calibration.name and peer.period.overlaps(calibration.period)), None)
        if clash is not None:
            problems[calibration.lfn] = (
                f"{calibration.name} ({calibration.period.describe()}) overlaps {clash.lfn or clash.name} "
                f"({clash.period.describe()}): {calibration.kind} version {calibration.version} of detector "
                f"{calibration.detector} already has a calibration for that period")
        else:
            peers.append(calibration)
    return problems


@dataclass(frozen=True)
class Requirement:
    """What a job or a step asks for: ``kind``, with ``version`` or ``tag`` or neither (the latest covering)."""

    kind: str
    version: str | None = None
    tag: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.version or self.tag or LATEST}"


def parse_requirement(text: str) -> Requirement:
    """``kind:version``, ``kind:tag`` or ``kind`` (= ``kind:latest``)."""
    if not isinstance(text, str) or not text.strip():
        raise CalibrationError(f"calibration requirement {text!r}: expected kind:version, kind:tag or kind")
    kind, _, selector = text.strip().partition(":")
    check_kind(kind.strip())
    selector = selector.strip()
    if not selector or selector == LATEST:
        return Requirement(kind.strip())
    if selector[0].isdigit():
        return Requirement(kind.strip(), version=check_version(selector))
    return Requirement(kind.strip(), tag=check_tag(selector))


def parse_requirements(items: Iterable[str]) -> list[Requirement]:
    requirements = [parse_requirement(item) for item in items]
    kinds = [r.kind for r in requirements]
    twice = sorted({k for k in kinds if kinds.count(k) > 1})
    if twice:
        raise CalibrationError(f"calibration kinds asked for twice: {', '.join(twice)}")
    return requirements


def version_order(version: str) -> tuple:
    """Sort key of versions: numeric parts as numbers (``1.10.0`` after ``1.9.2``)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.+-]", version))


@dataclass
class CalibrationIndex:
    """Calibrations of one kind (any versions, detectors) indexed for lookups by run or time."""

    by_key: dict[tuple[int, str], tuple[list[int], list[Calibration]]] = field(default_factory=dict)
    by_time: dict[tuple[int, str], list[Calibration]] = field(default_factory=dict)
    versions: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, calibrations: Iterable[Calibration]) -> CalibrationIndex:
        index = cls()
        runs: dict[tuple[int, str], list[Calibration]] = {}
        for calibration in calibrations:
            key = (calibration.detector, calibration.version)
            if calibration.period.has_runs:
                runs.setdefault(key, []).append(calibration)
            elif calibration.period.has_times:
                index.by_time.setdefault(key, []).append(calibration)
            index.versions.setdefault(calibration.detector, [])
            if calibration.version not in index.versions[calibration.detector]:
                index.versions[calibration.detector].append(calibration.version)
        for key, entries in runs.items():
            entries.sort(key=lambda c: c.period.first_run)  # type: ignore[arg-type, return-value]
            index.by_key[key] = ([c.period.first_run for c in entries], entries)  # type: ignore[misc]
        for versions in index.versions.values():
            versions.sort(key=version_order, reverse=True)
        return index

    def find(self, detector: int, version: str, run: int | None,
             when: datetime.datetime | None = None) -> Calibration | None:
        """The calibration of ``version`` for ``run`` of ``detector`` (by run range, else by time range)."""
        if run is not None and (detector, version) in self.by_key:
            starts, entries = self.by_key[(detector, version)]
            position = bisect.bisect_right(starts, run) - 1
            if position >= 0 and entries[position].period.covers(run):
                return entries[position]
        if when is not None:
            for calibration in self.by_time.get((detector, version), []):
                if calibration.period.covers(None, when):
                    return calibration
        return None

    def latest(self, detector: int, run: int | None, when: datetime.datetime | None = None) -> Calibration | None:
        """The highest version whose period covers the run."""
        for version in self.versions.get(detector, []):
            found = self.find(detector, version, run, when)
            if found is not None:
                return found
        return None
