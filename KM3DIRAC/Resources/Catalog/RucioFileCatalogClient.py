"""KM3DIRAC's Rucio file catalog: the DIRAC adapter over :class:`KM3DIRAC.core.catalog.RucioCatalog`.

It shadows DIRAC's own ``Resources.Catalog.RucioFileCatalogClient`` (same module path, found first by
ObjectLoader), so ``CatalogType = RucioFileCatalog`` and DIRAC's Rucio agents keep recognising it. Configured from
the CS section ``/Resources/FileCatalogs/RucioFileCatalog`` (options documented in ConfigTemplate.cfg); a
rucio.cfg, when present, fills what the CS leaves out. This module only translates: arguments in, ``S_OK``/
``S_ERROR`` out; the logic is in ``KM3DIRAC.core``.
"""

from __future__ import annotations

import errno
import functools
from typing import Any

from DIRAC import S_ERROR, S_OK, gLogger
from DIRAC.Resources.Catalog.FileCatalogClientBase import FileCatalogClientBase

from KM3DIRAC import VO
from KM3DIRAC.core.access import account_rights, write_refusals
from KM3DIRAC.core.catalog import Bulk, RucioCatalog
from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.lfn import LFNMapper
from KM3DIRAC.core.rucio_settings import identity_mode, is_yes, name_map
from KM3DIRAC.Resources.Catalog.RucioSettings import (
    call_policy,
    client_settings,
    fields_did,
    metadata_schema,
    rucio_client,
    settings_for_call,
)

log = gLogger.getSubLogger("RucioFileCatalog")

def _lfn_keys(argument: Any) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """DIRAC's argument forms (str, list, set, dict) -> ({lfn: value}, {lfn: original key where it differs},
    {bad: reason}).

    Unlike DIRAC's ``checkArgumentFormat`` this does not ``normpath`` the LFN: ``..`` or ``//`` in an LFN is an
    error to report, not something to silently rewrite into another file's name.
    """
    if isinstance(argument, str):
        items = {argument: True}
    elif isinstance(argument, (list, tuple, set)):
        items = dict.fromkeys(argument, True)
    elif isinstance(argument, dict):
        items = argument
    else:
        return {}, {}, {str(argument): f"unsupported argument type {type(argument).__name__}"}
    if all(type(key) is str and key[:1] == "/" for key in items):  # the usual form (a million LFNs): as given
        return (dict(items) if items is argument else items), {}, {}  # the caller's dict is never handed on
    lfns, original, bad = {}, {}, {}
    for key, value in items.items():
        if not isinstance(key, str) or not key:
            bad[str(key)] = f"{key!r}: an LFN must be a non-empty string"
            continue
        lfn = key[4:] if key.lower().startswith("lfn:") else key
        lfns[lfn] = value
        if lfn != key:
            original[lfn] = key
    return lfns, original, bad


def lfn_method(function):
    """Normalise the LFN argument, call the core, return ``S_OK({"Successful", "Failed"})`` keyed as given."""

    @functools.wraps(function)
    def method(self, lfns, *args, **kwargs):
        kwargs.pop("LFNChecking", None)
        kwargs.pop("timeout", None)
        normalised, original, bad = _lfn_keys(lfns)
        if not normalised and not bad:
            return S_ERROR(f"{function.__name__}: empty input")
        try:
            result: Bulk = function(self, normalised, *args, **kwargs) if normalised else Bulk()
        except KM3DiracError as error:
            return S_ERROR(f"{function.__name__}: {error}")
        except Exception as error:  # the whole call failed (server down, authentication): DIRAC expects S_ERROR
            log.exception(f"{function.__name__} failed")
            return S_ERROR(f"{function.__name__}: {type(error).__name__}: {error}")
        if not original:  # every LFN as given (the usual form): the core's answer as it is
            return S_OK({"Successful": result.successful, "Failed": {**bad, **result.failed}})
        return S_OK({
            "Successful": {original.get(lfn, lfn): value for lfn, value in result.successful.items()},
            "Failed": {**bad, **{original.get(lfn, lfn): reason for lfn, reason in result.failed.items()}},
        })

    return method


def plain_method(function):
    """Call the core and wrap its value in ``S_OK``, exceptions in ``S_ERROR`` (for NO_LFN methods)."""

    @functools.wraps(function)
    def method(self, *args, **kwargs):
        kwargs.pop("timeout", None)
        try:
            return S_OK(function(self, *args, **kwargs))
        except KM3DiracError as error:
            return S_ERROR(f"{function.__name__}: {error}")
        except Exception as error:
            log.exception(f"{function.__name__} failed")
            return S_ERROR(f"{function.__name__}: {type(error).__name__}: {error}")

    return method


# DFC methods Rucio cannot carry: each answers this S_ERROR (never an RPC to a DFC service that does not exist).
NOT_CARRIED = {
    **dict.fromkeys(("changePathOwner", "changePathGroup", "changePathMode"),
                    "Rucio has no POSIX owner, group or mode per path: a DID belongs to the Rucio account that "
                    "created it and access follows Rucio account and scope permissions"),
    **dict.fromkeys(("createLink", "removeLink"), "Rucio has no links between names"),
    **dict.fromkeys(("addUser", "deleteUser", "addGroup", "deleteGroup", "getUsers", "getGroups"),
                    "users and groups are Rucio accounts, managed by a Rucio administrator (`rucio account ...`)"),
    "setReplicaHost": "a Rucio replica cannot move to another RSE: addReplica at the new SE, then removeReplica",
    "setDirectoryStatus": "Rucio collections have no status; close a run dataset with freezeDataset",
    **dict.fromkeys(("repairCatalog", "rebuildDirectoryUsage", "getCatalogCounters"),
                    "Rucio keeps its own counters and usage (its abacus daemons; `rucio rse usage`)"),
    **dict.fromkeys(("addDataset", "updateDataset", "checkDataset", "addDatasetAnnotation", "getDatasetAnnotation"),
                    "DFC metadata-query datasets are not carried: a KM3DIRAC dataset is a Rucio dataset, the "
                    "directory holding a run's files (createDataset, freezeDataset, getDatasetFiles, "
                    "resolveDataset)"),
    **dict.fromkeys(("addMetadataSet", "getMetadataSet"),
                    "DFC metadata sets (a metadata query stored under a name) are not carried: pass the query "
                    "itself to findFilesByMetadata, or keep it in a train file (dirac-km3-train)"),
}
CONTRACT_READ_METHODS = ["getFileDetails", "getLFNForGUID", "getLFNForPFN", "getFileAncestors", "getFileDescendents",
                         "getSEDump", "checkDataset", "getDatasets", "getDatasetParameters", "getDatasetAnnotation",
                         "getMetadataSet"]
CONTRACT_WRITE_METHODS = ["addFileAncestors", "setFileStatus", "setReplicaStatus", "setReplicaProblematic",
                          "setReplicaHost", "setDirectoryStatus", "createLink", "removeLink", "changePathMode",
                          "changePathOwner", "changePathGroup", "addDataset", "updateDataset", "addDatasetAnnotation",
                          "addUser", "deleteUser", "addGroup", "deleteGroup", "repairCatalog",
                          "rebuildDirectoryUsage", "addMetadataSet"]
CONTRACT_NO_LFN_METHODS = ["getLFNForGUID", "addMetadataSet", "getMetadataSet", "addUser", "deleteUser", "addGroup",
                           "deleteGroup", "repairCatalog", "rebuildDirectoryUsage"]
CONTRACT_ADMIN_METHODS = ["addUser", "deleteUser", "addGroup", "deleteGroup", "getUsers", "getGroups",
                          "getCatalogCounters", "repairCatalog", "rebuildDirectoryUsage"]


def not_carried(name: str, reason: str):
    """A method answering that Rucio cannot carry it: an S_ERROR; for read methods taking LFNs each LFN is a Failed
    entry instead, because DIRAC's FileCatalog replaces a read method's S_ERROR by "Failed to perform ... from any
    catalog" and the reason would be lost."""
    message = f"{name}: not supported by KM3DIRAC's Rucio catalog: {reason}"

    def method(self, *args, **kwargs):
        if name in CONTRACT_READ_METHODS and name not in CONTRACT_NO_LFN_METHODS and args:
            keys, _, bad = _lfn_keys(args[0])
            return S_OK({"Successful": {}, "Failed": {**dict.fromkeys(keys, message), **bad}})
        return S_ERROR(errno.EOPNOTSUPP, message)

    method.__name__ = name
    method.__doc__ = f"Not carried by Rucio: {reason}."
    return method


class RucioFileCatalogClient(FileCatalogClientBase):
    # DFC conventions: the metadata methods are NO_LFN methods (called with their arguments as they are).
    READ_METHODS = [*FileCatalogClientBase.READ_METHODS, "isFile", "isDirectory", "getFileMetadata", "getFileSize",
                    "getReplicas", "getReplicaStatus", "listDirectory", "getDirectorySize", "getMetadataFields",
                    "getDirectoryMetadata", "getDirectoryReplicas", "getDirectoryContents", "getDirectoryDump",
                    "findFilesByMetadata", "getCompatibleMetadata", "findFilesByMetadataWeb",
                    "getFileUserMetadata", "getDirectoryUserMetadata", "resolveDataset", "getDatasetFiles",
                    "findFilesByMetadataDetailed", "findDirectoriesByMetadata", "getReplicasByMetadata",
                    *CONTRACT_READ_METHODS]
    WRITE_METHODS = [*FileCatalogClientBase.WRITE_METHODS, "addFile", "addReplica", "removeReplica", "removeFile",
                     "createDirectory", "removeDirectory", "setMetadata", "setMetadataBulk", "removeMetadata",
                     "createDataset", "removeDataset", "freezeDataset", "releaseDataset", "addMetadataField",
                     "deleteMetadataField", *CONTRACT_WRITE_METHODS]
    NO_LFN_METHODS = [*FileCatalogClientBase.NO_LFN_METHODS, "getMetadataFields", "findFilesByMetadata",
                      "getCompatibleMetadata", "findFilesByMetadataWeb", "setMetadata", "setMetadataBulk",
                      "removeMetadata", "getFileUserMetadata", "getDirectoryUserMetadata",
                      "findFilesByMetadataDetailed", "findDirectoriesByMetadata", "getReplicasByMetadata",
                      "addMetadataField", "deleteMetadataField", *CONTRACT_NO_LFN_METHODS]
    ADMIN_METHODS = [*FileCatalogClientBase.ADMIN_METHODS, *CONTRACT_ADMIN_METHODS]

    def __init__(self, url=None, **options):
        super().__init__(url=url)
        self.options = options
        self.vo = options.get("VO") or VO
        self._catalogs: dict[int, RucioCatalog] = {}
        # configuration errors surface at construction
        self._identity = identity_mode(options)
        self._policy = call_policy(options)
        self._settings = client_settings(options) if self._identity == "service" else {}
        if self._identity != "service":
            name_map(options, "GroupAccounts"), name_map(options, "UserAccounts")
        self.replica_urls = self._replica_urls_wanted(options)

    def _replica_urls_wanted(self, options) -> bool:
        """Option ``ReplicaURLs`` (yes/no); unset: DIRAC's ``DataManagement/UseCatalogPFN`` (DataManager uses the
        catalog's URLs only when it is true, DIRAC's default)."""
        value = options.get("ReplicaURLs")
        if value in (None, ""):
            from DIRAC.ConfigurationSystem.Client.Helpers.Operations import Operations

            value = Operations(vo=self.vo).getValue("DataManagement/UseCatalogPFN", True)
        return is_yes(value)

    @property
    def catalog(self) -> RucioCatalog:
        """The catalog core for this call: the service account's client, or (``Identity = caller``) the client of
        the Rucio account of the proxy in use now (an agent may switch proxies between calls)."""
        if self._identity == "service":
            client = rucio_client(self._settings, policy=self._policy)
        else:
            settings, caller = settings_for_call(self.options)
            client = rucio_client(settings, caller, self._policy)
        catalog = self._catalogs.get(id(client))
        if catalog is None or catalog.client is not client:
            if len(self._catalogs) > 8:
                self._catalogs.clear()
            catalog = RucioCatalog(client, LFNMapper(self.vo), schema=metadata_schema(self.options),
                                   fields_did=fields_did(self.options))
            self._catalogs[id(client)] = catalog
        return catalog

    def hasAccess(self, paths, opType, **kwargs):
        """DIRAC's ``hasAccess``. Read operations: allowed (Rucio checks its permissions itself). Writing operations:
        what the server would refuse is a Failed entry naming the problem and the remedy (LFN form, DID name
        schema, missing scope, closed dataset: ``RucioCatalog.write_access``), and so is a write outside the scopes
        the Rucio account in use owns (unless it is an admin): Rucio's permission policy refuses the same writes on
        the server in any case. DataManager asks this before it puts bytes on storage, so a refusal here keeps
        another user's files intact. Refusals are logged as warnings too: DataManager answers only "Write access
        not permitted" and DIRAC's FileCatalog drops a read method's S_ERROR message."""
        if opType not in self.WRITE_METHODS and opType not in ("putAndRegister", "replicateAndRegister"):
            return super().hasAccess(paths, opType)
        result = lfn_method(lambda self, items: self._write_access(items, opType))(self, paths)
        if result["OK"]:
            for reason in result["Value"]["Failed"].values():
                log.warn(f"{opType} refused", str(reason))
        else:  # DIRAC's FileCatalog replaces this message by "Failed to perform hasAccess from any catalog"
            log.error("hasAccess failed", result["Message"])
        return result

    def _write_access(self, lfns, operation) -> Bulk:
        catalog = self.catalog
        result = catalog.write_access(lfns, operation)
        allowed = {lfn: catalog.mapper.to_did(lfn) for lfn in result.successful}
        refused = write_refusals(account_rights(catalog.client), allowed, operation) if allowed else {}
        for lfn, reason in refused.items():
            del result.successful[lfn]
            result.failed[lfn] = reason
        return result

    def isOK(self, timeout=120):
        try:
            self.catalog.client.whoami()
        except Exception as error:
            return S_ERROR(f"Rucio at {self._settings.get('rucio_host', 'rucio.cfg host')} unusable: {error}")
        return S_OK(True)

    # ------------------------------------------------------------------------------------------- reads
    @lfn_method
    def exists(self, lfns):
        return self.catalog.exists(lfns)

    @lfn_method
    def isFile(self, lfns):
        return self.catalog.is_file(lfns)

    @lfn_method
    def isDirectory(self, lfns):
        return self.catalog.is_directory(lfns)

    @lfn_method
    def getFileMetadata(self, lfns, ownership=False):
        return self.catalog.file_metadata(lfns)

    @lfn_method
    def getFileSize(self, lfns):
        return self.catalog.file_size(lfns)

    @lfn_method
    def getReplicas(self, lfns, allStatus=False, getUrl=None):
        """``{lfn: {SE: URL}}``; without URLs (``getUrl=False``, or by default when no DIRAC client uses catalog
        URLs: option ``ReplicaURLs``) ``{lfn: {SE: True}}``, proven per run dataset: fast for millions of files."""
        urls = self.replica_urls if getUrl is None else bool(getUrl)
        return self.catalog.replicas(lfns, all_status=allStatus, urls=urls)

    @lfn_method
    def getReplicaStatus(self, lfns):
        return self.catalog.replica_status(lfns)

    @lfn_method
    def listDirectory(self, lfns, verbose=False):
        return self.catalog.list_directory(lfns, verbose=verbose)

    @lfn_method
    def getDirectorySize(self, lfns, longOutput=False, rawFiles=False):
        return self.catalog.directory_size(lfns)

    @lfn_method
    def getDirectoryMetadata(self, lfns):
        return self.catalog.directory_metadata(lfns)

    @lfn_method
    def getDirectoryReplicas(self, lfns, allStatus=False):
        return self.catalog.directory_replicas(lfns, all_status=allStatus)

    @lfn_method
    def getDirectoryContents(self, lfns, verbose=False):
        return self.catalog.list_directory(lfns, verbose=verbose)

    @lfn_method
    def getDirectoryDump(self, lfns):
        return self.catalog.directory_dump(lfns)

    # ------------------------------------------------------------------------------------------- writes
    @lfn_method
    def addFile(self, lfns):
        return self.catalog.add_files(lfns)

    @lfn_method
    def addReplica(self, lfns):
        return self.catalog.add_replicas(lfns)

    @lfn_method
    def removeReplica(self, lfns):
        return self.catalog.remove_replicas(lfns)

    @lfn_method
    def removeFile(self, lfns):
        return self.catalog.remove_files(lfns)

    @lfn_method
    def createDirectory(self, lfns):
        return self.catalog.create_directory(lfns)

    @lfn_method
    def removeDirectory(self, lfns, recursive=False):
        return self.catalog.remove_directory(lfns)

    # ------------------------------------------------------------------------------------------- datasets
    # A directory holding files is a Rucio DATASET: the dataset methods act on those directories.
    @lfn_method
    def createDataset(self, lfns):
        return self.catalog.create_directory(lfns)

    @lfn_method
    def removeDataset(self, lfns):
        return self.catalog.remove_directory(lfns)

    @lfn_method
    def resolveDataset(self, lfns):
        return self.catalog.dataset_files(lfns)

    @lfn_method
    def getDatasetFiles(self, lfns):
        return self.catalog.dataset_files(lfns)

    @lfn_method
    def freezeDataset(self, lfns):
        """Close the Rucio dataset: no more files can be attached (KM3DIRAC's 'run complete' signal)."""
        return self.catalog.set_dataset_open(lfns, is_open=False)

    @lfn_method
    def releaseDataset(self, lfns):
        """Reopen a closed dataset (Rucio allows it to admin accounts only)."""
        return self.catalog.set_dataset_open(lfns, is_open=True)

    # ------------------------------------------------------------------------------------------- metadata
    @plain_method
    def getMetadataFields(self):
        return self.catalog.metadata_fields()

    def getFileUserMetadata(self, path, **kwargs):
        return self._single(path, self.catalog.user_metadata({path: True}, want_directory=False))

    def getDirectoryUserMetadata(self, path, **kwargs):
        return self._single(path, self.catalog.user_metadata({path: True}, want_directory=True))

    def setMetadata(self, path, metadataDict, **kwargs):
        result = self._single(path, self.catalog.set_metadata({path: metadataDict}))
        return S_OK() if result["OK"] else result

    @lfn_method
    def setMetadataBulk(self, pathMetadataDict):
        return self.catalog.set_metadata(pathMetadataDict)

    def removeMetadata(self, pathMetadataDict, *args):
        """``removeMetadata({path: [keys]})`` (DFC) or ``removeMetadata(path, [keys])``."""
        if isinstance(pathMetadataDict, str):
            pathMetadataDict = {pathMetadataDict: args[0] if args else []}
        return lfn_method(lambda self, lfns: self.catalog.remove_metadata(lfns))(self, pathMetadataDict)

    @plain_method
    def findFilesByMetadata(self, metaDict, path="/"):
        return self.catalog.find_files(metaDict, path)

    @plain_method
    def getCompatibleMetadata(self, metaDict, path="/"):
        return self.catalog.compatible_metadata(metaDict, path)

    @plain_method
    def findFilesByMetadataWeb(self, metaDict, path, startItem, maxItems):
        return self.catalog.find_files_web(metaDict, path, int(startItem), int(maxItems))

    @plain_method
    def findFilesByMetadataDetailed(self, metaDict, path="/"):
        return self.catalog.find_files_detailed(metaDict, path)

    @plain_method
    def findDirectoriesByMetadata(self, metaDict, path="/"):
        return self.catalog.find_directories(metaDict, path)

    @plain_method
    def getReplicasByMetadata(self, metaDict, path="/", allStatus=False):
        result = self.catalog.replicas_by_metadata(metaDict, path, all_status=allStatus)
        return {"Successful": result.successful, "Failed": result.failed}

    @plain_method
    def addMetadataField(self, fieldName, fieldType, metaType="-d"):
        return self.catalog.add_metadata_field(fieldName, fieldType, metaType)

    @plain_method
    def deleteMetadataField(self, fieldName):
        return self.catalog.delete_metadata_field(fieldName)

    @staticmethod
    def _single(path: str, result: Bulk):
        if path in result.failed:
            return S_ERROR(result.failed[path])
        return S_OK(result.successful[path])

    # ------------------------------------------------------------------------------------------- provenance
    @lfn_method
    def getFileAncestors(self, lfns, depths=1):
        """``{lfn: {ancestor: depth}}`` at the given depths (int or list; empty: all), from Rucio's ``Parents``."""
        return self.catalog.file_ancestors(lfns, depths)

    @lfn_method
    def getFileDescendents(self, lfns, depths=1):
        return self.catalog.file_descendants(lfns, depths)

    @lfn_method
    def addFileAncestors(self, lfns):
        """``{lfn: {"Ancestors": [lfns]}}``: added to the file's ``Parents`` in Rucio."""
        return self.catalog.add_file_ancestors(lfns)

    # ------------------------------------------------------------------------------------------- look-ups
    @lfn_method
    def getFileDetails(self, lfns):
        return self.catalog.file_details(lfns)

    def getLFNForGUID(self, guids, **kwargs):
        """``{guid: lfn}``; a GUID no file carries is a Failed entry."""
        guids = [guids] if isinstance(guids, str) else list(guids or [])
        return lfn_method(lambda self, items: self.catalog.lfns_for_guids(items))(self, guids)

    @lfn_method
    def getLFNForPFN(self, pfns):
        return self.catalog.lfns_for_pfns(pfns)

    @plain_method
    def getSEDump(self, seNames, outputFilename=None):
        """``[(SE, lfn, adler32, size)]`` of the replicas pinned at the SEs; with ``outputFilename`` also written
        there as ``SE|lfn|checksum|size`` lines (the DFC's format)."""
        rows = self.catalog.se_dump([seNames] if isinstance(seNames, str) else list(seNames))
        if outputFilename:
            with open(outputFilename, "w") as output:
                output.writelines(f"{se}|{lfn}|{checksum}|{size}\n" for se, lfn, checksum, size in rows)
        return rows

    @lfn_method
    def getDatasetParameters(self, lfns):
        """Rucio datasets (directories holding files): size, files, ``Frozen``/``Dynamic``, dates."""
        return self.catalog.dataset_parameters(lfns)

    @lfn_method
    def getDatasets(self, lfns):
        return self.catalog.dataset_parameters(lfns)

    # ------------------------------------------------------------------------------------------- status
    @lfn_method
    def setReplicaStatus(self, lfns):
        """``{lfn: {"SE", "Status"}}`` onto Rucio replica states (KM3DIRAC.core.catalog_replica_status)."""
        return self.catalog.set_replica_status(lfns)

    @lfn_method
    def setFileStatus(self, lfns):
        """``{lfn: status}``: the status of every replica of the file."""
        return self.catalog.set_file_status(lfns)

    def setReplicaProblematic(self, lfns, revert=False, **kwargs):
        """``{lfn: {se: pfn}}`` -> Trash (AprioriGood with ``revert``); ``{lfn: [SEs]}`` / ``Failed {lfn: {se: msg}}``
        as DIRAC's DFC client returns it."""
        normalised, original, bad = _lfn_keys(lfns)
        status = "AprioriGood" if revert else "Trash"
        pairs = {lfn: ([ses] if isinstance(ses, str) else list(ses or [])) for lfn, ses in normalised.items()}
        successful: dict[str, list] = {}
        failed: dict[str, Any] = {key: {"": reason} for key, reason in bad.items()}
        for index in range(max((len(ses) for ses in pairs.values()), default=0)):
            batch = {lfn: {"SE": ses[index], "Status": status} for lfn, ses in pairs.items() if index < len(ses)}
            result = self.setReplicaStatus(batch)
            if not result["OK"]:
                for lfn, info in batch.items():
                    failed.setdefault(original.get(lfn, lfn), {})[info["SE"]] = result["Message"]
                continue
            for lfn in result["Value"]["Successful"]:
                successful.setdefault(original.get(lfn, lfn), []).append(batch[lfn]["SE"])
            for lfn, reason in result["Value"]["Failed"].items():
                failed.setdefault(original.get(lfn, lfn), {})[batch[lfn]["SE"]] = reason
        return S_OK({"Successful": successful, "Failed": failed})


for _name, _reason in NOT_CARRIED.items():
    setattr(RucioFileCatalogClient, _name, not_carried(_name, _reason))
