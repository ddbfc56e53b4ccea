"""DIRAC's OptimizationMind service with its job-state databases opened before the first message is served.

DIRAC 9.1.22's ``JobState.checkDBAccess`` marks its shared databases as opened (``checked = True``) before it opens
them; when the OptimizationMind serves its first ``OptimizeJobs`` messages in parallel threads (the WorkflowTaskAgent
submits a transformation's tasks at once), a second thread finds ``jobDB`` still None: "AttributeError: 'NoneType'
object has no attribute 'getJobAttributes'", and those jobs stay ``Received`` until the service is restarted. This
subclass opens them once in its ``initializeHandler`` (DIRAC calls the ancestors' first, then this one, all before
the service serves anything).

Use: ``/Systems/WorkloadManagement/Services/OptimizationMind/HandlerPath =
KM3DIRAC/WorkloadManagementSystem/Service/KM3OptimizationMindHandler.py`` (the local sandbox sets it).
"""

from __future__ import annotations

from DIRAC import S_OK
from DIRAC.WorkloadManagementSystem.Client.JobState.JobState import JobState
from DIRAC.WorkloadManagementSystem.Service.OptimizationMindHandler import OptimizationMindHandler


class KM3OptimizationMindHandler(OptimizationMindHandler):
    @classmethod
    def initializeHandler(cls, serviceInfoDict):
        JobState.checkDBAccess()
        return S_OK()
