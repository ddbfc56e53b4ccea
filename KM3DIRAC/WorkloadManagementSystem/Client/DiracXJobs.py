"""KM3DIRAC jobs through DiracX (diracx-client), with the DiracX token ``dirac-proxy-init`` embeds in the proxy.

DIRAC's own ``DIRAC.Core.Security.DiracX.DiracXClient`` opens the client: ``/DiracX/URL`` from the CS, the token from
the user's proxy. Errors are raised as :class:`DiracXJobError` naming what failed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import gettempdir

from KM3DIRAC.core.errors import KM3DiracError


class DiracXJobError(KM3DiracError):
    """DiracX refused or could not be reached; the message says which and why."""


@contextmanager
def _preferences() -> Iterator:
    """DiracX client preferences from DIRAC's CS (``/DiracX/URL``) and the proxy's token, as DIRAC's own
    ``DiracXClient`` builds them (for diracx-client's async API, which DIRAC does not wrap)."""
    from DIRAC import gConfig
    from DIRAC.Core.Security.DiracX import diracxTokenFromPEM
    from DIRAC.Core.Security.Locations import getDefaultProxyLocation
    from diracx.core.preferences import DiracxPreferences

    url = gConfig.getValue("/DiracX/URL")
    if not url:
        raise DiracXJobError("DiracX is not usable: /DiracX/URL is not set in the CS")
    proxy = getDefaultProxyLocation()
    token = diracxTokenFromPEM(proxy) if proxy else None
    if not token:
        raise DiracXJobError(f"no DiracX token in the proxy {proxy}: run dirac-proxy-init with /DiracX/URL set")
    digest = hashlib.sha256(token["refresh_token"].split(".")[1].encode()).hexdigest()
    credentials = Path(gettempdir()) / f"km3-dx_{digest}"
    if not credentials.exists():
        credentials.touch(mode=0o600)
        credentials.write_text(json.dumps(token))
    yield DiracxPreferences(url=url, credentials_path=credentials)


def upload_input_sandbox(paths: list[Path]) -> str:
    """The files ``paths`` as one sandbox in DiracX's store (diracx-api ``create_sandbox``); its PFN
    (``SB:SandboxSE|/S3/...``), which DIRAC 9.1's SandboxStore serves to the JobWrapper by fetching it from DiracX."""
    import asyncio

    from diracx.api.jobs import create_sandbox
    from diracx.client.aio import AsyncDiracClient

    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise DiracXJobError(f"input sandbox files not found: {', '.join(missing)}")

    async def upload(preferences) -> str:
        async with AsyncDiracClient(diracx_preferences=preferences) as client:
            return await create_sandbox(paths, client=client)

    with _preferences() as preferences:
        try:
            return asyncio.run(upload(preferences))
        except Exception as error:  # HTTP errors of diracx-client or of the S3 upload
            raise DiracXJobError(f"DiracX did not take the input sandbox {[str(p) for p in paths]}: {error}") \
                from error


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


def job_parameters(job_ids: list[int], names: list[str] | None = None):
    """The job parameters of ``job_ids`` read through DiracX (KM3DIRAC's route ``POST /api/km3dirac/jobs/parameters``
    of its DiracX extension km3diracx), as a :class:`km3diracx.api.JobParametersResult`: each readable job's
    parameters, and the reason for each other job (not found, not the caller's)."""
    from DIRAC import gConfig
    from DIRAC.Core.Security.DiracX import DiracXClient

    from km3diracx.api import JobParametersReadError, bulk_request, read_bulk_response

    url = gConfig.getValue("/DiracX/URL", "")
    try:
        with DiracXClient() as api:
            response = api.send_request(bulk_request(job_ids, names))
    except ValueError as error:  # no /DiracX/URL, no token in the proxy
        raise DiracXJobError(f"DiracX is not usable: {error} (run dirac-proxy-init with /DiracX/URL set)") from error
    except Exception as error:  # connection errors of diracx-client (azure-core ServiceRequestError ...)
        raise DiracXJobError(f"DiracX at {url} could not be asked for job parameters: {error}") from error
    try:
        body = response.json()
    except ValueError:
        body = response.text()
    try:
        return read_bulk_response(url, response.status_code, body)
    except JobParametersReadError as error:
        raise DiracXJobError(str(error)) from error
