"""DiracX's JobParametersDB kept in KM3DIRAC's MySQL ``JobParameters`` table instead of OpenSearch (sandbox only).

DiracX 0.7 keeps job parameters in OpenSearch only, which cannot be installed here. This class has the interface of
``diracx.db.os.JobParametersDB`` (``upsert``, ``bulk_upsert``, ``search``, ``ping``) on the table DIRAC's services of
the sandbox use for the same purpose (:mod:`KM3DIRAC.WorkloadManagementSystem.DB.SQLJobParametersDB`: one row per job
and parameter, with the job's VO): a parameter set through DiracX is read by DIRAC's JobMonitoring and the other way
round. Connection: ``DIRACX_OS_DB_JOBPARAMETERSDB='{"sqlalchemy_dsn": "mysql+aiomysql://..."}'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from diracx.core.exceptions import InvalidQueryError
from diracx.db.os.job_parameters import JobParametersDB
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from KM3DIRAC.WorkloadManagementSystem.DB.SQLJobParametersDB import TABLE

#: the fields DiracX adds to every document; not job parameters
_METADATA_FIELDS = ("JobID", "timestamp")


class SQLJobParametersDB(JobParametersDB):
    def __init__(self, connection_kwargs: dict[str, Any], *, global_prefix: str = "") -> None:
        super().__init__(connection_kwargs, global_prefix=global_prefix)
        if "sqlalchemy_dsn" not in connection_kwargs:
            raise ValueError("SQLJobParametersDB needs {'sqlalchemy_dsn': 'mysql+aiomysql://...'} as its connection")
        self._dsn = connection_kwargs["sqlalchemy_dsn"]
        self._engine: AsyncEngine | None = None

    @contextlib.asynccontextmanager
    async def client_context(self) -> AsyncIterator[None]:
        self._engine = create_async_engine(self._dsn, pool_recycle=3600)
        try:
            yield
        finally:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        pass

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError(f"{self.__class__.__name__} was used before entering its client context")
        return self._engine

    async def ping(self):
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def create_index_template(self) -> None:
        """Nothing to create: the table is DIRAC's (made by the JobStateUpdate and JobMonitoring services)."""

    async def upsert(self, vo, doc_id, document) -> None:
        await self.bulk_upsert([(vo, doc_id, document)])

    async def bulk_upsert(self, documents: Iterable[tuple[str, int, dict[str, Any]]]) -> tuple[int, list[Any]]:
        """One statement per document (a bad document does not stop the others); errors as OpenSearch reports them."""
        success, errors = 0, []
        statement = text(f"INSERT INTO {TABLE} (JobID, VO, Name, Value) VALUES (:job_id, :vo, :name, :value) "
                         "ON DUPLICATE KEY UPDATE Value = VALUES(Value), VO = VALUES(VO)")
        for vo, doc_id, document in documents:
            rows = [{"job_id": int(doc_id), "vo": vo or "", "name": str(name), "value": str(value)}
                    for name, value in document.items() if name not in _METADATA_FIELDS]
            if not rows:
                success += 1
                continue
            try:
                async with self.engine.begin() as connection:
                    await connection.execute(statement, rows)
                success += 1
            except Exception as error:  # reported per document, as async_bulk does
                errors.append({"update": {"_id": doc_id, "_index": TABLE,
                                          "error": {"type": type(error).__name__, "reason": str(error)}}})
        return success, errors

    async def search(self, parameters, search, sorts, *, per_page: int = 100, page: int | None = None):
        """Documents ({"JobID": id, name: value ...}) of the jobs named by a ``JobID`` ``eq``/``in`` condition."""
        job_ids: list[int] = []
        for condition in search or []:
            if condition.get("parameter") != "JobID" or condition.get("operator") not in ("eq", "in"):
                raise InvalidQueryError(f"SQLJobParametersDB searches by JobID (eq, in) only, not {condition}")
            job_ids += [int(v) for v in condition.get("values", [condition.get("value")]) if v is not None]
        if sorts:
            raise InvalidQueryError("SQLJobParametersDB does not sort")
        if not job_ids:
            return []
        names = [name for name in parameters or [] if name not in _METADATA_FIELDS]
        query = f"SELECT JobID, Name, Value FROM {TABLE} WHERE JobID IN :job_ids"
        arguments: dict[str, Any] = {"job_ids": tuple(job_ids)}
        if names:
            query += " AND Name IN :names"
            arguments["names"] = tuple(names)
        from sqlalchemy import bindparam

        statement = text(query).bindparams(bindparam("job_ids", expanding=True))
        if names:
            statement = statement.bindparams(bindparam("names", expanding=True))
        documents: dict[int, dict[str, Any]] = {}
        async with self.engine.connect() as connection:
            for job_id, name, value in await connection.execute(statement, arguments):
                documents.setdefault(int(job_id), {"JobID": int(job_id)})[name] = value
        ordered = [documents[job_id] for job_id in sorted(documents)]
        if page is not None:
            ordered = ordered[(page - 1) * per_page:page * per_page]
        return ordered
