"""The client side of KM3DIRAC's DiracX routes (:mod:`km3diracx.routers`), shared by ``dirac km3`` (diracx-cli,
async) and KM3DIRAC's DIRAC commands (DIRAC's sync ``DiracXClient``): the requests, and the answers read back with
errors that say what to do. DiracX's generated client has no operations for an extension's routes: the requests go
through the client's ``send_request``, so they carry its token handling (the caller's access token, refreshed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: where DiracX mounts KM3DIRAC's routers: /api/<service name of the diracx.services entry point>
SERVICE_PREFIX = "/api/km3dirac"
BULK_PARAMETERS_PATH = f"{SERVICE_PREFIX}/jobs/parameters"


def job_parameters_path(job_id: int) -> str:
    return f"{SERVICE_PREFIX}/jobs/{int(job_id)}/parameters"


class JobParametersReadError(Exception):
    """DiracX did not answer a job parameters request; the message says why and what to do."""


@dataclass
class JobParametersResult:
    """The parameters of each readable job (``JobID: {name: value}``), and why each other job could not be read."""

    parameters: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


def bulk_request(job_ids: list[int], names: list[str] | None = None):
    """The ``POST /api/km3dirac/jobs/parameters`` request for ``job_ids`` (only the parameters ``names`` if given)."""
    from azure.core.rest import HttpRequest

    body: dict[str, Any] = {"job_ids": [int(job_id) for job_id in job_ids]}
    if names:
        body["parameters"] = list(names)
    return HttpRequest("POST", BULK_PARAMETERS_PATH, json=body)


def read_bulk_response(url: str, status: int, body: Any) -> JobParametersResult:
    """The answer to :func:`bulk_request`, or :class:`JobParametersReadError` naming what went wrong."""
    if status == 200 and isinstance(body, dict):
        return JobParametersResult(
            parameters={int(job_id): values for job_id, values in body.get("Parameters", {}).items()},
            errors={int(job_id): reason for job_id, reason in body.get("Errors", {}).items()})
    detail = body.get("detail") if isinstance(body, dict) else body
    if status == 404:
        raise JobParametersReadError(f"the DiracX server at {url} has no KM3DIRAC route {BULK_PARAMETERS_PATH} "
                                     "(its DiracX runs without KM3DIRAC's extension km3diracx installed)")
    if status == 401:
        raise JobParametersReadError(f"DiracX at {url} refused the token ({detail}): run dirac-proxy-init again")
    raise JobParametersReadError(f"DiracX at {url} answered {status} to {BULK_PARAMETERS_PATH}: {detail}")
