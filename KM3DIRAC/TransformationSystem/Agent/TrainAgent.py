"""TrainAgent: moves every running KM3DIRAC processing train, so that runs arriving in the catalog are processed with
no one typing ``dirac-km3-train advance``.

At each cycle, for every train with a step Active, Flush or Completing (read from the YAML copy its transformations
keep, :func:`KM3DIRAC.TransformationSystem.Client.Trains.trains_in_dirac`), it does
:meth:`KM3DIRAC.TransformationSystem.Client.Trains.TrainManager.cycle`: task status from the jobs, files of Done
tasks Processed, files of Failed tasks back to Unused (a new task is made by DIRAC's TransformationAgent) until they
have failed more than ``MaxRetries`` times, then Problematic (named by ``dirac-km3-train status``), a step in Flush
with nothing left to flush Active again, and each run's output dataset of a step closed once the run is done there
(the next step's run-aware plugin then makes its last task). Stopped trains are left alone. One train that fails
does not stop the others.

Options (read once, in initialize; documented in KM3DIRAC/ConfigTemplate.cfg): ``PollingTime``, ``MaxRetries``.
"""

from __future__ import annotations

from DIRAC import S_ERROR, S_OK
from DIRAC.Core.Base.AgentModule import AgentModule

from KM3DIRAC.core.errors import KM3DiracError

AGENT_NAME = "Transformation/TrainAgent"


class TrainAgent(AgentModule):
    def initialize(self):
        from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient

        from KM3DIRAC.TransformationSystem.Client.Trains import DEFAULT_MAX_RETRIES
        from KM3DIRAC.WorkloadManagementSystem.JobData import catalog_from_cs

        self.max_retries = int(self.am_getOption("MaxRetries", DEFAULT_MAX_RETRIES))
        if self.max_retries < 0:
            return S_ERROR(f"{AGENT_NAME}/MaxRetries = {self.max_retries}: must be 0 (no retry) or more")
        self.client = TransformationClient()
        try:
            self.catalog = catalog_from_cs()
        except KM3DiracError as error:
            return S_ERROR(f"{AGENT_NAME}: no Rucio catalog: {error}")
        self.log.info("Trains' failed files are retried", f"{self.max_retries} times, then Problematic")
        return S_OK()

    def execute(self):
        from KM3DIRAC.TransformationSystem.Client.Trains import TrainManager, trains_in_dirac

        try:
            trains, unreadable = trains_in_dirac(self.client)
        except KM3DiracError as error:
            return S_ERROR(f"no trains read: {error}")
        for name, reason in unreadable.items():
            self.log.error("Train left alone: its definition cannot be read", f"{name}: {reason}")
        failures = 0
        for train in trains:
            try:
                report = TrainManager(train, client=self.client).cycle(self.catalog, self.max_retries)
            except Exception as error:  # one train's failure (Rucio or DIRAC refusing) never stops the others
                failures += 1
                self.log.error("Train not advanced", f"{train.name}: {type(error).__name__}: {error}")
                continue
            for dataset in report.closed:
                self.log.info("Run done in its step: dataset closed", f"{train.name}: {dataset}")
            for step, lfns in report.retried.items():
                self.log.info("Files of failed tasks retried", f"{train.name}.{step}: {len(lfns)} ({lfns[0]} ...)")
            for step in report.flushed:
                self.log.info("Nothing left to flush: step Active again", f"{train.name}.{step}")
            for step, lfns in report.problematic.items():
                self.log.warn("Files failed too often: Problematic", f"{train.name}.{step}: {', '.join(lfns)}")
        if failures:
            return S_ERROR(f"{failures} of {len(trains)} trains not advanced (see the errors above)")
        return S_OK()
