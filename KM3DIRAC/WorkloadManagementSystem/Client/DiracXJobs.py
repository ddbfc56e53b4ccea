"""KM3DIRAC jobs through DiracX (diracx-client), with the DiracX token ``dirac-proxy-init`` embeds in the proxy.

DIRAC's own ``DIRAC.Core.Security.DiracX.DiracXClient`` opens the client: ``/DiracX/URL`` from the CS, the token from
the user's proxy. Errors are raised as :class:`DiracXJobError` naming what failed.
"""

from __future__ import annotations

from KM3DIRAC.core.errors import KM3DiracError

#: what DIRAC 9.1's JobWrapper can fetch of a DiracX job's input sandbox: nothing (DiracX keeps sandboxes in S3,
#: which the sandbox's DIRAC StorageElements do not read)
INPUT_SANDBOX_HINT = ("put the files into Rucio and name them in KM3InputData, or submit with dirac-wms-job-submit: "
                      "DiracX stores input sandboxes in its S3 store, which DIRAC 9.1's JobWrapper does not read here")


class DiracXJobError(KM3DiracError):
    """DiracX refused or could not be reached; the message says which and why."""


def submit_jdl(jdl: str) -> list[int]:
    """Submit one JDL through DiracX; the job IDs DiracX assigned (several for a parametric JDL)."""
    from DIRAC.Core.Security.DiracX import DiracXClient

    try:
        with DiracXClient() as api:
            inserted = api.jobs.submit_jdl_jobs([jdl])
    except ValueError as error:  # no /DiracX/URL, no token in the proxy
        raise DiracXJobError(f"DiracX is not usable: {error} (run dirac-proxy-init with /DiracX/URL set)") from error
    except Exception as error:  # the HTTP errors of diracx-client (azure-core HttpResponseError ...)
        raise DiracXJobError(f"DiracX refused the job: {error}") from error
    return [int(job.job_id) for job in inserted]


def job_states(job_ids: list[int]) -> dict[int, dict]:
    """Status, MinorStatus and ApplicationStatus of ``job_ids``, as DiracX's job search returns them."""
    from DIRAC.Core.Security.DiracX import DiracXClient

    search = [{"parameter": "JobID", "operator": "in", "values": [int(job_id) for job_id in job_ids]}]
    with DiracXClient() as api:
        found = api.jobs.search(parameters=["JobID", "Status", "MinorStatus", "ApplicationStatus"], search=search)
    return {int(job["JobID"]): job for job in found}
