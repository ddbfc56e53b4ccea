"""KM3DIRAC's Rucio file catalog: the DIRAC adapter over :class:`KM3DIRAC.core.catalog.RucioCatalog`.

It shadows DIRAC's own ``Resources.Catalog.RucioFileCatalogClient`` (same module path, found first by
ObjectLoader), so ``CatalogType = RucioFileCatalog`` and DIRAC's Rucio agents keep recognising it. Configured from
the CS section ``/Resources/FileCatalogs/RucioFileCatalog`` (options documented in ConfigTemplate.cfg); a
rucio.cfg, when present, fills what the CS leaves out. This module only translates: arguments in, ``S_OK``/
``S_ERROR`` out; the logic is in ``KM3DIRAC.core``.
"""

from __future__ import annotations

import functools
from typing import Any

from DIRAC import S_ERROR, S_OK, gLogger
from DIRAC.Resources.Catalog.FileCatalogClientBase import FileCatalogClientBase

from KM3DIRAC import VO
from KM3DIRAC.core.access import account_rights, write_refusals
from KM3DIRAC.core.catalog import Bulk, RucioCatalog
from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.lfn import LFNMapper
from KM3DIRAC.core.rucio_settings import identity_mode, name_map
from KM3DIRAC.Resources.Catalog.RucioSettings import client_settings, metadata_schema, rucio_client, settings_for_call

log = gLogger.getSubLogger("RucioFileCatalog")

def _lfn_keys(argument: Any) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """DIRAC's argument forms (str, list, set, dict) -> ({lfn: value}, {lfn: original key}, {bad: reason}).

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
    lfns, original, bad = {}, {}, {}
    for key, value in items.items():
        if not isinstance(key, str) or not key:
            bad[str(key)] = f"{key!r}: an LFN must be a non-empty string"
            continue
        lfn = key[4:] if key.lower().startswith("lfn:") else key
        lfns[lfn] = value
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


class RucioFileCatalogClient(FileCatalogClientBase):
    # DFC conventions: the metadata methods are NO_LFN methods (called with their arguments as they are).
    READ_METHODS = [*FileCatalogClientBase.READ_METHODS, "isFile", "isDirectory", "getFileMetadata", "getFileSize",
                    "getReplicas", "getReplicaStatus", "listDirectory", "getDirectorySize", "getMetadataFields",
                    "findFilesByMetadata", "getCompatibleMetadata", "findFilesByMetadataWeb",
                    "getFileUserMetadata", "getDirectoryUserMetadata", "resolveDataset", "getDatasetFiles"]
    WRITE_METHODS = [*FileCatalogClientBase.WRITE_METHODS, "addFile", "addReplica", "removeReplica", "removeFile",
                     "createDirectory", "removeDirectory", "setMetadata", "setMetadataBulk", "removeMetadata",
                     "createDataset", "removeDataset", "freezeDataset", "releaseDataset"]
    NO_LFN_METHODS = [*FileCatalogClientBase.NO_LFN_METHODS, "getMetadataFields", "findFilesByMetadata",
                      "getCompatibleMetadata", "findFilesByMetadataWeb", "setMetadata", "setMetadataBulk",
                      "removeMetadata", "getFileUserMetadata", "getDirectoryUserMetadata"]
    ADMIN_METHODS = list(FileCatalogClientBase.ADMIN_METHODS)

    def __init__(self, url=None, **options):
        super().__init__(url=url)
        self.options = options
        self.vo = options.get("VO") or VO
        self._catalogs: dict[int, RucioCatalog] = {}
        # configuration errors surface at construction
        self._identity = identity_mode(options)
        if self._identity == "service":
            self._settings = client_settings(options)
        else:
            name_map(options, "GroupAccounts"), name_map(options, "UserAccounts")
        self.replica_urls = self._replica_urls_wanted(options)

    def _replica_urls_wanted(self, options) -> bool:
        """Option ``ReplicaURLs`` (yes/no); unset: DIRAC's ``DataManagement/UseCatalogPFN`` (DataManager uses the
        catalog's URLs only when it is true, DIRAC's default)."""
        value = options.get("ReplicaURLs")
        if value in (None, ""):
            from DIRAC.ConfigurationSystem.Client.Helpers.Operations import Operations

            value = Operations(vo=self.vo).getValue("DataManagement/UseCatalogPFN", True)
        return str(value).strip().lower() in ("yes", "true", "1", "y")

    @property
    def catalog(self) -> RucioCatalog:
        """The catalog core for this call: the service account's client, or (``Identity = caller``) the client of
        the Rucio account of the proxy in use now (an agent may switch proxies between calls)."""
        if self._identity == "service":
            client = rucio_client(self._settings)
        else:
            client = rucio_client(*settings_for_call(self.options))
        catalog = self._catalogs.get(id(client))
        if catalog is None or catalog.client is not client:
            if len(self._catalogs) > 8:
                self._catalogs.clear()
            catalog = RucioCatalog(client, LFNMapper(self.vo), schema=metadata_schema(self.options))
            self._catalogs[id(client)] = catalog
        return catalog

    def hasAccess(self, paths, opType, **kwargs):
        """DIRAC's ``hasAccess``: reads are allowed; a writing ``opType`` is allowed only in scopes the Rucio account
        in use owns (or for an admin). DataManager asks this before it puts bytes on storage, so a refusal here keeps
        another user's files intact; Rucio's permission policy refuses the same writes on the server in any case.
        Refusals are logged as warnings too: DataManager reports only "Write access not permitted"."""
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
        result = Bulk()
        catalog = self.catalog
        dids = {}
        for lfn in lfns:
            try:
                dids[lfn] = catalog.mapper.to_did(lfn)
            except KM3DiracError as error:
                result.failed[lfn] = str(error)
        refused = write_refusals(account_rights(catalog.client), dids, operation) if dids else {}
        result.failed.update(refused)
        result.successful.update({lfn: True for lfn in dids if lfn not in refused})
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

    @staticmethod
    def _single(path: str, result: Bulk):
        if path in result.failed:
            return S_ERROR(result.failed[path])
        return S_OK(result.successful[path])
