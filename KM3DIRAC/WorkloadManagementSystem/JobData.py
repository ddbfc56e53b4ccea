"""DIRAC side of a job's Rucio data, shared by the JobExecutionCoordinator and ``dirac-km3-job-run``.

Reads the catalog configuration once (``/Resources/FileCatalogs/RucioFileCatalog``, the same options as the
catalog), reports progress as the job's ApplicationStatus, and turns deferred registrations into a DIRAC RMS
request (operation ``KM3RegisterOutputs``) written where DIRAC's JobWrapper collects it (``*_request.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from DIRAC import gConfig, gLogger

from KM3DIRAC.core.job_run import JobDataPlan, JobDataRunner, StoreOutcome
from KM3DIRAC.Resources.Catalog.RucioSettings import catalog_from_cs

log = gLogger.getSubLogger("KM3JobData")

__all__ = ["catalog_from_cs", "finish_outputs", "runner_for", "site_rses"]

REGISTER_OPERATION = "KM3RegisterOutputs"
REQUEST_FILE = "km3dirac_outputs_request.json"


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


def runner_for(plan: JobDataPlan, job_id: int) -> JobDataRunner:
    catalog = catalog_from_cs()
    return JobDataRunner(catalog.client, catalog, plan, ApplicationStatusReporter(job_id))


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
