"""``JobParametersDB`` at DIRAC's ObjectLoader path (``WorkloadManagementSystem.DB.JobParametersDB``): the store of
job parameters that DIRAC's JobStateUpdate and JobMonitoring services, WMSAdministrator and the
RequestExecutingAgent's ``finalizeRequest`` load.

``/Systems/WorkloadManagement/Databases/JobParametersDB/Backend`` chooses it:
- ``OpenSearch`` (the default): DIRAC's own OpenSearch JobParametersDB, unchanged: what production runs;
- ``MySQL``: :class:`KM3DIRAC.WorkloadManagementSystem.DB.SQLJobParametersDB.SQLJobParametersDB`, a table in a
  MySQL/MariaDB database, for installations without OpenSearch (the local sandbox).
"""

from __future__ import annotations

BACKEND_OPTION = "Backend"
BACKENDS = ("OpenSearch", "MySQL")


def configured_backend() -> str:
    from DIRAC import gConfig
    from DIRAC.ConfigurationSystem.Client.PathFinder import getDatabaseSection

    backend = gConfig.getValue(f"{getDatabaseSection('WorkloadManagement/JobParametersDB')}/{BACKEND_OPTION}",
                               "OpenSearch")
    if backend not in BACKENDS:
        raise ValueError(f"JobParametersDB: unknown Backend {backend!r} in the CS: choose one of {', '.join(BACKENDS)}")
    return backend


def JobParametersDB(parentLogger=None):
    """The JobParametersDB of the configured backend, with the methods of DIRAC's (get/set/deleteJobParameters)."""
    if configured_backend() == "MySQL":
        from KM3DIRAC.WorkloadManagementSystem.DB.SQLJobParametersDB import SQLJobParametersDB

        return SQLJobParametersDB(parentLogger=parentLogger)
    from DIRAC.WorkloadManagementSystem.DB.JobParametersDB import JobParametersDB as OpenSearchJobParametersDB

    return OpenSearchJobParametersDB(parentLogger=parentLogger)
