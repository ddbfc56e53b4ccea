"""RMS operation handler ``KM3RegisterOutputs``: register job outputs whose registration was deferred because Rucio
was unreachable. Files are stored already; each operation file carries LFN, Size, Checksum and, in its PFN field,
the RSE holding it; ``Arguments`` maps each LFN to its metadata and provenance. Registration is idempotent, so a
request that runs twice registers nothing twice.

Deploy: /Systems/RequestManagement/Agents/RequestExecutingAgent/OperationHandlers/KM3RegisterOutputs/Location =
KM3DIRAC/RequestManagementSystem/Agent/RequestOperations/KM3RegisterOutputs
"""

from __future__ import annotations

import json

from DIRAC import S_ERROR, S_OK
from DIRAC.RequestManagementSystem.private.OperationHandlerBase import OperationHandlerBase

from KM3DIRAC.core.job_outputs import RegistrationPending, register_outputs

OUTPUT_DIDS_PARAMETER = "KM3OutputDIDs"
#: the job's ApplicationStatus once every deferred output is registered: what the job reports itself when Rucio
#: answers (KM3DIRAC.core.job_run), instead of its "Registration pending" staying on a Done job
REGISTERED_STATUS = "Registered"
STATUS_SOURCE = "KM3DIRAC"


class KM3RegisterOutputs(OperationHandlerBase):
    def __init__(self, operation=None, csPath=None):
        OperationHandlerBase.__init__(self, operation, csPath)

    def __call__(self):
        from KM3DIRAC.WorkloadManagementSystem.JobData import catalog_from_cs

        try:
            metadata = json.loads(self.operation.Arguments or "{}")
        except json.JSONDecodeError as error:
            self.operation.Error = f"Arguments are not JSON: {error}"
            return S_ERROR(self.operation.Error)
        waiting = self.getWaitingFilesList()
        entries = {op_file.LFN: {"Size": op_file.Size, "Checksum": op_file.Checksum, "ChecksumType": "AD",
                                 "SE": op_file.PFN, "Meta": metadata.get(op_file.LFN, {})} for op_file in waiting}
        if not entries:
            return S_OK()
        try:
            registered = set(register_outputs(catalog_from_cs(), entries))
        except RegistrationPending as pending:
            self.operation.Error = str(pending)
            self.log.warn("Rucio still unreachable, will retry", str(pending))
            return S_ERROR(self.operation.Error)
        except Exception as error:  # refused by the catalog: these files fail for good
            for op_file in waiting:
                op_file.Error = str(error)
                op_file.Status = "Failed"
            return S_ERROR(str(error))
        for op_file in waiting:
            if op_file.LFN in registered:
                op_file.Status = "Done"
        self._publish_output_dids(registered)
        if registered >= set(entries):
            self._report_registered()
        return S_OK()

    def _report_registered(self) -> None:
        """The job's ApplicationStatus becomes "Registered" (logged with source KM3DIRAC, as the wrapper's stages);
        a failure here is logged only."""
        job_id = int(getattr(self.request, "JobID", 0) or 0)
        if not job_id:
            return
        from DIRAC.WorkloadManagementSystem.Client.JobStateUpdateClient import JobStateUpdateClient

        result = JobStateUpdateClient().setJobApplicationStatus(job_id, REGISTERED_STATUS, STATUS_SOURCE)
        if not result["OK"]:
            self.log.warn(f"could not set the ApplicationStatus of job {job_id}", result["Message"])

    def _publish_output_dids(self, registered: set[str]) -> None:
        """Add the LFNs registered now to the job's parameter KM3OutputDIDs (the job set those it registered
        itself); a failure here is logged only: the files are registered and carry their JobID."""
        job_id = int(getattr(self.request, "JobID", 0) or 0)
        if not job_id or not registered:
            return
        from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient
        from DIRAC.WorkloadManagementSystem.Client.JobStateUpdateClient import JobStateUpdateClient

        known = JobMonitoringClient().getJobParameter(job_id, OUTPUT_DIDS_PARAMETER)
        earlier = known["Value"].get(OUTPUT_DIDS_PARAMETER, "") if known["OK"] else ""
        lfns = sorted({lfn for lfn in earlier.split(",") if lfn} | registered)
        result = JobStateUpdateClient().setJobParameter(job_id, OUTPUT_DIDS_PARAMETER, ",".join(lfns))
        if not result["OK"]:
            self.log.warn(f"could not set the job parameter {OUTPUT_DIDS_PARAMETER} of job {job_id}",
                          result["Message"])
