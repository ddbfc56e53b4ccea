"""``dirac km3 ...``: KM3DIRAC's commands in diracx-cli (entry point ``diracx.cli`` ``km3``), with diracx-cli's
credentials (``DIRACX_URL``, ``DIRACX_CREDENTIALS_PATH``, as ``dirac login`` or the sandbox's environment leave them).
"""

from __future__ import annotations

__all__ = ["app"]

import json
import sys
from typing import Annotated

import typer
from diracx.cli.utils import AsyncTyper
from diracx.client.aio import AsyncDiracClient
from diracx.core.preferences import get_diracx_preferences

from km3diracx.api import JobParametersReadError, bulk_request, read_bulk_response

app = AsyncTyper(help="KM3DIRAC's DiracX routes (/api/km3dirac)")


@app.async_command("job-parameters")
async def job_parameters(
    job_ids: Annotated[list[int], typer.Argument(help="the jobs whose parameters to show")],
    parameter: Annotated[list[str], typer.Option(help="only this parameter (repeatable)")] = [],  # noqa: B006
):
    """Print the jobs' parameters as JSON ({"JobID": {name: value}}); each job that cannot be read is named on
    stderr with the reason, and the exit code is then 1."""
    async with AsyncDiracClient() as api:
        response = await api.send_request(bulk_request(job_ids, parameter or None))
        await response.read()
        try:
            body = response.json()
        except ValueError:
            body = response.text()
    try:
        result = read_bulk_response(str(get_diracx_preferences().url), response.status_code, body)
    except JobParametersReadError as error:
        print(f"dirac km3 job-parameters: {error}", file=sys.stderr)
        raise typer.Exit(2) from error
    print(json.dumps({str(job_id): values for job_id, values in sorted(result.parameters.items())}, indent=2))
    for _, reason in sorted(result.errors.items()):
        print(f"dirac km3 job-parameters: {reason}", file=sys.stderr)
    if result.errors:
        raise typer.Exit(1)
