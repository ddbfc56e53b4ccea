#!/usr/bin/env python
"""Run a payload with its data in Rucio: download the inputs, run the command, store and register the outputs.

For plain `dirac-wms-job-submit` users: name this command as the JDL Executable; it reads the KM3* parameters
of the job's JDL (job.info in the job directory, see jdl_templates/README.md), options override them. Progress is
the job's
ApplicationStatus ("Downloading inputs 3/10", "Running", "Uploading outputs 2/5", "Registered"; a failed job's says
why: "Failed before the payload: KM3OutputSE X: no such RSE in Rucio"). Output and failover RSEs, the output path
and the proxy's lifetime against the job's CPUTime are checked before the payload starts. When Rucio cannot
be reached for registration the outputs stay stored and a request for DIRAC's RMS is left in the job directory
(km3dirac_outputs_request.json), which the JobWrapper sends; the exit code is then still the payload's.

Example:
  $ dirac-km3-job-run --inputs /km3net/data/raw/KM3NeT_00000133/12345 --outputs '*.root' \\
      --output-path /km3net/user/j/jdoe/reco/12345 --output-se CC-IN2P3-DISK -- ./reco.sh
"""

import os
import subprocess
import sys
from pathlib import Path

from DIRAC.Core.Base.Script import Script

from KM3DIRAC.dirac_switches import register_value_switches

OPTIONS = {
    "inputs": ("KM3InputData", "comma-separated DIDs (files, datasets, containers) to download"),
    "outputs": ("KM3OutputData", "comma-separated file patterns of the outputs"),
    "output-path": ("KM3OutputPath", "LFN of the directory (dataset) the outputs are registered into"),
    "output-se": ("KM3OutputSE", "RSE the outputs are uploaded to"),
    "failover-se": ("KM3FailoverSEs", "comma-separated RSEs tried when the first one fails"),
    "metadata": ("KM3OutputMetadata", "JSON object of metadata for every output"),
    "replicate": ("KM3Replicate", "RSE expression of an extra replication rule for the outputs"),
    "workers": ("KM3DownloadWorkers", "parallel downloads (default 4)"),
    "calibration": ("KM3Calibration", "comma-separated calibrations kind:version, kind:tag or kind (latest)"),
}


@Script()
def main():
    given = register_value_switches({name: help_text for name, (_, help_text) in OPTIONS.items()})
    Script.registerArgument(["Command: the payload command and its arguments (after --)"], mandatory=True)
    Script.parseCommandLine(ignoreErrors=False)
    command = Script.getPositionalArgs()

    from DIRAC import gLogger

    from KM3DIRAC.core.errors import KM3DiracError
    from KM3DIRAC.core.job_run import plan_from_parameters, read_job_info
    from KM3DIRAC.WorkloadManagementSystem.JobData import (
        ApplicationStatusReporter,
        finish_outputs,
        report_failure,
        runner_for,
        site_rses,
    )

    job_id = int(os.environ.get("JOBID") or 0)
    workdir = Path.cwd()
    parameters = {**read_job_info(workdir / "job.info"), **{OPTIONS[name][0]: value for name, value in given.items()}}
    status = ApplicationStatusReporter(job_id)
    try:  # every check that can be made before the payload is made here: a bad parameter costs no CPU
        runner = runner_for(plan_from_parameters(parameters, workdir, job_id, close_rses=site_rses()), job_id, status)
        runner.fetch_inputs()
    except KM3DiracError as error:
        report_failure(status, "before the payload", error)
        sys.exit(2)
    runner.status("Running")
    payload = subprocess.run(command, check=False, env={**os.environ, **runner.calibration_environment()})
    if payload.returncode != 0:
        runner.status(f"Payload failed with exit code {payload.returncode}")
        sys.exit(payload.returncode)
    try:
        outcome = finish_outputs(runner, workdir, job_id)
    except KM3DiracError as error:
        report_failure(status, "storing the outputs", error)
        sys.exit(3)
    for lfn in outcome.registered:
        gLogger.notice(f"registered {lfn}")
    sys.exit(0)


if __name__ == "__main__":
    main()
