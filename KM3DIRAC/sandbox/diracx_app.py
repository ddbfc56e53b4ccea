"""The sandbox's DiracX application: DiracX's own ``diracx.routers.factory.create_app`` with its one OpenSearch
database, JobParametersDB, kept in MySQL (:class:`KM3DIRAC.sandbox.diracx_job_parameters.SQLJobParametersDB`).

Served by ``uvicorn --factory KM3DIRAC.sandbox.diracx_app:create_app`` (:mod:`KM3DIRAC.sandbox.diracx_server`).
"""

from __future__ import annotations


def create_app():
    from diracx.db.os.utils import BaseOSDB
    from diracx.routers.factory import create_app as create_diracx_app

    from KM3DIRAC.sandbox.diracx_job_parameters import SQLJobParametersDB

    real_implementations = BaseOSDB.available_implementations

    def implementations(db_name: str):
        if db_name == "JobParametersDB":
            return [SQLJobParametersDB, *real_implementations(db_name)]
        return real_implementations(db_name)

    BaseOSDB.available_implementations = implementations
    return create_diracx_app()
