"""KM3DIRAC's Rucio file catalog: the DIRAC adapter over :class:`KM3DIRAC.core.catalog.RucioCatalog`.

It shadows DIRAC's own ``Resources.Catalog.RucioFileCatalogClient`` (same module path, found first by
ObjectLoader), so ``CatalogType = RucioFileCatalog`` and DIRAC's Rucio agents keep recognising it. Configured from
the CS section ``/Resources/FileCatalogs/RucioFileCatalog`` (options documented in ConfigTemplate.cfg); a
rucio.cfg, when present, fills what the CS leaves out. This module only translates: arguments in, ``S_OK``/
``S_ERROR`` out; the logic is in ``KM3DIRAC.core``.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

from DIRAC import S_ERROR, S_OK, gLogger
from DIRAC.Resources.Catalog.FileCatalogClientBase import FileCatalogClientBase

from KM3DIRAC import VO
from KM3DIRAC.core.catalog import Bulk, MetadataSchema, RucioCatalog
from KM3DIRAC.core.errors import ConfigurationError, KM3DiracError
from KM3DIRAC.core.lfn import LFNMapper
from KM3DIRAC.core.rucio_calls import RucioCallPolicy, build_client

log = gLogger.getSubLogger("RucioFileCatalog")

AUTH_TYPES = ("userpass", "x509_proxy", "x509", "oidc")
_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


CATALOG_SECTION = "/Resources/FileCatalogs/RucioFileCatalog"


def _rucio_client(settings: dict[str, Any], policy: RucioCallPolicy | None = None):
    """One authenticated rucio Client per configuration, shared by every catalog object of this process; every
    call bounded by ``policy`` (time-out per request, retries with back-off: KM3DIRAC.core.rucio_calls)."""
    policy = policy or RucioCallPolicy()
    key = (*sorted((k, str(v)) for k, v in settings.items()), ("policy", repr(policy)))
    with _clients_lock:
        if key not in _clients:
            _clients[key] = build_client(settings, policy)
        return _clients[key]


def _call_policy(options: dict[str, Any]) -> RucioCallPolicy:
    """Time-out and retries of every Rucio call from the CS options Timeout, Attempts, RetryDelay, MaxRetryDelay
    (the one place they are read: the catalog, the job wrappers, agents and commands all get their client here)."""
    return RucioCallPolicy.from_options(options, CATALOG_SECTION)


def _client_settings(options: dict[str, Any]) -> dict[str, Any]:
    """rucio Client keyword arguments from the CS options; unset ones fall back to rucio.cfg in rucio itself."""
    settings: dict[str, Any] = {}
    for option, argument in (("RucioHost", "rucio_host"), ("AuthHost", "auth_host"), ("Account", "account"),
                             ("CACertificate", "ca_cert"), ("RucioVO", "vo")):
        if options.get(option):
            settings[argument] = options[option]
    auth_type = options.get("AuthType")
    if auth_type:
        if auth_type not in AUTH_TYPES:
            raise ConfigurationError(f"/Resources/FileCatalogs/RucioFileCatalog/AuthType = {auth_type}: "
                                     f"use one of {', '.join(AUTH_TYPES)}")
        settings["auth_type"] = auth_type
    if auth_type == "userpass":
        missing = [o for o in ("Username", "Password") if not options.get(o)]
        if missing:
            raise ConfigurationError(f"AuthType userpass needs {' and '.join(missing)} in "
                                     "/Resources/FileCatalogs/RucioFileCatalog")
        settings["creds"] = {"username": options["Username"], "password": options["Password"]}
    elif auth_type in ("x509_proxy", "x509"):
        proxy = options.get("ProxyPath") or os.environ.get("X509_USER_PROXY")
        if not proxy:
            from DIRAC.Core.Security import Locations

            proxy = Locations.getProxyLocation()
        if not proxy:
            raise ConfigurationError("AuthType x509_proxy: no proxy found (X509_USER_PROXY or dirac-proxy-init)")
        settings["auth_type"] = "x509_proxy"
        settings["creds"] = {"client_proxy": proxy}
    return settings


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


def _schema(options: dict[str, Any]) -> MetadataSchema:
    schema = MetadataSchema()
    for option, target in (("FileMetaFields", schema.file_fields), ("DirectoryMetaFields", schema.directory_fields)):
        value = options.get(option)
        entries = value if isinstance(value, list) else [e for e in str(value or "").split(",") if e.strip()]
        for entry in entries:
            name, _, field_type = entry.strip().partition(":")
            target[name.strip()] = (field_type or "VARCHAR(128)").strip()
    return schema


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
        self._catalog: RucioCatalog | None = None
        self._settings = _client_settings(options)  # configuration errors surface at construction
        self._policy = _call_policy(options)

    @property
    def catalog(self) -> RucioCatalog:
        if self._catalog is None:
            client = _rucio_client(self._settings, self._policy)
            self._catalog = RucioCatalog(client, LFNMapper(self.vo), schema=_schema(self.options))
        return self._catalog

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
    def getReplicas(self, lfns, allStatus=False):
        return self.catalog.replicas(lfns, all_status=allStatus)

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
