#!/usr/bin/env python
"""Print jobs' parameters (KM3OutputDIDs, the JobAgent's and JobWrapper's ...) as JSON: {"JobID": {name: value}}.

With --diracx they are read through DiracX (KM3DIRAC's DiracX route /api/km3dirac/jobs/parameters, with the DiracX
token of the proxy from dirac-proxy-init; DiracX's job policy: your own jobs, all jobs with JobAdministrator);
without it through DIRAC's JobMonitoring service. Each job that cannot be read is named with the reason, and the exit
code is then 1 (2 when nothing could be asked). The JSON is all that goes to stdout.

Example:
  $ dirac-km3-job-parameters --diracx -p KM3OutputDIDs 1234 1235
"""

import json
import sys

from DIRAC.Core.Base.Script import Script


def legacy_job_parameters(job_ids: list[int], names: list[str]) -> tuple[dict[int, dict], dict[int, str]]:
    """The parameters through DIRAC's JobMonitoring; a job it returns nothing for is reported."""
    from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient

    from KM3DIRAC.core.errors import KM3DiracError

    result = JobMonitoringClient().getJobParameters(job_ids, names or None)
    if not result["OK"]:
        raise KM3DiracError(f"DIRAC's JobMonitoring refused the job parameters of {job_ids}: {result['Message']}")
    found = {int(job_id): values for job_id, values in result["Value"].items() if values}
    errors = {job_id: f"DIRAC's JobMonitoring has no parameters of job {job_id}" for job_id in job_ids
              if job_id not in found}
    return found, errors


@Script()
def main():
    names: list[str] = []
    through_diracx = []

    def add_name(value):
        names.append(value)
        return {"OK": True, "Value": None}

    def set_diracx(_value):
        through_diracx.append(True)
        return {"OK": True, "Value": None}

    Script.registerSwitch("p:", "parameter=", "only this parameter (repeatable; default: all)", add_name)
    Script.registerSwitch("", "diracx", "read them through DiracX (KM3DIRAC's DiracX extension)", set_diracx)
    Script.registerArgument(["JobID: the jobs whose parameters to print"])
    Script.parseCommandLine(ignoreErrors=False)

    from DIRAC import gLogger

    from KM3DIRAC.core.errors import KM3DiracError

    arguments = Script.getPositionalArgs()
    bad = [argument for argument in arguments if not argument.isdigit()]
    if bad:
        gLogger.error(f"not job IDs (whole numbers): {', '.join(bad)}")
        sys.exit(2)
    job_ids = [int(argument) for argument in arguments]
    try:
        if through_diracx:
            from KM3DIRAC.WorkloadManagementSystem.Client.DiracXJobs import job_parameters

            result = job_parameters(job_ids, names or None)
            found, errors = result.parameters, result.errors
        else:
            found, errors = legacy_job_parameters(job_ids, names)
    except KM3DiracError as error:
        gLogger.error(str(error))
        sys.exit(2)
    print(json.dumps({str(job_id): values for job_id, values in sorted(found.items())}, indent=2))
    # on stderr (gLogger writes to stdout): stdout stays one JSON document
    for job_id, reason in sorted(errors.items()):
        print(f"job {job_id}: {reason}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
