"""Calibration sets in Rucio, through KM3DIRAC's catalog (:class:`KM3DIRAC.core.catalog.RucioCatalog`).

Layout below a base directory (CS ``/Operations/<VO>/KM3DIRAC/Calibration/BasePath``, default
``/km3net/calibration``)::

    <base>/<kind>                    CONTAINER: one per kind; its JSON metadata holds the tags
                                     (calib_tag_<tag> = <version>)
    <base>/<kind>/<version>          DATASET: the files of one version; closed + calib_frozen=True once frozen
    <base>/<kind>/<version>/<file>   FILE: JSON metadata calib_kind, calib_version, DetectorID, calib_first_run,
                                     calib_last_run, calib_start, calib_end; datatype=calibration

Files are uploaded and registered like job outputs (:func:`KM3DIRAC.core.job_outputs.store_outputs`, then the
catalog's ``add_files``: replica + metadata in one server transaction, pinned by a dataset rule). Resolution reads
a version's files with their metadata in two requests (``list_files`` and one ``get_metadata_bulk`` per 1000
files), whatever the number of runs, and answers every run in memory (:class:`KM3DIRAC.core.calibration.
CalibrationIndex`).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from KM3DIRAC.core.calibration import (
    FROZEN_KEY,
    TAG_KEY_PREFIX,
    Calibration,
    CalibrationError,
    CalibrationIndex,
    CalibrationNotFound,
    Requirement,
    check_kind,
    check_tag,
    check_version,
    from_metadata,
    overlap_problems,
    parse_requirements,
)
from KM3DIRAC.core.catalog_reads import FILE, Bulk, chunks
from KM3DIRAC.core.job_inputs import InputFile, attach_replicas, download_inputs
from KM3DIRAC.core.lfn import DID
from KM3DIRAC.core.runs import RunInfoError, RunKey, parse_km3net_file_name

log = logging.getLogger(__name__)

DEFAULT_BASE_PATH = "/km3net/calibration"
ENVIRONMENT_PREFIX = "KM3_CALIB_"
JOB_FILE = "km3_calibration.json"
JOB_SUBDIRECTORY = "calibration"
PROVENANCE_KEY = "Calibrations"


@dataclass
class Resolution:
    """Per (requirement, run): the calibration chosen, or None when none covers the run."""

    chosen: dict[tuple[str, RunKey], Calibration | None] = field(default_factory=dict)
    versions: dict[str, list[str]] = field(default_factory=dict)  # requirement -> versions it looked at

    def missing(self) -> list[tuple[str, RunKey]]:
        return [key for key, value in self.chosen.items() if value is None]

    def for_run(self, run: RunKey) -> dict[str, Calibration | None]:
        return {requirement: value for (requirement, key), value in self.chosen.items() if key == run}


class CalibrationStore:
    def __init__(self, catalog: Any, base_path: str = DEFAULT_BASE_PATH) -> None:
        self.catalog = catalog
        self.client = catalog.client
        self.base_path = base_path.rstrip("/")
        catalog.mapper.to_did(f"{self.base_path}/x")  # a base outside the VO namespace fails here, not later

    # ------------------------------------------------------------------------------------------- names
    def kind_lfn(self, kind: str) -> str:
        return f"{self.base_path}/{check_kind(kind)}"

    def dataset_lfn(self, kind: str, version: str) -> str:
        return f"{self.kind_lfn(kind)}/{check_version(version)}"

    def _did(self, lfn: str) -> DID:
        return self.catalog.mapper.to_did(lfn)

    # ------------------------------------------------------------------------------------------- reads
    def kinds(self) -> list[str]:
        listing = self.catalog.list_directory({self.base_path: True}).successful.get(self.base_path)
        return sorted(name.rsplit("/", 1)[-1] for name in (listing or {}).get("SubDirs", {}))

    def versions(self, kind: str) -> list[str]:
        """The versions of ``kind`` (one request)."""
        from rucio.common.exception import DataIdentifierNotFound

        did = self._did(self.kind_lfn(kind))
        try:
            content = list(self.client.list_content(did.scope, did.name))
        except DataIdentifierNotFound:
            return []
        return sorted(row["name"].rsplit("/", 1)[-1] for row in content if row["type"] == "DATASET")

    def tags(self, kind: str) -> dict[str, str]:
        """``{tag: version}`` of ``kind`` (one request)."""
        from rucio.common.exception import DataIdentifierNotFound

        did = self._did(self.kind_lfn(kind))
        try:
            meta = self.client.get_metadata(did.scope, did.name, plugin="JSON")
        except DataIdentifierNotFound:
            return {}
        return {key[len(TAG_KEY_PREFIX):]: str(value) for key, value in meta.items()
                if key.startswith(TAG_KEY_PREFIX) and value}

    def version_state(self, kind: str, version: str) -> dict[str, Any] | None:
        """``{"open": bool, "frozen": bool}`` of a version's dataset, None when it does not exist."""
        from rucio.common.exception import DataIdentifierNotFound

        did = self._did(self.dataset_lfn(kind, version))
        try:
            meta = self.client.get_metadata(did.scope, did.name, plugin="ALL")
        except DataIdentifierNotFound:
            return None
        return {"open": bool(meta.get("is_open")), "frozen": bool(meta.get(FROZEN_KEY)) or not meta.get("is_open")}

    def load_version(self, kind: str, version: str) -> list[Calibration]:
        """Every file of a version with its period: ``list_files`` + one ``get_metadata_bulk`` per 1000 files."""
        from rucio.common.exception import DataIdentifierNotFound

        dataset = self._did(self.dataset_lfn(kind, version))
        try:
            files = list(self.client.list_files(dataset.scope, dataset.name))
        except DataIdentifierNotFound:
            return []
        sizes = {DID(f["scope"], f["name"]): (int(f.get("bytes") or 0), f.get("adler32") or "") for f in files}
        calibrations = []
        for chunk in chunks(list(sizes)):
            for row in self.client.get_metadata_bulk([d.as_dict() for d in chunk], inherit=False, plugin="JSON"):
                did = DID(row["scope"], row["name"])
                size, adler32 = sizes[did]
                try:
                    calibrations.append(from_metadata(self.catalog.mapper.to_lfn(did), str(did), row, size, adler32))
                except CalibrationError as error:
                    log.warning("ignored: %s", error)
        return calibrations

    def versions_for(self, requirement: Requirement) -> list[str]:
        if requirement.version:
            return [requirement.version]
        if requirement.tag:
            version = self.tags(requirement.kind).get(requirement.tag)
            if version is None:
                known = ", ".join(sorted(self.tags(requirement.kind))) or "none"
                raise CalibrationNotFound(f"calibration {requirement}: no tag {requirement.tag} for kind "
                                          f"{requirement.kind} (tags: {known})")
            return [version]
        return self.versions(requirement.kind)

    def resolve(self, requirements: Sequence[Requirement], runs: Iterable[RunKey],
                when: dict[RunKey, datetime.datetime] | None = None) -> Resolution:
        """The calibration of every requirement for every run: per requirement, its versions' files are read once
        (never per run), then each run is looked up in memory."""
        runs = list(dict.fromkeys(runs))
        resolution = Resolution()
        loaded: dict[tuple[str, str], list[Calibration]] = {}
        for requirement in requirements:
            versions = self.versions_for(requirement)
            resolution.versions[str(requirement)] = versions
            for version in versions:
                if (requirement.kind, version) not in loaded:
                    loaded[(requirement.kind, version)] = self.load_version(requirement.kind, version)
            index = CalibrationIndex.build(c for v in versions for c in loaded[(requirement.kind, v)])
            for run in runs:
                moment = (when or {}).get(run)
                if run.detector is None:
                    found = None
                elif requirement.version or requirement.tag:
                    found = index.find(run.detector, versions[0], run.run, moment)
                else:
                    found = index.latest(run.detector, run.run, moment)
                resolution.chosen[(str(requirement), run)] = found
        return resolution

    # ------------------------------------------------------------------------------------------- writes
    def register(self, calibrations: Sequence[Calibration], local_paths: dict[str, Path], rse: str,
                 failover_rses: Sequence[str] = ()) -> Bulk:
        """Upload and register local calibration files (``local_paths``: the calibration's lfn field as given ->
        file). Successful/Failed per input; overlapping periods and frozen versions are refused before any upload,
        naming the files."""
        from KM3DIRAC.core.job_outputs import OutputSpec, store_outputs

        result = Bulk()
        placed: list[Calibration] = []
        for calibration in calibrations:
            lfn = f"{self.dataset_lfn(calibration.kind, calibration.version)}/{Path(local_paths[calibration.lfn]).name}"
            placed.append(Calibration(calibration.kind, calibration.detector, calibration.version, calibration.period,
                                      lfn=lfn))
        origin = {p.lfn: c.lfn for p, c in zip(placed, calibrations, strict=True)}
        by_version: dict[tuple[str, str], list[Calibration]] = {}
        for calibration in placed:
            by_version.setdefault((calibration.kind, calibration.version), []).append(calibration)
        accepted: list[Calibration] = []
        for (kind, version), group in by_version.items():
            state = self.version_state(kind, version)
            if state is not None and state["frozen"]:
                result.fail([origin[c.lfn] for c in group],
                            f"{kind} version {version} is frozen ({self.dataset_lfn(kind, version)}): register a new "
                            "version instead")
                continue
            existing = self.load_version(kind, version) if state is not None else []
            same_name = {c.lfn: c for c in existing}
            problems = overlap_problems(existing, group)
            for calibration in group:
                if calibration.lfn in problems:
                    result.failed[origin[calibration.lfn]] = problems[calibration.lfn]
                elif calibration.lfn in same_name and same_name[calibration.lfn].period != calibration.period:
                    result.failed[origin[calibration.lfn]] = (
                        f"{calibration.lfn} is registered already with {same_name[calibration.lfn].period.describe()}")
                else:
                    accepted.append(calibration)
        entries = {}
        for calibration in accepted:
            path = Path(local_paths[origin[calibration.lfn]])
            spec = OutputSpec(directory=self.catalog.mapper.parent(calibration.lfn), rse=rse,
                              failover_rses=list(failover_rses))
            try:
                (stored,) = store_outputs(self.client, [path], spec, self.catalog.mapper)
            except Exception as error:  # one file that cannot be stored does not stop the others
                result.failed[origin[calibration.lfn]] = f"{path}: upload failed: {error}"
                continue
            entries[calibration.lfn] = {"Size": stored.bytes, "Checksum": stored.adler32, "ChecksumType": "AD",
                                        "SE": stored.rse, "Meta": calibration.metadata()}
        if entries:
            registered = self.catalog.add_files(entries)
            for lfn, reason in registered.failed.items():
                result.failed[origin[lfn]] = reason
            for lfn in registered.successful:
                result.successful[origin[lfn]] = lfn
        return result

    def freeze(self, kind: str, version: str) -> None:
        """Close the version's dataset (Rucio refuses new files in it) and flag it ``calib_frozen``."""
        did = self._did(self.dataset_lfn(kind, version))
        if self.version_state(kind, version) is None:
            raise CalibrationError(f"{kind} version {version}: no such calibration set ({did.name})")
        self.client.set_metadata(did.scope, did.name, FROZEN_KEY, True)
        closed = self.catalog.set_dataset_open({did.name: True}, is_open=False)
        if closed.failed:
            raise CalibrationError(f"{kind} version {version}: could not close {did.name}: {closed.failed}")

    def set_tag(self, kind: str, tag: str, version: str) -> str | None:
        """Point ``tag`` at ``version`` (which must exist); returns the version it pointed at before."""
        check_tag(tag)
        if self.version_state(kind, version) is None:
            raise CalibrationError(f"tag {tag}: {kind} has no version {version} ({', '.join(self.versions(kind))})")
        before = self.tags(kind).get(tag)
        did = self._did(self.kind_lfn(kind))
        self.client.set_metadata(did.scope, did.name, f"{TAG_KEY_PREFIX}{tag}", version)
        return before


# ----------------------------------------------------------------------------------------------- jobs
@dataclass
class JobCalibrations:
    run: RunKey
    files: dict[str, tuple[Calibration, Path]] = field(default_factory=dict)  # requirement -> (calibration, path)

    def environment(self) -> dict[str, str]:
        """``KM3_CALIB_<KIND>=<path>`` per kind (kind upper-cased, other characters as ``_``) and
        ``KM3_CALIB_FILE`` = the job's km3_calibration.json."""
        env = {f"{ENVIRONMENT_PREFIX}{re.sub(r'[^A-Z0-9]', '_', c.kind.upper())}": str(path)
               for c, path in self.files.values()}
        return env

    def provenance(self) -> str:
        return ",".join(sorted(c.did for c, _ in self.files.values()))

    def describe(self) -> dict[str, Any]:
        return {"detector": self.run.detector, "run": self.run.run, "calibrations": {
            c.kind: {"requirement": requirement, "did": c.did, "lfn": c.lfn, "version": c.version,
                     "period": c.period.describe(), "path": str(path), "adler32": c.adler32}
            for requirement, (c, path) in self.files.items()}}


def job_run(client: Any, catalog: Any, lfns: Sequence[str]) -> RunKey:
    """The one run of a job's inputs (files, or datasets: their files): ``run_number``/``DetectorID`` metadata (one
    bulk request), else the KM3NeT file name. Inputs of several runs, or of no known run, are an error naming them."""
    from rucio.common.exception import DataIdentifierNotFound

    metadata = _metadata_bulk(client, [catalog.mapper.to_did(lfn) for lfn in lfns])
    files: list[DID] = []
    for lfn in lfns:
        did = catalog.mapper.to_did(lfn)
        row = metadata.get(did)
        if row is not None and row.get("did_type") not in (None, FILE):
            try:
                files.extend(DID(f["scope"], f["name"]) for f in client.list_files(did.scope, did.name))
            except DataIdentifierNotFound:
                pass
        else:
            files.append(did)
    metadata.update(_metadata_bulk(client, [did for did in files if did not in metadata]))
    runs = set()
    for did in files:
        meta = metadata.get(did, {})
        lfn = catalog.mapper.to_lfn(did)
        try:
            named: RunKey | None = parse_km3net_file_name(lfn)
        except RunInfoError:
            named = None
        run = meta.get("run_number") if meta.get("run_number") is not None else (named.run if named else None)
        detector = meta.get("DetectorID") if meta.get("DetectorID") is not None else (named.detector if named else None)
        if run is None:
            raise CalibrationNotFound(f"no run known for input {lfn} (no run_number metadata, not a KM3NeT file name): "
                                      "its calibration cannot be chosen")
        runs.add(RunKey(int(detector) if detector is not None else None, int(run)))
    if len(runs) != 1:
        listed = ", ".join(map(str, sorted(runs, key=str))) or "no input file"
        raise CalibrationNotFound(f"the job's inputs belong to {len(runs)} runs ({listed}): a job with calibrations "
                                  "processes one run")
    return next(iter(runs))


def _metadata_bulk(client: Any, dids: Sequence[DID]) -> dict[DID, dict]:
    from rucio.common.exception import DataIdentifierNotFound

    found: dict[DID, dict] = {}
    for chunk in chunks(list(dict.fromkeys(dids))):
        try:
            rows = client.get_metadata_bulk([d.as_dict() for d in chunk], inherit=False, plugin="ALL")
            for row in rows:
                found[DID(row["scope"], row["name"])] = row
        except DataIdentifierNotFound:
            continue
    return found


def fetch_job_calibrations(store: CalibrationStore, requirements: Sequence[str], input_lfns: Sequence[str],
                           workdir: Path, close_rses: Sequence[str] = (),
                           status: Callable[[str], None] | None = None) -> JobCalibrations:
    """Before the payload: resolve each requirement for the job's run, download the files (adler32 checked) into
    ``<workdir>/calibration``, write ``km3_calibration.json``. :class:`CalibrationNotFound` names the kind, the
    version and the run when nothing covers it."""
    status = status or (lambda message: None)
    parsed = parse_requirements(requirements)
    if not input_lfns:
        raise CalibrationNotFound(f"calibrations {', '.join(map(str, parsed))} asked for, but the job has no input "
                                  "data to tell its run")
    run = job_run(store.client, store.catalog, input_lfns)
    if run.detector is None:
        raise CalibrationNotFound(f"calibrations {', '.join(map(str, parsed))}: the detector of {run} is unknown "
                                  "(no DetectorID metadata on the inputs)")
    status("Resolving calibrations")
    resolution = store.resolve(parsed, [run])
    missing = [requirement for requirement, found in resolution.for_run(run).items() if found is None]
    if missing:
        details = "; ".join(f"{r} (versions looked at: {', '.join(resolution.versions[r]) or 'none'})" for r in missing)
        raise CalibrationNotFound(f"no calibration covers detector {run.detector} run {run.run}: {details}")
    chosen = {requirement: found for requirement, found in resolution.for_run(run).items() if found is not None}
    files = [InputFile(store.catalog.mapper.to_did(c.lfn), c.bytes, c.adler32) for c in chosen.values()]
    attach_replicas(store.client, files, close_rses)
    destination = workdir / JOB_SUBDIRECTORY
    download_inputs(store.client, files, destination,
                    progress=lambda done, total: status(f"Downloading calibrations {done}/{total}"))
    result = JobCalibrations(run)
    for (requirement, calibration), entry in zip(chosen.items(), files, strict=True):
        result.files[requirement] = (calibration, Path(str(entry.local_path)))  # adler32 checked by download_inputs
    (workdir / JOB_FILE).write_text(json.dumps(result.describe(), indent=2))
    return result


def calibration_environment(result: JobCalibrations, workdir: Path) -> dict[str, str]:
    return {**result.environment(), f"{ENVIRONMENT_PREFIX}FILE": str(workdir / JOB_FILE)}

# ----------------------------------------------------------------------------------------------- trains
@dataclass
class StepCalibrationPlan:
    step: str
    runs: list[RunKey]
    resolution: Resolution

    def without_calibration(self) -> list[tuple[str, RunKey]]:
        return self.resolution.missing()


def runs_of_files(client: Any, catalog: Any, lfns: Sequence[str], detector: int | None = None) -> list[RunKey]:
    """The runs of many files: their metadata in one bulk request per 1000, else their KM3NeT names."""
    metadata = _metadata_bulk(client, [catalog.mapper.to_did(lfn) for lfn in lfns])
    runs = set()
    for lfn in lfns:
        meta = metadata.get(catalog.mapper.to_did(lfn), {})
        try:
            named: RunKey | None = parse_km3net_file_name(lfn)
        except RunInfoError:
            named = None
        run = meta.get("run_number") if meta.get("run_number") is not None else (named.run if named else None)
        if run is None:
            continue
        found = meta.get("DetectorID") if meta.get("DetectorID") is not None else (named.detector if named else None)
        runs.add(RunKey(int(found) if found is not None else detector, int(run)))
    return sorted(runs, key=lambda key: (key.detector or 0, key.run))


def plan_train_calibrations(train: Any, store: CalibrationStore) -> list[StepCalibrationPlan]:
    """Per step with ``calibration``: the runs it will see (those of the train's first step inputs in the catalog
    now; a step fed by another sees its runs) and the calibration each run gets. One bulk resolution per step."""
    catalog = store.catalog
    runs_by_step: dict[str, list[RunKey]] = {}
    for step in train.steps:
        if step.input_step is None:
            query, path = train.input_query(step)
            runs_by_step[step.name] = runs_of_files(store.client, catalog, catalog.find_files(query, path),
                                                    train.detector)
        else:
            runs_by_step[step.name] = runs_by_step[step.input_step]
    plans = []
    for step in train.steps:
        if step.calibration:
            resolution = store.resolve(parse_requirements(step.calibration), runs_by_step[step.name])
            plans.append(StepCalibrationPlan(step.name, runs_by_step[step.name], resolution))
    return plans
