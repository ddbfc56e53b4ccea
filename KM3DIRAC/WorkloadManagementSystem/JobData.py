"""DIRAC side of a job's Rucio data, shared by the JobExecutionCoordinator and ``dirac-km3-job-run``.

Reads the catalog configuration once (``/Resources/FileCatalogs/RucioFileCatalog``, the same options as the
catalog), reports progress as the job's ApplicationStatus (and, when the job fails, why), and turns deferred
registrations into a DIRAC RMS request (operation ``KM3RegisterOutputs``) written where DIRAC's JobWrapper collects
it (``*_request.json``). Every Rucio call is bounded by the catalog section's Timeout/Attempts/RetryDelay.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from DIRAC import gConfig, gLogger

from KM3DIRAC.core.job_checks import CredentialLifetime
from KM3DIRAC.core.job_run import JobDataPlan, JobDataRunner, StoreOutcome
from KM3DIRAC.dirac_logging import bridge_core_logging
from KM3DIRAC.Resources.Catalog.RucioSettings import catalog_from_cs

log = gLogger.getSubLogger("KM3JobData")
bridge_core_logging()

__all__ = ["catalog_from_cs", "finish_outputs", "runner_for", "site_rses"]

REGISTER_OPERATION = "KM3RegisterOutputs"
REQUEST_FILE = "km3dirac_outputs_request.json"
#: DIRAC's JobDB keeps ApplicationStatus in a VARCHAR(255)
APPLICATION_STATUS_LENGTH = 255


def site_rses() -> list[str]:
    """The RSEs local to this worker node's site: /Resources/Sites/<grid>/<site>/SE, closest first."""
    from DIRAC.DataManagementSystem.Utilities.DMSHelpers import DMSHelpers

    site = gConfig.getValue("/LocalSite/Site", "")
    if not site:
        return []
    result = DMSHelpers().getSEsAtSite(site)
    return list(result["Value"]) if result["OK"] else []


class ApplicationStatusReporter:
    """Sends the job's ApplicationStatus (what the portal and dirac-wms-job-status show)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self._report = None
        if job_id:
            from DIRAC.WorkloadManagementSystem.Client.JobReport import JobReport

            self._report = JobReport(job_id, "KM3DIRAC")

    def __call__(self, message: str) -> None:
        log.notice(message)
        if len(message) > APPLICATION_STATUS_LENGTH:
            message = message[:APPLICATION_STATUS_LENGTH - 3] + "..."
        if self._report is not None:
            result = self._report.setApplicationStatus(message)
            if not result["OK"]:
                log.warn("could not send the application status", result["Message"])

    def output_dids(self, lfns: list[str]) -> None:
        """Record the registered outputs as the job parameter KM3OutputDIDs (outputs registered later by the RMS
        are added by KM3RegisterOutputs). DIRAC 9.1 keeps job parameters in OpenSearch; without one (and without
        KM3DIRAC's MySQL JobParametersDB) this fails, and the outputs stay findable from Rucio by their JobID."""
        if self._report is None or not lfns:
            return
        result = self._report.setJobParameter("KM3OutputDIDs", ",".join(lfns))
        if not result["OK"]:
            log.warn("could not set the job parameter KM3OutputDIDs", result["Message"])


def job_credential() -> CredentialLifetime | None:
    """The job's proxy (X509_USER_PROXY, else DIRAC's default location) and its time left; None without one."""
    from DIRAC.Core.Security import Locations
    from DIRAC.Core.Security.ProxyInfo import getProxyInfo

    proxy = os.environ.get("X509_USER_PROXY") or Locations.getProxyLocation()
    if not proxy or not Path(proxy).is_file():
        return None
    info = getProxyInfo(proxy, disableVOMS=True)
    if not info["OK"]:
        log.warn("cannot read the job's proxy", f"{proxy}: {info['Message']}")
        return None
    return CredentialLifetime(f"the job's proxy {proxy}", float(info["Value"]["secondsLeft"]))


def runner_for(plan: JobDataPlan, job_id: int, status: ApplicationStatusReporter | None = None) -> JobDataRunner:
    """The runner of ``plan``; raises KM3DiracError, or RucioUnreachableError when Rucio does not answer."""
    from KM3DIRAC.core.job_run import RucioUnreachableError
    from KM3DIRAC.core.rucio_calls import is_unreachable

    try:
        catalog = catalog_from_cs()
    except Exception as error:
        if is_unreachable(error):
            raise RucioUnreachableError(f"Rucio unreachable: {type(error).__name__}: {error}") from error
        raise
    runner = JobDataRunner(catalog.client, catalog, plan, status or ApplicationStatusReporter(job_id),
                           credential=job_credential(),
                           cpu_normalisation=gConfig.getValue("/LocalSite/CPUNormalizationFactor", 0.0) or None)
    if plan.calibrations:
        from KM3DIRAC.DataManagementSystem.Client.Calibrations import calibration_settings

        runner.calibration_base = calibration_settings().base_path
    return runner


def report_failure(status: Any, stage: str, error: Exception) -> str:
    """Log why the job failed and make it the job's ApplicationStatus (``Failed <stage>: <reason>``)."""
    message = f"Failed {stage}: {error}"
    log.error(message)
    if status is not None:
        status(message)
    return message


def finish_outputs(runner: JobDataRunner, workdir: Path, job_id: int) -> StoreOutcome:
    """After the payload: store and register the outputs, publish their DIDs, and leave an RMS request for
    registrations Rucio could not take now. Raises KM3DiracError when outputs cannot be stored at all."""
    outcome = runner.store_and_register(workdir)
    if isinstance(runner.status, ApplicationStatusReporter):
        runner.status.output_dids(outcome.registered)
    request_file = write_pending_request(outcome, workdir, job_id)
    if request_file:
        log.warn("output registration deferred to DIRAC's RMS", f"{request_file}: {outcome.reason}")
    return outcome


def write_pending_request(outcome: StoreOutcome, workdir: Path, job_id: int) -> Path | None:
    """Record deferred registrations as an RMS request file; DIRAC's JobWrapper sends it with the job's failover
    request, and the RequestExecutingAgent runs KM3DIRAC's handler once Rucio answers again."""
    if not outcome.pending:
        return None
    request = pending_request(outcome.pending, job_id)
    as_json = request.toJSON()
    if not as_json["OK"]:
        raise RuntimeError(f"could not serialise the registration request: {as_json['Message']}")
    path = workdir / REQUEST_FILE
    path.write_text(json.dumps(as_json["Value"]))
    return path


def pending_request(entries: dict[str, dict[str, Any]], job_id: int):
    from DIRAC.RequestManagementSystem.Client.File import File
    from DIRAC.RequestManagementSystem.Client.Operation import Operation
    from DIRAC.RequestManagementSystem.Client.Request import Request

    request = Request()
    request.RequestName = f"km3dirac_register_job_{job_id}"
    request.JobID = job_id
    operation = Operation()
    operation.Type = REGISTER_OPERATION
    operation.Arguments = json.dumps({lfn: entry.get("Meta", {}) for lfn, entry in entries.items()})
    operation.TargetSE = ",".join(sorted({entry["SE"] for entry in entries.values()}))
    for lfn, entry in entries.items():
        op_file = File()
        op_file.LFN = lfn
        op_file.Size = entry["Size"]
        op_file.Checksum = entry["Checksum"]
        op_file.ChecksumType = "ADLER32"
        op_file.PFN = entry["SE"]  # where the bytes are: the handler registers the replica there
        operation.addFile(op_file)
    request.addOperation(operation)
    return request
