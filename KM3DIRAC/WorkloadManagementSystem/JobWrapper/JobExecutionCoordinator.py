"""KM3DIRAC's JobExecutionCoordinator (same path as DIRAC's, found first by ObjectLoader): production jobs fetch
their inputs from Rucio before the payload and store and register their outputs after it.

Driven by JDL parameters (see jdl_templates/README.md): KM3InputData, KM3OutputData, KM3OutputPath, KM3OutputSE,
KM3FailoverSEs, KM3OutputMetadata, KM3Replicate, KM3DownloadWorkers. A job without them behaves as with DIRAC's.
"""

from __future__ import annotations

from pathlib import Path

from DIRAC import S_ERROR, S_OK, gLogger
from DIRAC.WorkloadManagementSystem.JobWrapper.JobExecutionCoordinator import (
    JobExecutionCoordinator as DIRACJobExecutionCoordinator,
)

from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.job_run import plan_from_parameters
from KM3DIRAC.WorkloadManagementSystem.JobData import finish_outputs, runner_for, site_rses

log = gLogger.getSubLogger("KM3JobExecutionCoordinator")


class JobExecutionCoordinator(DIRACJobExecutionCoordinator):
    def __init__(self, jobArgs: dict, ceArgs: dict) -> None:
        super().__init__(jobArgs, ceArgs)
        self.job_id = int(jobArgs.get("JobID") or 0)
        self._runner = None

    def _get_runner(self):
        if self._runner is None:
            plan = plan_from_parameters(self.jobArgs, Path.cwd(), self.job_id, close_rses=site_rses())
            self._runner = runner_for(plan, self.job_id)
        return self._runner

    def preProcess(self, command: str, exeEnv: dict):
        try:
            files = self._get_runner().fetch_inputs()
        except KM3DiracError as error:
            log.error("input data", str(error))
            return S_ERROR(f"KM3DIRAC input data: {error}")
        if files:
            self._get_runner().status("Running")
        return S_OK({"command": command, "env": exeEnv})

    def postProcess(self):
        try:
            finish_outputs(self._get_runner(), Path.cwd(), self.job_id)
        except KM3DiracError as error:
            log.error("output data", str(error))
            return S_ERROR(f"KM3DIRAC output data: {error}")
        return S_OK()
