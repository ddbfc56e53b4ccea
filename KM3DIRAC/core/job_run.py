"""One job's data plan and its two halves, shared by both ways in (the JobExecutionCoordinator of production jobs
and the ``dirac-km3-job-run`` command of user jobs):

    fetch_inputs()          before the payload: checks (job_checks), "Downloading inputs i/n"
    store_and_register()    after the payload:  "Uploading outputs i/n", "Registered" (or "Registration pending")

Everything that can be checked before the payload is (output and failover RSEs, output path and its fields,
the credential's lifetime against the job's CPUTime), all problems named at once in a PreflightError. The status
callback is what the DIRAC adapter turns into the job's ApplicationStatus; a bad input replica is reported there
too ("Bad replica of ... declared suspicious to Rucio").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from KM3DIRAC.core.calibration import CalibrationNotFound
from KM3DIRAC.core.calibration_store import DEFAULT_BASE_PATH as DEFAULT_CALIBRATION_BASE
from KM3DIRAC.core.calibration_store import PROVENANCE_KEY as CALIBRATION_PROVENANCE_KEY
from KM3DIRAC.core.calibration_store import (
    CalibrationStore,
    JobCalibrations,
    calibration_environment,
    fetch_job_calibrations,
)
from KM3DIRAC.core.errors import ConfigurationError, InvalidLFNError, KM3DiracError
from KM3DIRAC.core.job_checks import (
    CredentialLifetime,
    PreflightError,
    credential_problems,
    output_rse_problems,
    required_credential_seconds,
)
from KM3DIRAC.core.job_inputs import BadReplica, InputFile, attach_replicas, download_inputs, resolve_inputs
from KM3DIRAC.core.job_outputs import (
    OutputSpec,
    RegistrationPending,
    collect_outputs,
    prefetch_rse_settings,
    register_outputs,
    registration_entries,
    store_outputs,
)
from KM3DIRAC.core.runs import dataset_of

Status = Callable[[str], None]
#: Metadata an output inherits from its inputs when all inputs agree on the value (the step's own metadata wins):
#: a per-run step after a per-chunk step needs its inputs' run.
INHERITED_KEYS = ("run_number", "DetectorID")


@dataclass
class JobDataPlan:
    inputs: list[str] = field(default_factory=list)  # DIDs this job downloads itself
    parents: list[str] = field(default_factory=list)  # input LFNs (also those DIRAC downloads): provenance
    input_dir: Path = Path(".")
    close_rses: list[str] = field(default_factory=list)
    download_workers: int = 4
    output_patterns: list[str] = field(default_factory=list)
    output: OutputSpec | None = None
    cpu_time: float | None = None  # the JDL CPUTime (DIRAC's normalised seconds)
    calibrations: list[str] = field(default_factory=list)  # KM3Calibration: kind:version, kind:tag, kind


@dataclass
class StoreOutcome:
    registered: list[str] = field(default_factory=list)
    pending: dict[str, dict] = field(default_factory=dict)  # stored, registration deferred to DIRAC's RMS
    reason: str = ""  # why registration was deferred


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.replace(";", ",").split(",") if item.strip()]
    return [str(item).strip() for item in value if str(item).strip()]


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _as_dict(name: str, value: Any) -> dict[str, Any]:
    """A JSON object, or key=value items (a JDL list or a comma-separated string; numbers become numbers)."""
    if not value:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            raise ConfigurationError(f"{name} must be a JSON object or key=value items: {error}") from error
        if not isinstance(parsed, dict):
            raise ConfigurationError(f"{name} must be a JSON object, not {type(parsed).__name__}")
        return parsed
    items = {}
    for item in _as_list(value):
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"{name}: {item!r} is not key=value")
        items[key.strip()] = _scalar(text.strip())
    return items


def plan_from_parameters(parameters: dict[str, Any], workdir: Path, job_id: int | None = None,
                         close_rses: list[str] | None = None) -> JobDataPlan:
    """Build the plan from JDL parameters (names documented in ConfigTemplate.cfg and jdl_templates/README.md):
    KM3InputData, KM3OutputData, KM3OutputPath, KM3OutputSE, KM3FailoverSEs, KM3OutputMetadata, KM3Replicate,
    KM3DownloadWorkers, KM3Calibration, and the production ids JOB_ID / PRODUCTION_ID (set by DIRAC's WorkflowTasks)."""
    patterns = _as_list(parameters.get("KM3OutputData"))
    output = None
    if patterns:
        path = parameters.get("KM3OutputPath")
        rse = parameters.get("KM3OutputSE")
        missing = [name for name, value in (("KM3OutputPath", path), ("KM3OutputSE", rse)) if not value]
        if missing:
            raise ConfigurationError(f"KM3OutputData is set but {' and '.join(missing)} missing")
        provenance = {key: value for key, value in (
            ("JobID", job_id),
            ("TransformationID", _int_or_none(parameters.get("PRODUCTION_ID"))),
            ("TaskID", _int_or_none(parameters.get("JOB_ID"))),
            ("Parents", ",".join(_parents(parameters))),
        ) if value not in (None, "")}
        output = OutputSpec(directory=str(path), rse=str(rse), failover_rses=_as_list(parameters.get("KM3FailoverSEs")),
                            metadata=_as_dict("KM3OutputMetadata", parameters.get("KM3OutputMetadata")),
                            provenance=provenance, replicate_to=parameters.get("KM3Replicate") or None)
    try:
        workers = int(parameters.get("KM3DownloadWorkers") or 4)
    except ValueError as error:
        raise ConfigurationError(f"KM3DownloadWorkers must be an integer: {error}") from error
    try:
        cpu_time = float(parameters["CPUTime"]) if parameters.get("CPUTime") not in (None, "") else None
    except ValueError as error:
        raise ConfigurationError(f"CPUTime must be a number of seconds: {error}") from error
    return JobDataPlan(inputs=_as_list(parameters.get("KM3InputData")), parents=_parents(parameters), input_dir=workdir,
                       close_rses=close_rses or [], download_workers=workers, output_patterns=patterns, output=output,
                       cpu_time=cpu_time, calibrations=_as_list(parameters.get("KM3Calibration")))


def read_job_info(path: Path) -> dict[str, str]:
    """JDL parameters from the ``job.info`` file DIRAC's JobWrapper writes into the job directory
    (lines ``/Key = value``, lists joined with ", "; DIRAC 9.1 prefixes only the first line with ``/Job``)."""
    parameters: dict[str, str] = {}
    if not path.is_file():
        return parameters
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(" = ")
        if not sep:
            continue
        key = key.removeprefix("/Job").strip("/")
        if key and "/" not in key:
            parameters[key] = value.strip()
    return parameters


def _parents(parameters: dict[str, Any]) -> list[str]:
    """The job's inputs: KM3InputData, else DIRAC's InputData (a production task's files, "LFN:" prefixed)."""
    items = _as_list(parameters.get("KM3InputData")) or _as_list(parameters.get("InputData"))
    return [item[4:] if item.upper().startswith("LFN:") else item for item in items]


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


OUTPUT_PATH_FIELD = re.compile(r"<(\w+)>")


def output_directory(template: str, metadata: dict[str, Any]) -> str:
    """The output directory with ``<key>`` replaced by the outputs' metadata (e.g. ``.../run<run_number>``, the
    run being inherited from the inputs); a key without a value is an error naming it. (Not ``{key}``: DIRAC's JDL
    turns braces into lists.)"""
    missing = sorted({key for key in OUTPUT_PATH_FIELD.findall(template) if metadata.get(key) in (None, "")})
    if missing:
        raise PreflightError([f"KM3OutputPath {template}: no value for {missing} in the outputs' metadata "
                              f"{sorted(metadata)}"])
    return OUTPUT_PATH_FIELD.sub(lambda match: str(metadata[match.group(1)]), template)


class RucioUnreachableError(KM3DiracError):
    """Rucio did not answer within the call policy's bound before the payload started."""


class JobDataRunner:
    def __init__(self, client: Any, catalog: Any, plan: JobDataPlan, status: Status | None = None,
                 credential: CredentialLifetime | None = None, cpu_normalisation: float | None = None) -> None:
        self.client = client
        self.catalog = catalog
        self.plan = plan
        self.status = status or (lambda message: None)
        self.credential = credential
        self.cpu_normalisation = cpu_normalisation
        self.rse_settings: dict[str, dict] = {}
        self.bad_replicas: list[BadReplica] = []
        self.calibration_base = DEFAULT_CALIBRATION_BASE  # the DIRAC adapter sets it from the CS
        self.calibrations: JobCalibrations | None = None

    def fetch_inputs(self) -> list[InputFile]:
        """Check what can be checked, then download the calibrations and the inputs. The output RSEs' settings are
        learnt now, so uploads work even if Rucio goes away. Raises PreflightError (every problem named),
        InputDataError, CalibrationNotFound or RucioUnreachableError."""
        from KM3DIRAC.core.rucio_calls import is_unreachable

        try:
            return self._fetch_inputs()
        except KM3DiracError:
            raise
        except Exception as error:
            if is_unreachable(error):
                raise RucioUnreachableError(f"Rucio unreachable before the payload: {type(error).__name__}: "
                                            f"{error}") from error
            raise

    def _fetch_inputs(self) -> list[InputFile]:
        problems = credential_problems(self.credential,
                                       required_credential_seconds(self.plan.cpu_time, self.cpu_normalisation))
        output = self.plan.output
        if output:
            self.rse_settings = prefetch_rse_settings(self.client, output)
            problems += output_rse_problems(self.client, self._output_rses(output),
                                            getattr(self.client, "account", None))
        if problems:
            raise PreflightError(problems)
        files: list[InputFile] = []
        if self.plan.inputs:
            files = resolve_inputs(self.client, self.plan.inputs, self.catalog.mapper)
            attach_replicas(self.client, files, self.plan.close_rses)
        if output:
            parents = [self.catalog.mapper.to_lfn(f.did) for f in files] if files else self.plan.parents
            if parents:  # the outputs inherit their inputs' run (DIRAC downloads a task's InputData itself)
                self._inherit_metadata(output, parents)
            self._check_output_path(output)
        if self.plan.calibrations:  # after every check: a bad parameter costs no download
            self.calibrations = self._fetch_calibrations()
        if files:
            download_inputs(self.client, files, self.plan.input_dir, self.plan.download_workers,
                            progress=lambda done, total: self.status(f"Downloading inputs {done}/{total}"),
                            on_bad_replica=self._report_bad_replica)
        return files

    @staticmethod
    def _output_rses(spec: OutputSpec) -> dict[str, str]:
        rses = {spec.rse: "KM3OutputSE"}
        for rse in spec.failover_rses:
            rses.setdefault(rse, "KM3FailoverSEs")
        return rses

    def _check_output_path(self, spec: OutputSpec) -> None:
        directory = output_directory(spec.directory, spec.metadata)  # names fields without a value
        try:
            did = self.catalog.mapper.to_did(f"{directory.rstrip('/')}/output")
        except InvalidLFNError as error:
            raise PreflightError([f"KM3OutputPath {directory}: {error}"]) from error
        if did.scope not in set(self.client.list_scopes()):
            raise PreflightError([f"KM3OutputPath {directory}: scope {did.scope} does not exist in Rucio "
                                  f"(rucio-admin scope add --scope {did.scope} --account <owner>)"])

    def _report_bad_replica(self, bad: BadReplica) -> None:
        self.bad_replicas.append(bad)
        self.status(bad.describe())

    def _fetch_calibrations(self) -> JobCalibrations:
        store = CalibrationStore(self.catalog, self.calibration_base)
        try:
            found = fetch_job_calibrations(store, self.plan.calibrations, self.plan.parents, self.plan.input_dir,
                                           self.plan.close_rses, self.status)
        except CalibrationNotFound as error:
            self.status(f"No calibration: {error}"[:250])
            raise
        if self.plan.output:
            self.plan.output.provenance[CALIBRATION_PROVENANCE_KEY] = found.provenance()
        return found

    def calibration_environment(self) -> dict[str, str]:
        """What the payload gets: KM3_CALIB_<KIND>=<path> and KM3_CALIB_FILE (empty without calibrations)."""
        return calibration_environment(self.calibrations, self.plan.input_dir) if self.calibrations else {}

    def _inherit_metadata(self, spec: OutputSpec, input_lfns: list[str]) -> None:
        wanted = [key for key in INHERITED_KEYS if key not in spec.metadata]
        if not wanted or not input_lfns:
            return
        metadata = self.catalog.user_metadata(dict.fromkeys(input_lfns)).successful
        # a file without its own value inherits its directory's (DFC semantics): dirac-km3-ingest puts DetectorID
        # on the run dataset only
        directories = {lfn: dataset_of(lfn) for lfn, meta in metadata.items() if any(k not in meta for k in wanted)}
        if directories:
            above = self.catalog.user_metadata(dict.fromkeys(set(directories.values())), want_directory=True)
            for lfn, directory in directories.items():
                metadata[lfn] = {**above.successful.get(directory, {}), **metadata[lfn]}
        for key in wanted:
            values = {str(meta.get(key)) for meta in metadata.values()}
            if len(metadata) == len(input_lfns) and len(values) == 1 and "None" not in values:
                spec.metadata[key] = next(iter(metadata.values()))[key]

    def store_and_register(self, workdir: Path) -> StoreOutcome:
        if not self.plan.output or not self.plan.output_patterns:
            return StoreOutcome()
        spec = self.plan.output
        spec.directory = output_directory(spec.directory, spec.metadata)
        paths = collect_outputs(self.plan.output_patterns, workdir)
        stored = store_outputs(self.client, paths, spec, self.catalog.mapper,
                               progress=lambda done, total: self.status(f"Uploading outputs {done}/{total}"),
                               rse_settings=self.rse_settings)
        entries = registration_entries(stored, spec)
        try:
            registered = register_outputs(self.catalog, entries, spec.replicate_to)
        except RegistrationPending as pending:
            self.status("Registration pending")
            return StoreOutcome(pending=pending.pending, reason=str(pending))
        self.status("Registered")
        return StoreOutcome(registered=registered)
