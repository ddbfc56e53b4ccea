"""KM3DIRAC's input-data policy module: a job's InputData downloaded through rucio-clients, from the replicas' own
URLs, whatever path algorithm the RSEs use.

DIRAC's ``DownloadInputData`` asks each StorageElement for ``<base path><LFN>``: right only on RSEs whose
``lfn2pfn_algorithm`` is KM3DIRAC's ``km3dirac``. A Rucio as KM3NeT runs it today keeps Rucio's default ``hash``
algorithm (``<prefix>/<scope>/<md5 a>/<md5 b>/<name>``), or non-deterministic RSEs (a path per replica), and
holds data uploaded by plain ``rucio upload`` under flat names (DID ``CORSIKA_testing:<name>``, LFN
``/km3net/CORSIKA_testing:<name>``, downloaded as ``<name>``). Rucio knows where every replica is; this module asks it
(:func:`KM3DIRAC.core.job_inputs.download_per_lfn`): replicas at the job's site first, adler32 checked, the next
replica tried on a failure or a mismatch, 4 downloads at a time.

Select it in the CS (ConfigTemplate.cfg)::

    Operations/<Defaults|VO>/InputDataPolicy
    {
      Default = KM3DIRAC.WorkloadManagementSystem.Client.RucioInputData
      Download = KM3DIRAC.WorkloadManagementSystem.Client.RucioInputData
    }

It follows DIRAC's contract of input-data modules (``DIRAC.WorkloadManagementSystem.Client.InputDataResolution``
loads it): ``Module(argumentsDict).execute(dataToResolve=None)`` -> ``S_OK({"Successful": {lfn: {"path", "se",
"pfn", "guid", "turl", "protocol"}}, "Failed": [lfns]})``; failed LFNs are left to the next module of the policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from DIRAC import S_ERROR, S_OK, gConfig, gLogger

from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.job_inputs import download_per_lfn
from KM3DIRAC.Resources.Catalog.RucioSettings import catalog_from_cs


class RucioInputData:
    def __init__(self, argumentsDict: dict[str, Any]) -> None:
        self.arguments = argumentsDict
        self.configuration = argumentsDict.get("Configuration", {})
        self.input_data = [lfn.replace("LFN:", "") for lfn in argumentsDict.get("InputData", [])]
        catalog_result = argumentsDict.get("FileCatalog", {})
        catalog_result = catalog_result.get("Value", catalog_result) if isinstance(catalog_result, dict) else {}
        self.catalog_entries: dict[str, dict] = catalog_result.get("Successful", {})
        self.job_id = self.configuration.get("JobID")
        self.log = gLogger.getSubLogger(f"[{self.job_id}]RucioInputData")

    def _destination(self) -> Path:
        """InputDataDirectory: CWD (DIRAC's InputDataResolution default) is the job directory."""
        chosen = self.arguments.get("InputDataDirectory") or gConfig.getValue("/LocalSite/InputDataDirectory", "CWD")
        job_dir = Path(str(self.configuration.get("JobIDPath") or Path.cwd()))
        return job_dir if chosen in ("CWD", "PerFile") else Path(chosen)

    def execute(self, dataToResolve=None):
        lfns = [lfn.replace("LFN:", "") for lfn in (dataToResolve or self.input_data)]
        if not lfns:
            return S_OK({"Successful": {}, "Failed": []})
        close_rses = list(self.configuration.get("LocalSEList") or [])
        try:
            catalog = catalog_from_cs()
            downloaded, failed = download_per_lfn(catalog.client, lfns, self._destination(), catalog.mapper,
                                                  close_rses=close_rses)
        except KM3DiracError as error:
            return S_ERROR(f"RucioInputData: {error}")
        except Exception as error:  # Rucio unreachable, authentication: the whole step failed
            self.log.exception("input data download failed")
            return S_ERROR(f"RucioInputData: {type(error).__name__}: {error}")
        successful = {}
        for lfn, entry in downloaded.items():
            pfn = dict(entry.replicas).get(entry.source_rse, "")
            successful[lfn] = {"path": str(entry.local_path), "se": entry.source_rse, "pfn": pfn,
                               "guid": self.catalog_entries.get(lfn, {}).get("GUID", ""), "turl": "Downloaded",
                               "protocol": "Downloaded"}
            self.log.info("downloaded", f"{lfn} from {entry.source_rse} ({pfn})")
        for reason in failed.values():
            self.log.error("input data not downloaded", reason)
        return S_OK({"Successful": successful, "Failed": sorted(failed)})
