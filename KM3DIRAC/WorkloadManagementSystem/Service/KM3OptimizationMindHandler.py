"""DIRAC's OptimizationMind service with its job-state databases opened before the first message is served.

DIRAC 9.1.22's ``JobState.checkDBAccess`` marks its shared databases as opened (``checked = True``) before it opens
them; when the OptimizationMind serves its first ``OptimizeJobs`` messages in parallel threads (the WorkflowTaskAgent
submits a transformation's tasks at once), a second thread finds ``jobDB`` still None: "AttributeError: 'NoneType'
object has no attribute 'getJobAttributes'", and those jobs stay ``Received`` until the service is restarted. This
subclass opens them once in its ``initializeHandler`` (DIRAC calls the ancestors' first, then this one, all before
the service serves anything).

Jobs DiracX accepts are written into JobDB directly: no JobManager announces them, and DIRAC looks for such jobs every
``LoadJobPeriod`` seconds, never more often than once a minute (its ThreadScheduler's minimum). With the option
``ReceivedJobsLoadPeriod`` (seconds, 0: off) this handler looks for them that often, through the executors' own
reconnection path (``exec_executorConnected``).

Use: ``/Systems/WorkloadManagement/Services/OptimizationMind/HandlerPath =
KM3DIRAC/WorkloadManagementSystem/Service/KM3OptimizationMindHandler.py`` (the local sandbox sets it).
"""

from __future__ import annotations

from DIRAC import S_OK
from DIRAC.Core.Utilities.ThreadScheduler import gThreadScheduler
from DIRAC.WorkloadManagementSystem.Client.JobState.JobState import JobState
from DIRAC.WorkloadManagementSystem.Service.OptimizationMindHandler import OptimizationMindHandler


class KM3OptimizationMindHandler(OptimizationMindHandler):
    @classmethod
    def initializeHandler(cls, serviceInfoDict):
        JobState.checkDBAccess()
        period = int(cls.srv_getCSOption("ReceivedJobsLoadPeriod", 0))
        if period > 0:
            gThreadScheduler.setMinValidPeriod(period)
            result = gThreadScheduler.addPeriodicTask(period, cls.loadUnannouncedJobs)
            if not result["OK"]:
                return result
        return S_OK()

    @classmethod
    def loadUnannouncedJobs(cls):
        """Jobs in Received or Checking that the OptimizationMind does not know yet, for every connected executor."""
        connected = [name for name, count in cls.getExecutorsConnected().items() if count > 0]
        if not connected:
            return S_OK()
        return cls.exec_executorConnected(None, connected)
