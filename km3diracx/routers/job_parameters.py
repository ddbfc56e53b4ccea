"""Reading job parameters through DiracX: ``GET /api/km3dirac/jobs/{job_id}/parameters`` and the bulk form
``POST /api/km3dirac/jobs/parameters``.

DiracX 0.7 writes job parameters (``PATCH /api/jobs/metadata``, what DIRAC's JobStateUpdate FutureClient sends) into
its JobParametersDB, but none of its routes reads them back (``POST /api/jobs/search`` is given the database and never
queries it). These routes read the same JobParametersDB, whichever implementation DiracX was started with (OpenSearch,
or the SQL-backed one of KM3DIRAC's sandbox).

Who may read what is DiracX's own job policy (``WMSAccessPolicy``, entry point ``diracx.access_policies`` ``wms``, so
an extension's replacement applies too): the caller must be allowed to query jobs, then to ``READ`` each job (a user
their own jobs, a ``JobAdministrator`` all). Jobs are looked for in the caller's VO only, as DiracX's search does.
A job that does not exist is reported as not found (404) before the policy is asked about it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from diracx.core.models import VectorSearchOperator
from diracx.db.os import JobParametersDB
from diracx.db.sql import JobDB
from diracx.logic.jobs import MAX_PER_PAGE
from diracx.routers.fastapi_classes import DiracxRouter
from diracx.routers.jobs.access_policies import ActionType, CheckWMSPolicyCallable
from diracx.routers.utils import AuthorizedUserInfo, verify_dirac_access_token
from fastapi import Body, Depends, HTTPException, Query
from pydantic import BaseModel, Field

router = DiracxRouter()

#: fields DiracX adds to each job parameters document: not job parameters
DOCUMENT_METADATA = ("JobID", "timestamp")


class JobParameters(BaseModel):
    JobID: int
    Parameters: dict[str, Any]


class JobParametersRequest(BaseModel):
    job_ids: list[int] = Field(max_length=MAX_PER_PAGE, description="the jobs whose parameters to read")
    parameters: list[str] | None = Field(default=None, description="only these parameters (default: all)")


class BulkJobParameters(BaseModel):
    Parameters: dict[int, dict[str, Any]] = Field(description="each readable job's parameters")
    Errors: dict[int, str] = Field(description="why each other requested job could not be read")


def _not_found(job_id: int, vo: str) -> tuple[HTTPStatus, str]:
    return HTTPStatus.NOT_FOUND, f"job {job_id} not found in VO {vo}"


def _refused(job_id: int, user_info: AuthorizedUserInfo) -> tuple[HTTPStatus, str]:
    return HTTPStatus.FORBIDDEN, (
        f"{user_info.preferred_username} (group {user_info.dirac_group}) may not read job {job_id}: "
        "it belongs to another user (a user reads the parameters of their own jobs, a JobAdministrator all)")


async def _owners(job_db: JobDB, job_ids: list[int], vo: str) -> dict[int, str]:
    """The owner of each job of ``job_ids`` that exists in ``vo``."""
    search = [{"parameter": "JobID", "operator": VectorSearchOperator.IN, "values": job_ids},
              {"parameter": "VO", "operator": "eq", "value": vo}]
    _, rows = await job_db.search(["JobID", "Owner"], search, [], per_page=max(len(job_ids), 1))
    return {int(row["JobID"]): row["Owner"] for row in rows}


async def _readable(job_ids: list[int], job_db: JobDB, user_info: AuthorizedUserInfo,
                    check_permissions) -> tuple[list[int], dict[int, tuple[HTTPStatus, str]]]:
    """The jobs of ``job_ids`` the caller may read, and the HTTP status and reason for each other one. One policy call
    for all; when it refuses, one per owner, so that someone else's job does not hide the caller's own ones."""
    await check_permissions(action=ActionType.QUERY, job_db=job_db)
    requested = sorted(set(job_ids))
    owners = await _owners(job_db, requested, user_info.vo) if requested else {}
    errors = {job_id: _not_found(job_id, user_info.vo) for job_id in requested if job_id not in owners}
    candidates = [job_id for job_id in requested if job_id in owners]
    if not candidates:
        return [], errors
    try:
        await check_permissions(action=ActionType.READ, job_db=job_db, job_ids=candidates)
        return candidates, errors
    except HTTPException as refusal:
        if refusal.status_code != HTTPStatus.FORBIDDEN:
            raise
    by_owner: dict[str, list[int]] = {}
    for job_id in candidates:
        by_owner.setdefault(owners[job_id], []).append(job_id)
    if len(by_owner) == 1:  # the call above was about this owner's jobs
        return [], {**errors, **{job_id: _refused(job_id, user_info) for job_id in candidates}}
    readable: list[int] = []
    for owned in by_owner.values():
        try:
            await check_permissions(action=ActionType.READ, job_db=job_db, job_ids=owned)
        except HTTPException as refusal:
            if refusal.status_code != HTTPStatus.FORBIDDEN:
                raise
            errors.update({job_id: _refused(job_id, user_info) for job_id in owned})
        else:
            readable += owned
    return sorted(readable), errors


async def _parameters(job_parameters_db: JobParametersDB, job_ids: list[int],
                      names: list[str] | None) -> dict[int, dict[str, Any]]:
    if not job_ids:
        return {}
    fields = ["JobID", *names] if names else None
    search = [{"parameter": "JobID", "operator": VectorSearchOperator.IN, "values": job_ids}]
    documents = await job_parameters_db.search(fields, search, [], per_page=len(job_ids))
    found: dict[int, dict[str, Any]] = {job_id: {} for job_id in job_ids}
    for document in documents:
        found[int(document["JobID"])] = {name: value for name, value in document.items()
                                         if name not in DOCUMENT_METADATA}
    return found


@router.post("/jobs/parameters")
async def get_bulk_job_parameters(
    body: Annotated[JobParametersRequest, Body()],
    job_db: JobDB,
    job_parameters_db: JobParametersDB,
    user_info: Annotated[AuthorizedUserInfo, Depends(verify_dirac_access_token)],
    check_permissions: CheckWMSPolicyCallable,
) -> BulkJobParameters:
    """The parameters of many jobs: each readable job's in ``Parameters`` (a job with none has ``{}``), the reason
    for each other one (not found, not the caller's) in ``Errors``; one unreadable job does not fail the others."""
    readable, errors = await _readable(body.job_ids, job_db, user_info, check_permissions)
    parameters = await _parameters(job_parameters_db, readable, body.parameters)
    return BulkJobParameters(Parameters=parameters, Errors={job_id: reason for job_id, (_, reason) in errors.items()})


@router.get("/jobs/{job_id}/parameters")
async def get_job_parameters(
    job_id: int,
    job_db: JobDB,
    job_parameters_db: JobParametersDB,
    user_info: Annotated[AuthorizedUserInfo, Depends(verify_dirac_access_token)],
    check_permissions: CheckWMSPolicyCallable,
    parameter: Annotated[list[str] | None, Query(description="only these parameters (repeatable)")] = None,
) -> JobParameters:
    """One job's parameters; 404 if the job is not in the caller's VO, 403 if the caller may not read it."""
    readable, errors = await _readable([job_id], job_db, user_info, check_permissions)
    if not readable:
        status, reason = errors[job_id]
        raise HTTPException(status_code=status, detail=reason)
    parameters = await _parameters(job_parameters_db, readable, parameter)
    return JobParameters(JobID=job_id, Parameters=parameters[job_id])
