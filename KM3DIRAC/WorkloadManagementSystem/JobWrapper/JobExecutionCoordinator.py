"""KM3DIRAC's JobExecutionCoordinator (same path as DIRAC's, found first by ObjectLoader): production jobs fetch
their inputs from Rucio before the payload and store and register their outputs after it.

Driven by JDL parameters (see jdl_templates/README.md): KM3InputData, KM3OutputData, KM3OutputPath, KM3OutputSE,
KM3FailoverSEs, KM3OutputMetadata, KM3Replicate, KM3DownloadWorkers, KM3Calibration. A job without them behaves as
with DIRAC's, and so does a job whose executable is ``dirac-km3-job-run``: that command moves the data itself.
"""

from __future__ import annotations

from pathlib import Path

from DIRAC import S_ERROR, S_OK, gLogger
from DIRAC.WorkloadManagementSystem.JobWrapper.JobExecutionCoordinator import (
    JobExecutionCoordinator as DIRACJobExecutionCoordinator,
)

from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.job_run import plan_from_parameters
from KM3DIRAC.WorkloadManagementSystem.JobData import (
    ApplicationStatusReporter,
    finish_outputs,
    report_failure,
    runner_for,
    site_rses,
)

log = gLogger.getSubLogger("KM3JobExecutionCoordinator")


SELF_MANAGING_EXECUTABLE = "dirac-km3-job-run"


class JobExecutionCoordinator(DIRACJobExecutionCoordinator):
    def __init__(self, jobArgs: dict, ceArgs: dict) -> None:
        super().__init__(jobArgs, ceArgs)
        self.job_id = int(jobArgs.get("JobID") or 0)
        self.enabled = Path(str(jobArgs.get("Executable", ""))).name != SELF_MANAGING_EXECUTABLE
        self._runner = None
        self._status = None

    def job_directory(self) -> Path:
        """Where DIRAC's JobWrapper runs the payload: <wrapper directory>/<JobID> (not the current directory)."""
        candidate = Path.cwd() / str(self.job_id)
        return candidate if self.job_id and candidate.is_dir() else Path.cwd()

    def _get_runner(self):
        if self._status is None:
            self._status = ApplicationStatusReporter(self.job_id)
        if self._runner is None:
            plan = plan_from_parameters(self.jobArgs, self.job_directory(), self.job_id, close_rses=site_rses())
            self._runner = runner_for(plan, self.job_id, self._status)
        return self._runner

    def preProcess(self, command: str, exeEnv: dict):
        """Checks and input data before the payload: a failure fails the job without running it, and the job's
        ApplicationStatus says why."""
        if not self.enabled:
            return S_OK({"command": command, "env": exeEnv})
        try:
            files = self._get_runner().fetch_inputs()
        except KM3DiracError as error:
            return S_ERROR(f"KM3DIRAC: {report_failure(self._status, 'before the payload', error)}")
        if files:
            self._get_runner().status("Running")
        exeEnv.update(self._get_runner().calibration_environment())  # KM3Calibration: KM3_CALIB_<KIND>=<path>
        return S_OK({"command": command, "env": exeEnv})

    def postProcess(self):
        if not self.enabled:
            return S_OK()
        try:
            finish_outputs(self._get_runner(), self.job_directory(), self.job_id)
        except KM3DiracError as error:
            return S_ERROR(f"KM3DIRAC: {report_failure(self._status, 'storing the outputs', error)}")
        return S_OK()
