"""DIRAC's JobMonitoring service, reading job parameters from the JobParametersDB that ObjectLoader gives.

DIRAC 9.1's ``JobMonitoringHandler`` writes nothing but reads job parameters through ``getJobParametersUtility``,
which builds DIRAC's OpenSearch JobParametersDB directly (not through ObjectLoader, as every other user of the
database does). This subclass reads through ``elasticJobParametersDB``, the object its own ``initializeHandler``
loaded with ObjectLoader, so that a configured backend (``Backend = MySQL``,
:mod:`KM3DIRAC.WorkloadManagementSystem.DB.JobParametersDB`) serves reads as well as writes. Same VO rule as
DIRAC's: a user reads the jobs of their VO; a host (no VO) reads each job in its own VO.

Use: ``/Systems/WorkloadManagement/Services/JobMonitoring/HandlerPath =
KM3DIRAC/WorkloadManagementSystem/Service/KM3JobMonitoringHandler.py``. With OpenSearch it reads what DIRAC's does.
"""

from __future__ import annotations

from DIRAC import S_OK
from DIRAC.Core.Utilities.DEncode import ignoreEncodeWarning
from DIRAC.WorkloadManagementSystem.Service.JobMonitoringHandler import JobMonitoringHandler


def job_parameters(parameters_db, job_db, job_ids: list[int], name: str | None, vo: str) -> dict:
    """{JobID: {name: value}}: for ``vo`` when given, else each job read in the VO JobDB records for it."""
    if vo:
        return parameters_db.getJobParameters(job_ids, vo, name)
    if not job_ids:
        return S_OK({})
    result = job_db._query(f"SELECT JobID, VO FROM Jobs WHERE JobID IN ({', '.join(['%s'] * len(job_ids))})",
                           args=[str(job_id) for job_id in job_ids])
    if not result["OK"]:
        return result
    by_vo: dict[str, list[int]] = {}
    for job_id, job_vo in result["Value"]:
        by_vo.setdefault(job_vo, []).append(int(job_id))
    parameters: dict = {}
    for job_vo, ids in by_vo.items():
        result = parameters_db.getJobParameters(ids, job_vo, name)
        if not result["OK"]:
            return result
        parameters.update(result["Value"])
    return S_OK(parameters)


class KM3JobMonitoringHandler(JobMonitoringHandler):
    def export_getJobParameter(self, jobID, parName):
        result = job_parameters(self.elasticJobParametersDB, self.jobDB, [int(jobID)], parName, self.vo or "")
        if not result["OK"]:
            return result
        return S_OK(result["Value"].get(int(jobID), {}))

    @ignoreEncodeWarning
    def export_getJobParameters(self, jobIDs, parName=None):
        if not isinstance(jobIDs, list):
            jobIDs = [jobIDs]
        return job_parameters(self.elasticJobParametersDB, self.jobDB, [int(job_id) for job_id in jobIDs], parName,
                              self.vo or "")
