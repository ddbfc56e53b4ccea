"""Job parameters in a MySQL/MariaDB table, with the interface of DIRAC 9.1's OpenSearch JobParametersDB.

DIRAC 9.1 keeps job parameters in OpenSearch only (it dropped JobDB's ``JobParameters`` table). Where no OpenSearch
runs (the local sandbox), this class keeps them in one table of its own database (``JobParametersDB`` in the CS
section ``/Systems/WorkloadManagement/Databases/JobParametersDB``, like every DIRAC MySQL database): one row per job
and parameter, and the job's VO, which confines reads as DIRAC's per-VO OpenSearch indices do.
"""

from __future__ import annotations

from DIRAC import S_ERROR, S_OK
from DIRAC.Core.Base.DB import DB

TABLE = "JobParameters"
TABLES = {
    TABLE: {
        "Fields": {
            "JobID": "INT(11) UNSIGNED NOT NULL",
            "VO": "VARCHAR(64) NOT NULL DEFAULT ''",
            "Name": "VARCHAR(255) NOT NULL",
            "Value": "MEDIUMTEXT NOT NULL",
            "LastUpdate": "DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP",
        },
        "PrimaryKey": ["JobID", "Name"],
        "Indexes": {"VO": ["VO"]},
        "Engine": "InnoDB",
    }
}


def _names(param_list) -> list[str]:
    if isinstance(param_list, str):
        return [name for name in param_list.replace(" ", "").split(",") if name]
    return list(param_list or [])


class SQLJobParametersDB(DB):
    def __init__(self, parentLogger=None):
        super().__init__("JobParametersDB", "WorkloadManagement/JobParametersDB", parentLogger=parentLogger)
        result = self._query("SHOW TABLES")
        if not result["OK"]:
            raise RuntimeError(f"JobParametersDB: could not list its tables: {result['Message']}")
        existing = {row[0] for row in result["Value"]}
        result = self._createTables({name: table for name, table in TABLES.items() if name not in existing})
        if not result["OK"]:
            raise RuntimeError(f"JobParametersDB: could not create table {TABLE}: {result['Message']}")

    def getJobParameters(self, jobIDs, vo: str, paramList=None) -> dict:
        """{JobID: {name: value}} for the jobs of ``vo`` among ``jobIDs`` (all parameters, or those named)."""
        if isinstance(jobIDs, int | str):
            jobIDs = [jobIDs]
        job_ids = [int(job_id) for job_id in jobIDs]
        if not job_ids:
            return S_OK({})
        names = _names(paramList)
        placeholders = ", ".join(["%s"] * len(job_ids))
        query = f"SELECT JobID, Name, Value FROM {TABLE} WHERE VO = %s AND JobID IN ({placeholders})"
        args = [vo, *job_ids]
        if names:
            query += f" AND Name IN ({', '.join(['%s'] * len(names))})"
            args += names
        result = self._query(query, args=args)
        if not result["OK"]:
            return result
        parameters: dict[int, dict[str, str]] = {}
        for job_id, name, value in result["Value"]:
            parameters.setdefault(int(job_id), {})[name] = value
        return S_OK(parameters)

    def setJobParameter(self, jobID: int, key: str, value, vo: str) -> dict:
        return self.setJobParameters(jobID, [(key, value)], vo)

    def setJobParameters(self, jobID: int, parameters: list, vo: str) -> dict:
        """Insert or update the (name, value) pairs of ``parameters`` for ``jobID``, in one statement."""
        if not parameters:
            return S_OK()
        rows = ", ".join(["(%s, %s, %s, %s)"] * len(parameters))
        args = []
        for name, value in parameters:
            args += [int(jobID), vo or "", str(name), str(value)]
        return self._update(f"INSERT INTO {TABLE} (JobID, VO, Name, Value) VALUES {rows} "
                            "ON DUPLICATE KEY UPDATE Value = VALUES(Value), VO = VALUES(VO)", args=args)

    def deleteJobParameters(self, jobID: int, paramList=None, vo: str = "") -> dict:
        names = _names(paramList)
        query, args = f"DELETE FROM {TABLE} WHERE JobID = %s", [int(jobID)]
        if names:
            query += f" AND Name IN ({', '.join(['%s'] * len(names))})"
            args += names
        result = self._update(query, args=args)
        return S_OK() if result["OK"] else S_ERROR(result["Message"])
