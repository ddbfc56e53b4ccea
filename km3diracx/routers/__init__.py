"""KM3DIRAC's DiracX routes, served under ``/api/km3dirac`` (entry point ``diracx.services`` ``km3dirac``)."""

from __future__ import annotations

__all__ = ["router"]

from diracx.routers.fastapi_classes import DiracxRouter

from .job_parameters import router as job_parameters_router

router = DiracxRouter()
router.include_router(job_parameters_router)
