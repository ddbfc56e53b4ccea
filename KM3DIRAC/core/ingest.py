"""Nightly ingestion of a shore station's raw data: files registered in Rucio where the DAQ wrote them (no copy).

One pass (:func:`ingest_pass`, run by ``dirac-km3-ingest`` from cron every few minutes):

1. scan the DAQ directory: KM3NeT raw files ``KM3NeT_<detector:8>_<run:8>...`` (other names are refused, each
   named, the others go on); a file still being written is left for a later pass (younger than the settle time,
   a ``.part``/``.tmp`` name, or a ``<name>.lock`` beside it); end-of-run markers ``KM3NeT_<det>_<run>.end``;
2. ask Rucio what it has already (bulk ``get_metadata_bulk``; the content of the open run datasets): Rucio is the
   only state, so a pass killed at any point is completed by the next one, and nothing is registered twice;
3. pin each run dataset at the shore RSE by one rule (KM3DIRAC's catalog convention; with ``dataset_rules``, one
   per RSE expression too), rules in bulk, ``streams`` calls at a time, before its new files are attached: a rule
   on a new (empty) dataset costs no lock, and Rucio's judge-evaluator gives the files attached next their locks
   (as for any rule on an open dataset), out of the pass;
4. register the new files in bulk: adler32, size and, where km3io reads the file, ``events``,
   ``StartTime``/``EndTime`` (UTC); the run's metadata from the name (``DetectorID``, ``run_number``,
   ``datatype``) is on the run dataset, which the files inherit in DIRAC's metadata searches as in the DFC;
   ``file_metadata``: what each file carries of it too: ``columns`` (default: ``run_number``, ``datatype``, Rucio
   DID columns, so plain Rucio searches of files by them work), ``all`` (also ``DetectorID`` and ``Stream``, the
   rest of the name: Rucio's JSON plugin, ~5 ms a file more of server time) or ``none``; one
   ``attach_dids_to_dids`` call per ``chunk_files`` files naming the shore RSE (Rucio's "register replicas where
   they are and attach them" form): the file DIDs with their own metadata (events, run times; ``all``: DetectorID,
   Stream), their replicas with each PFN (the shore-station RSE is non-deterministic: files stay at the DAQ's
   paths) and their attachment to the run dataset (KM3DIRAC's directory convention, created with its parent
   containers as the catalog makes them) in one server transaction; ``streams`` such calls at a time; a call Rucio
   refuses is split in halves until the refused file is named, the others go in;
5. the run's DID-column metadata (``run_number``, ``datatype``) on its files: one recursive ``set_metadata_bulk``
   on the run dataset per run that got files (or holds files without them: a pass killed before this step), which
   Rucio applies to the dataset's files in one transaction. Given in the registration call instead, Rucio sets it
   file by file there, flushing each new DID on its own: measured 3.9 ms a file against 1.1 ms this way (and
   2.5 ms for the registration without it). The call updates every file of the dataset, the earlier ones too: a
   run whose files arrive over k passes costs k such updates of its first files (KM3NeT runs have a few files a
   stream; beyond ~3 passes per run the registration call would have been cheaper);
6. close the run datasets of complete runs (end-of-run marker, declared run list, or a quiet period).

Crash safety comes from the order: a file DID exists only with its replica and its attachment (one server
transaction); a DID that exists unattached (registered by another client, or by an older KM3DIRAC which attached in
a second call) is attached by the next pass; a dataset is closed only after every file of its run on disk is
registered, attached and given the run's metadata; a dataset's rules exist before its files (a rerun adds the
missing ones first). A file
DID that exists is never registered again, even if its shore replica is gone (the
replication step deletes shore copies once replicated: a leftover file on disk does not bring the copy back).
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from KM3DIRAC.core.catalog_directories import FILES, CatalogDirectories
from KM3DIRAC.core.catalog_reads import FILE, chunks, parallel_map
from KM3DIRAC.core.checksums import adler32_of_file
from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.lfn import DID
from KM3DIRAC.core.runs import DETECTOR_KEY, EVENTS_KEY, KM3NET_FILE_NAME, RUN_KEY, RunInfoError, RunKey

log = logging.getLogger(__name__)

CLOSE_BY_MARKER, CLOSE_BY_RUN_LIST, CLOSE_BY_QUIET, CLOSE_NEVER = "marker", "runlist", "quiet", "never"
CLOSE_MODES = (CLOSE_BY_MARKER, CLOSE_BY_RUN_LIST, CLOSE_BY_QUIET, CLOSE_NEVER)
DEFAULT_LAYOUT = "/{vo}/{scope}/raw/{detector}/{run}"
WRITING_SUFFIXES = (".part", ".tmp")
LOCK_SUFFIX = ".lock"
ATTACHMENT_FILES = 1000  # Rucio's schema: at most 1000 DIDs per attachment
RULE_DATASETS = 100  # run datasets per add_replication_rule call
MAX_STREAMS = 8
DATATYPE_KEY, STREAM_KEY, START_KEY, END_KEY = "datatype", "Stream", "StartTime", "EndTime"
#: what each file carries of its run's metadata (all of it is on the run dataset)
FILE_METADATA_NONE, FILE_METADATA_COLUMNS, FILE_METADATA_ALL = "none", "columns", "all"
FILE_METADATA_MODES = (FILE_METADATA_NONE, FILE_METADATA_COLUMNS, FILE_METADATA_ALL)


class IngestError(KM3DiracError, ValueError):
    """The ingestion cannot start as configured (directory, RSE, layout); the message says what to change."""


@dataclass(frozen=True)
class IngestSettings:
    """What a pass ingests and how; documented in ``KM3DIRAC/ConfigTemplate.cfg`` (section ``KM3DIRAC/Ingestion``).

    ``layout``: the run dataset's LFN, a ``str.format`` template of ``vo``, ``scope``, ``detector``, ``run``
    (format specs allowed: ``KM3NeT_{detector:08d}``). ``dataset_rules``: RSE expressions given one rule each per
    run dataset (empty by default: replication is the replication policy's; the benchmark uses it). ``streams``:
    registration, rule and closing calls in flight at a time. ``file_metadata``: which of the run's metadata
    every file carries too (module docstring, step 4)."""

    rse: str
    directory: Path
    scope: str
    vo: str = "km3net"
    layout: str = DEFAULT_LAYOUT
    datatype: str = "raw"
    settle_seconds: float = 60.0
    close_by: str = CLOSE_BY_MARKER
    run_list: Path | None = None
    quiet_seconds: float = 3600.0
    marker_suffix: str = ".end"
    read_events: bool = True
    dataset_rules: tuple[str, ...] = ()
    chunk_files: int = 1000
    streams: int = 2
    file_metadata: str = FILE_METADATA_COLUMNS

    def __post_init__(self) -> None:
        if self.close_by not in CLOSE_MODES:
            raise IngestError(f"CloseRunsBy {self.close_by!r}: choose one of {', '.join(CLOSE_MODES)}")
        if self.close_by == CLOSE_BY_RUN_LIST and self.run_list is None:
            raise IngestError("CloseRunsBy runlist needs RunList (a file of '<detector> <run>' lines)")
        if self.file_metadata not in FILE_METADATA_MODES:
            raise IngestError(f"FileMetadata {self.file_metadata!r}: choose one of {', '.join(FILE_METADATA_MODES)}")
        if not 0 < self.chunk_files <= 10000:
            raise IngestError(f"ChunkFiles {self.chunk_files}: between 1 and 10000 files per registration call")
        if not 0 < self.streams <= MAX_STREAMS:
            raise IngestError(f"Streams {self.streams}: between 1 and {MAX_STREAMS} calls at a time")
        if self.settle_seconds < 0 or self.quiet_seconds < 0:
            raise IngestError("SettleSeconds and QuietSeconds must not be negative")
        try:
            example = self.dataset_lfn(RunKey(1, 1))
        except (KeyError, ValueError, IndexError) as error:
            raise IngestError(f"DatasetLayout {self.layout!r}: {error!r}; use the fields vo, scope, detector, "
                              "run") from None
        if not example.startswith(f"/{self.vo}/{self.scope}/") or example.endswith("/"):
            raise IngestError(f"DatasetLayout {self.layout!r} gives {example}: run datasets must lie below "
                              f"/{self.vo}/{self.scope}/ (KM3DIRAC's LFN convention)")

    def dataset_lfn(self, run: RunKey) -> str:
        return self.layout.format(vo=self.vo, scope=self.scope, detector=run.detector, run=run.run)


@dataclass
class DiskFile:
    path: Path
    name: str
    run: RunKey
    size: int
    mtime: float
    lfn: str = ""
    adler32: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    dataset: str
    registered: int = 0
    bytes: int = 0
    attached_again: int = 0
    already: int = 0
    closed: bool = False
    closed_before: bool = False


@dataclass
class PassResult:
    """What one pass did. ``refused``: file name or path -> why (bad names, conflicts with Rucio); ``writing``:
    files left for a later pass; ``runs``: per run what happened; ``nights``: UTC date of the files -> counts."""

    runs: dict[RunKey, RunOutcome] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    writing: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    nights: dict[str, dict[str, int]] = field(default_factory=dict)

    def run(self, run: RunKey, dataset: str) -> RunOutcome:
        return self.runs.setdefault(run, RunOutcome(dataset))


@dataclass
class Scan:
    files: list[DiskFile] = field(default_factory=list)
    markers: set[RunKey] = field(default_factory=set)
    writing: list[Path] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    newest: dict[RunKey, float] = field(default_factory=dict)  # newest mtime of the run's files, written or not


def read_run_list(path: Path) -> set[RunKey]:
    """km3smk's run list: lines ``<detector> <run>`` (``#`` comments allowed)."""
    runs = set()
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise IngestError(f"run list {path}: {error.strerror}") from None
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or not all(word.isdigit() for word in words):
            raise IngestError(f"run list {path} line {number}: {line.strip()!r} is not '<detector> <run>'")
        runs.add(RunKey(int(words[0]), int(words[1])))
    return runs


def parse_raw_name(name: str) -> tuple[RunKey, str]:
    """Detector, run and stream of a KM3NeT raw data file name (``KM3NeT_00000133_00012345.root`` ->
    (133, 12345), stream ''; ``KM3NeT_00000267_00025291_JDAQEvent_JDAQSummaryslice.root`` -> stream
    ``JDAQEvent_JDAQSummaryslice``)."""
    match = KM3NET_FILE_NAME.match(name)
    if match is None:
        raise RunInfoError(f"{name}: not a KM3NeT raw data file name (KM3NeT_<detector:8 digits>_<run:8 digits>"
                           "...): not ingested, rename or move it out of the DAQ directory")
    rest = name[match.end():]
    stream = (rest.rsplit(".", 1)[0] if "." in rest else rest).lstrip("._")  # without the file's extension
    return RunKey(int(match.group(1)), int(match.group(2))), stream


def scan_directory(settings: IngestSettings, now: float) -> Scan:
    """The DAQ directory's raw files that can be ingested now, its markers, the files still being written."""
    scan = Scan()
    if not settings.directory.is_dir():
        raise IngestError(f"DAQ directory {settings.directory} does not exist (option Directory / --directory)")
    for root, directories, names in os.walk(settings.directory):
        directories[:] = sorted(d for d in directories if not d.startswith("."))
        present = set(names)
        for name in sorted(names):
            if name.startswith(".") or name.endswith(LOCK_SUFFIX):
                continue
            path = Path(root) / name
            if name.endswith(WRITING_SUFFIXES):
                scan.writing.append(path)
                continue
            if name.endswith(settings.marker_suffix):
                match = KM3NET_FILE_NAME.match(name)
                if match and name == match.group(0) + settings.marker_suffix:
                    scan.markers.add(RunKey(int(match.group(1)), int(match.group(2))))
                    continue
            try:
                run, stream = parse_raw_name(name)
            except RunInfoError as error:
                scan.refused[str(path)] = str(error)
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed meanwhile
            scan.newest[run] = max(scan.newest.get(run, 0.0), stat.st_mtime)
            if f"{name}{LOCK_SUFFIX}" in present or now - stat.st_mtime < settings.settle_seconds:
                scan.writing.append(path)
                continue
            meta: dict[str, Any] = {}  # the file's own: run_number and datatype come per run (module docstring)
            if settings.file_metadata == FILE_METADATA_ALL:
                meta[DETECTOR_KEY] = run.detector
                if stream:
                    meta[STREAM_KEY] = stream
            scan.files.append(DiskFile(path, name, run, stat.st_size, stat.st_mtime, meta=meta))
    return scan


def read_events(path: Path) -> dict[str, Any]:
    """``events`` (and for offline files ``StartTime``/``EndTime``, UTC ISO 8601 of the first and last event) of a
    ROOT file; {} when it cannot be read (the file is ingested without them).

    Raw DAQ files: the entries of the ``KM3NET_EVENT`` tree, read by uproot (km3io's reader; km3io 1.2.6 has no
    online reader any more). Offline files (tree ``E``): km3io's ``OfflineReader``, event times ``t_sec``."""
    try:
        import uproot
    except ImportError:
        return {}
    try:
        with uproot.open(str(path)) as root_file:
            keys = {key.split(";")[0] for key in root_file.keys(recursive=False)}
            if "KM3NET_EVENT" in keys:
                return {EVENTS_KEY: int(root_file["KM3NET_EVENT"].num_entries)}
            if "E" not in keys:
                return {}
    except Exception:
        return {}
    try:
        import km3io

        events = km3io.OfflineReader(str(path)).events
        meta: dict[str, Any] = {EVENTS_KEY: len(events)}
        seconds = [int(value) for value in events.t_sec if value > 0]
    except Exception:
        return {}
    if seconds:
        meta[START_KEY], meta[END_KEY] = _utc(min(seconds)), _utc(max(seconds))
    return meta


def _utc(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rse_pfn_prefix(client: Any, rse: str, directory: Path) -> tuple[str, str]:
    """(PFN prefix, storage prefix) of the RSE's protocol, checked to contain ``directory``; a PFN is the PFN
    prefix followed by the file's absolute path below the storage prefix."""
    from rucio.common.exception import RSENotFound

    try:
        info = client.get_rse(rse)
        protocols = client.get_protocols(rse)
    except RSENotFound:
        raise IngestError(f"RSE {rse} does not exist in Rucio: a Rucio admin creates it (non-deterministic, with a "
                          "protocol whose prefix contains the DAQ directory)") from None
    if info.get("deterministic", True):
        raise IngestError(f"RSE {rse} is deterministic: Rucio would compute each file's path from its name, but the "
                          "DAQ's files stay where they are; ingestion needs a non-deterministic shore-station RSE")
    directory = directory.resolve()
    for protocol in protocols:
        prefix = protocol.get("prefix") or "/"
        if not prefix.startswith("/"):
            continue
        if str(directory).startswith(prefix.rstrip("/") + "/") or str(directory) == prefix.rstrip("/"):
            port = protocol.get("port") or 0
            host = f"{protocol['hostname']}:{port}" if port else protocol["hostname"]
            return f"{protocol['scheme']}://{host}{prefix.rstrip('/')}", prefix.rstrip("/")
    raise IngestError(f"DAQ directory {directory} is not inside the storage of RSE {rse} (protocol prefixes "
                      f"{', '.join(p.get('prefix', '?') for p in protocols) or 'none'})")


Progress = Callable[[str], None]


class Ingestion:
    """One shore station's ingestion into KM3DIRAC's Rucio catalog (``catalog``: the catalog core, whose client,
    LFN mapping and directory collections are used)."""

    def __init__(self, catalog: CatalogDirectories, settings: IngestSettings, progress: Progress | None = None,
                 checksum: Callable[[Path], str] = adler32_of_file) -> None:
        self.catalog = catalog
        self.client = catalog.client
        self.settings = settings
        self.progress = progress or (lambda message: None)
        self.checksum = checksum
        self.pfn_prefix, self.storage_prefix = rse_pfn_prefix(self.client, settings.rse, settings.directory)

    # ------------------------------------------------------------------------------------------- the pass
    def run_pass(self, now: float | None = None) -> PassResult:
        """One pass (module docstring). :class:`IngestError` when the scope does not exist; other Rucio errors
        (the server unreachable) are raised as they are: the next pass starts again from what Rucio has."""
        from rucio.common.exception import ScopeNotFound

        try:
            return self._run_pass(now)
        except ScopeNotFound:
            raise IngestError(f"scope {self.settings.scope} does not exist in Rucio: a Rucio admin creates it "
                              f"(rucio-admin scope add --account <account> --scope {self.settings.scope})") from None

    def _run_pass(self, now: float | None) -> PassResult:
        started = time.monotonic()
        now = time.time() if now is None else now
        result = PassResult()
        scan = scan_directory(self.settings, now)
        result.refused.update(scan.refused)
        result.writing = [str(path) for path in scan.writing]
        self.progress(f"scanned {self.settings.directory}: {len(scan.files)} files to check, {len(scan.writing)} "
                      f"still being written, {len(scan.refused)} refused, {len(scan.markers)} end-of-run markers")
        for path, reason in scan.refused.items():
            self.progress(f"refused {path}: {reason}")
        files = self._with_lfns(scan.files, result)
        existing = self.catalog.did_metadata(self._did(f.lfn) for f in files)
        runs: dict[RunKey, list[DiskFile]] = defaultdict(list)
        for f in files:
            runs[f.run].append(f)
        datasets = {run: self._did(self.settings.dataset_lfn(run)) for run in runs}
        states = self.catalog.directory_dids(datasets.values())
        new: list[DiskFile] = []
        to_attach: dict[RunKey, list[DiskFile]] = defaultdict(list)
        closed_runs: set[RunKey] = set()
        for run, run_files in sorted(runs.items()):
            outcome = result.run(run, self.settings.dataset_lfn(run))
            state = states[datasets[run]]
            holder_row = state.holder_row(FILES)
            is_closed = holder_row is not None and holder_row.get("is_open") is False
            attached = self._attached_names(state.holder(FILES)) if holder_row is not None and not is_closed and \
                any(self._did(f.lfn) in existing for f in run_files) else set()
            for f in run_files:
                row = existing.get(self._did(f.lfn))
                if row is None:
                    if is_closed:
                        result.refused[str(f.path)] = (f"{f.path}: run dataset {outcome.dataset} was closed before "
                                                       "this file arrived: not ingested (reopen the dataset with "
                                                       "dirac-dms-filecatalog-cli or move the file away)")
                    else:
                        new.append(f)
                elif row.get("did_type") != FILE:
                    result.refused[str(f.path)] = f"{f.path}: {f.lfn} exists in Rucio as a {row.get('did_type')}"
                elif row.get("bytes") != f.size:
                    result.refused[str(f.path)] = (f"{f.path}: {f.size} bytes on disk, {row.get('bytes')} in Rucio "
                                                   f"({f.lfn}): changed after registration; nothing touched")
                elif not is_closed and f.lfn not in attached:
                    to_attach[run].append(f)
                else:
                    outcome.already += 1
            if is_closed:
                outcome.closed_before = True
                closed_runs.add(run)
        for f in files:
            if str(f.path) in result.refused:
                self.progress(f"refused {f.path}: {result.refused[str(f.path)]}")
        self._describe(new, result)
        left = set(result.refused) | set(result.writing)
        new = [f for f in new if str(f.path) not in left]
        work_runs = sorted(run for run in runs if run not in closed_runs)
        # the run's metadata on its dataset from its creation: a Rucio subscription (policies/replication.yaml,
        # ``as: subscription``) matches the new dataset by it when the transmogrifier first sees it
        holders, problems = self.catalog.ensure_directories(
            {datasets[run]: FILES for run in work_runs}, meta={datasets[run]: self._run_meta(run) for run in work_runs})
        waiting = {str(f.path) for f in new} | {str(f.path) for fs in to_attach.values() for f in fs}
        for run in [r for r in work_runs if datasets[r] in problems]:
            for f in runs[run]:
                if str(f.path) in waiting:
                    result.refused[str(f.path)] = f"{f.path}: {problems[datasets[run]]}"
            self.progress(f"run {run}: {problems[datasets[run]]}")
        good = {run for run in work_runs if datasets[run] in holders}
        # rules first, on the run datasets as they are (new ones empty: a rule costs no lock): the files attached
        # next get their locks from Rucio's judge-evaluator, as for any rule on an open dataset
        self._rules({holders[datasets[run]] for run in good},
                    {holders[datasets[run]] for run in good if states[datasets[run]].holder_row(FILES) is None})
        self._register([f for f in new if f.run in good], holders, datasets, result)
        self._attach_again({run: fs for run, fs in to_attach.items() if run in good}, holders, datasets, result)
        if self.settings.file_metadata != FILE_METADATA_NONE:
            unset = {f.run for f in files if (row := existing.get(self._did(f.lfn))) is not None
                     and any(row.get(key) != value for key, value in self._file_columns(f.run).items())}
            changed = {f.run for f in new if str(f.path) not in result.refused} | set(to_attach) | unset
            self._set_file_columns(sorted(changed & good), holders, datasets)
        self._close(scan, good, holders, datasets, result)
        result.seconds = time.monotonic() - started
        return result

    # ------------------------------------------------------------------------------------------- steps
    def _did(self, lfn: str) -> DID:
        return self.catalog.mapper.to_did(lfn)

    def _with_lfns(self, files: list[DiskFile], result: PassResult) -> list[DiskFile]:
        seen: dict[str, DiskFile] = {}
        for f in files:
            f.lfn = f"{self.settings.dataset_lfn(f.run)}/{f.name}"
            problem = self.catalog.validator.name_problem(f.lfn, self._did(f.lfn))
            if problem:  # Rucio would refuse the whole bulk call it is in
                result.refused[str(f.path)] = f"{f.path}: {problem}: not ingested, rename it"
                continue
            if f.lfn in seen:
                result.refused[str(f.path)] = (f"{f.path}: a file of the same name is at {seen[f.lfn].path}; both "
                                               f"would be {f.lfn}: not ingested")
                continue
            seen[f.lfn] = f
        return list(seen.values())

    def _run_meta(self, run: RunKey) -> dict[str, Any]:
        return {DETECTOR_KEY: run.detector, **self._file_columns(run)}

    def _file_columns(self, run: RunKey) -> dict[str, Any]:
        """The run's metadata every file carries (Rucio DID columns)."""
        return {RUN_KEY: run.run, DATATYPE_KEY: self.settings.datatype}

    def _set_file_columns(self, runs: list[RunKey], holders: dict[DID, DID], datasets: dict[RunKey, DID]) -> None:
        """The run's DID-column metadata on every file of its dataset (module docstring, step 5)."""
        if not runs:
            return
        self.progress(f"run metadata ({RUN_KEY}, {DATATYPE_KEY}) on the files of {len(runs)} runs")

        def set_columns(run: RunKey) -> None:
            holder = holders[datasets[run]]
            self.client.set_metadata_bulk(holder.scope, holder.name, self._file_columns(run), recursive=True)

        for _ in parallel_map(set_columns, runs, self.settings.streams):
            pass

    def _attached_names(self, holder: DID | None) -> set[str]:
        if holder is None:
            return set()
        return {row["name"] for row in self.client.list_content(holder.scope, holder.name)}

    def _describe(self, files: list[DiskFile], result: PassResult) -> None:
        """Checksum (and km3io's events and times) of the new files; a file that changed meanwhile is left."""
        for f in files:
            try:
                f.adler32 = self.checksum(f.path)
                after = f.path.stat()
            except OSError as error:
                result.refused[str(f.path)] = f"{f.path}: cannot be read: {error.strerror}"
                continue
            if after.st_size != f.size or after.st_mtime != f.mtime:
                result.writing.append(str(f.path))
                continue
            if self.settings.read_events:
                f.meta.update(read_events(f.path))

    def _pfn(self, f: DiskFile) -> str:
        return self.pfn_prefix + str(f.path.resolve())[len(self.storage_prefix):]

    def _register(self, files: list[DiskFile], holders: dict[DID, DID], datasets: dict[RunKey, DID],
                  result: PassResult) -> None:
        """Register the new files with their replicas and attach them (module docstring, step 3), ``streams``
        calls at a time; progress and counts in the order of the chunks."""
        total = len(files)
        done = 0
        started = time.monotonic()
        tasks = list(chunks(sorted(files, key=lambda f: (f.run, f.name)), self.settings.chunk_files))
        outcomes = parallel_map(lambda chunk: self._register_chunk(chunk, holders, datasets), tasks,
                                self.settings.streams)
        for chunk, failures in zip(tasks, outcomes, strict=True):
            for f in chunk:
                if str(f.path) in failures:
                    result.refused[str(f.path)] = failures[str(f.path)]
                    continue
                outcome = result.run(f.run, self.settings.dataset_lfn(f.run))
                outcome.registered += 1
                outcome.bytes += f.size
                result.files += 1
                result.bytes += f.size
                counts = result.nights.setdefault(_night(f.mtime), {"files": 0, "bytes": 0, "runs": 0})
                counts["files"] += 1
                counts["bytes"] += f.size
            done += len(chunk) - len(failures)
            if failures:
                self.progress(f"registration of {len(failures)} of {len(chunk)} files refused by Rucio: "
                              f"{next(iter(failures.values()))}")
            rate = done / max(time.monotonic() - started, 1e-6)
            self.progress(f"registered {done}/{total} files ({rate:.1f} files/s)")
        runs_per_night: dict[str, set[RunKey]] = defaultdict(set)
        for f in files:
            if str(f.path) not in result.refused:
                runs_per_night[_night(f.mtime)].add(f.run)
        for night, night_runs in runs_per_night.items():
            if night in result.nights:
                result.nights[night]["runs"] = len(night_runs)

    def _register_chunk(self, chunk: list[DiskFile], holders: dict[DID, DID],
                        datasets: dict[RunKey, DID]) -> dict[str, str]:
        """One registration call; {path: why} of the files Rucio refused. A refused call is split in halves until
        the refused files are named (the others go in); errors that are no file's fault fail the whole chunk
        (the next pass retries), a missing scope is raised."""
        from rucio.common.exception import (
            AccessDenied,
            CannotAuthenticate,
            DatabaseException,
            ResourceTemporaryUnavailable,
            RSENotFound,
            RucioException,
            ScopeNotFound,
            ServerConnectionException,
            ServiceUnavailable,
        )

        try:
            self.client.attach_dids_to_dids(self._attachments(chunk, holders, datasets, register=True),
                                            ignore_duplicate=True)
            return {}
        except ScopeNotFound:
            raise
        except (AccessDenied, CannotAuthenticate, DatabaseException, ResourceTemporaryUnavailable, RSENotFound,
                ServerConnectionException, ServiceUnavailable) as error:
            reason = error
        except RucioException as error:
            if len(chunk) > 1:
                half = len(chunk) // 2
                return {**self._register_chunk(chunk[:half], holders, datasets),
                        **self._register_chunk(chunk[half:], holders, datasets)}
            reason = error
        return {str(f.path): f"{f.path}: registration at {self.settings.rse} failed: {reason}" for f in chunk}

    def _attachments(self, files: list[DiskFile], holders: dict[DID, DID], datasets: dict[RunKey, DID],
                     register: bool = False) -> list[dict]:
        """``attach_dids_to_dids``'s attachments of ``files`` to their run datasets; ``register``: with what
        registers each file and its shore replica in the same call (size, adler32, PFN, metadata, the RSE)."""
        children: dict[DID, list[dict]] = defaultdict(list)
        for f in files:
            child: dict[str, Any] = self._did(f.lfn).as_dict()
            if register:
                child.update(bytes=f.size, adler32=f.adler32, pfn=self._pfn(f))
                if f.meta:
                    child["meta"] = f.meta
            children[holders[datasets[f.run]]].append(child)
        extra = {"rse": self.settings.rse} if register else {}
        return [{**holder.as_dict(), **extra, "dids": part}
                for holder, dids in children.items() for part in chunks(dids, ATTACHMENT_FILES)]

    def _attach_again(self, files: dict[RunKey, list[DiskFile]], holders: dict[DID, DID],
                      datasets: dict[RunKey, DID], result: PassResult) -> None:
        """Files registered earlier but not attached (another client's, or an older pass's)."""
        flat = [f for run_files in files.values() for f in run_files]
        for chunk in chunks(flat, self.settings.chunk_files):
            self.client.attach_dids_to_dids(self._attachments(chunk, holders, datasets), ignore_duplicate=True)
        for run, run_files in files.items():
            result.run(run, self.settings.dataset_lfn(run)).attached_again += len(run_files)
            self.progress(f"run {run}: {len(run_files)} files registered earlier attached to its dataset now")

    def _rules(self, holders: Iterable[DID], new: set[DID]) -> None:
        """One rule per run dataset at the shore RSE (KM3DIRAC's pinning convention: Rucio does not reap the
        shore copy before the replication step releases it) and at each of ``dataset_rules``. Datasets created by
        this pass have none: their rules are made in bulk; older ones (a killed pass may have left them without)
        are asked first. ``streams`` calls at a time."""
        wanted = (self.settings.rse, *self.settings.dataset_rules)
        holders = sorted(holders, key=str)
        older = [holder for holder in holders if holder not in new]
        present = dict(zip(older, parallel_map(
            lambda holder: {rule["rse_expression"] for rule in self.client.list_did_rules(holder.scope, holder.name)},
            older, self.settings.streams), strict=True))
        tasks: list[tuple[str, list[DID]]] = []
        for expression in wanted:
            missing = [holder for holder in holders if expression not in present.get(holder, set())]
            tasks.extend((expression, chunk) for chunk in chunks(missing, RULE_DATASETS))
        for _ in parallel_map(lambda task: self._add_rules(*task), tasks, self.settings.streams):
            pass

    def _add_rules(self, expression: str, datasets: list[DID]) -> None:
        from rucio.common.exception import DuplicateRule

        try:
            self.client.add_replication_rule([d.as_dict() for d in datasets], 1, expression, grouping="NONE",
                                             ignore_availability=True)
        except DuplicateRule:  # another pass made some meanwhile: one by one
            for dataset in datasets:
                try:
                    self.client.add_replication_rule([dataset.as_dict()], 1, expression, grouping="NONE",
                                                     ignore_availability=True)
                except DuplicateRule:
                    pass

    def _close(self, scan: Scan, good: set[RunKey], holders: dict[DID, DID], datasets: dict[RunKey, DID],
               result: PassResult) -> None:
        settings = self.settings
        if settings.close_by == CLOSE_NEVER:
            return
        declared: set[RunKey] = set()
        if settings.close_by == CLOSE_BY_RUN_LIST and settings.run_list is not None:  # given then (__post_init__)
            declared = read_run_list(settings.run_list)
        writing_runs = set()
        for path in [*scan.writing, *map(Path, result.writing)]:
            try:
                writing_runs.add(parse_raw_name(path.name.removesuffix(".part").removesuffix(".tmp"))[0])
            except RunInfoError:
                continue
        refused_runs = {f.run for f in scan.files if str(f.path) in result.refused}  # bad names too
        now = time.time()
        complete = []
        for run in sorted(good):
            if run in writing_runs or run in refused_runs:
                continue
            if settings.close_by == CLOSE_BY_MARKER and run not in scan.markers:
                continue
            if settings.close_by == CLOSE_BY_RUN_LIST and run not in declared:
                continue
            if settings.close_by == CLOSE_BY_QUIET and now - scan.newest.get(run, now) < settings.quiet_seconds:
                continue
            complete.append(run)

        # the run's metadata on its dataset (set at its creation; again here for datasets made by other clients):
        # directory metadata, inherited by its files in DFC searches, by which the replication policy selects
        # complete run datasets (policies/replication.yaml); in bulk, then closed
        for chunk in chunks(complete):
            self.client.set_dids_metadata_bulk([{**holders[datasets[run]].as_dict(), "meta": self._run_meta(run)}
                                                for run in chunk])

        def close(run: RunKey) -> RunKey:
            holder = holders[datasets[run]]
            self.client.set_status(holder.scope, holder.name, open=False)
            return run

        for run in parallel_map(close, complete, settings.streams):
            outcome = result.run(run, settings.dataset_lfn(run))
            outcome.closed = True
            self.progress(f"run {run}: complete, {outcome.dataset} closed")


def _night(mtime: float) -> str:
    return datetime.datetime.fromtimestamp(mtime, datetime.UTC).strftime("%Y-%m-%d")


def summary_lines(result: PassResult) -> list[str]:
    """The pass's summary: per night (UTC date the DAQ wrote the files) runs, files, bytes; totals and rate."""
    lines = []
    for night, counts in sorted(result.nights.items()):
        lines.append(f"night {night}: {counts['runs']} runs, {counts['files']} files, {_bytes(counts['bytes'])}")
    closed = sorted(run for run, outcome in result.runs.items() if outcome.closed)
    rate = result.files / result.seconds if result.seconds else 0.0
    lines.append(f"this pass: {len(result.runs)} runs seen, {result.files} files registered "
                 f"({_bytes(result.bytes)}) in {result.seconds:.1f} s ({rate:.1f} files/s, "
                 f"{result.bytes / max(result.seconds, 1e-6) / 1e6:.1f} MB/s); "
                 f"{sum(o.already for o in result.runs.values())} already in Rucio, "
                 f"{sum(o.attached_again for o in result.runs.values())} attached again, "
                 f"{len(result.writing)} still being written, {len(result.refused)} refused")
    if closed:
        lines.append("runs closed: " + ", ".join(str(run) for run in closed))
    return lines


def _bytes(count: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000  # type: ignore[assignment]
    return f"{count} B"
