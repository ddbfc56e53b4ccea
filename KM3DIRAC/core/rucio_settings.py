"""rucio-clients settings from KM3DIRAC's catalog options (the CS section ``/Resources/FileCatalogs/RucioFileCatalog``).

Plain functions over the options dict, shared by the catalog adapter and the job wrappers through
:mod:`KM3DIRAC.Resources.Catalog.RucioSettings` (which reads the CS).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from KM3DIRAC.core.catalog import MetadataSchema
from KM3DIRAC.core.errors import ConfigurationError
from KM3DIRAC.core.lfn import DID

CATALOG_SECTION = "/Resources/FileCatalogs/RucioFileCatalog"
AUTH_TYPES = ("userpass", "x509_proxy", "x509", "oidc")


def client_settings(options: dict[str, Any], default_proxy: Callable[[], str | None] = lambda: None) -> dict[str, Any]:
    """rucio ``Client`` keyword arguments from the catalog options; unset ones fall back to rucio.cfg in rucio itself.

    ``default_proxy`` gives the proxy file when neither ``ProxyPath`` nor ``X509_USER_PROXY`` names one."""
    settings: dict[str, Any] = {}
    for option, argument in (("RucioHost", "rucio_host"), ("AuthHost", "auth_host"), ("Account", "account"),
                             ("CACertificate", "ca_cert"), ("RucioVO", "vo")):
        if options.get(option):
            settings[argument] = options[option]
    auth_type = options.get("AuthType")
    if auth_type:
        if auth_type not in AUTH_TYPES:
            raise ConfigurationError(f"{CATALOG_SECTION}/AuthType = {auth_type}: use one of {', '.join(AUTH_TYPES)}")
        settings["auth_type"] = auth_type
    if auth_type == "userpass":
        missing = [o for o in ("Username", "Password") if not options.get(o)]
        if missing:
            raise ConfigurationError(f"AuthType userpass needs {' and '.join(missing)} in {CATALOG_SECTION}")
        settings["creds"] = {"username": options["Username"], "password": options["Password"]}
    elif auth_type in ("x509_proxy", "x509"):
        proxy = options.get("ProxyPath") or os.environ.get("X509_USER_PROXY") or default_proxy()
        if not proxy:
            raise ConfigurationError("AuthType x509_proxy: no proxy found (X509_USER_PROXY or dirac-proxy-init)")
        settings["auth_type"] = "x509_proxy"
        settings["creds"] = {"client_proxy": proxy}
    return settings


def metadata_schema(options: dict[str, Any]) -> MetadataSchema:
    """KM3DIRAC's metadata fields plus the ``FileMetaFields`` / ``DirectoryMetaFields`` options (``name:TYPE``)."""
    schema = MetadataSchema()
    for option, target in (("FileMetaFields", schema.file_fields), ("DirectoryMetaFields", schema.directory_fields)):
        value = options.get(option)
        entries = value if isinstance(value, list) else [e for e in str(value or "").split(",") if e.strip()]
        for entry in entries:
            name, _, field_type = entry.strip().partition(":")
            target[name.strip()] = (field_type or "VARCHAR(128)").strip()
    return schema


def fields_did(options: dict[str, Any]) -> DID | None:
    """``MetadataFieldsDID = scope:name``: where addMetadataField declares fields (default: see ConfigTemplate)."""
    value = str(options.get("MetadataFieldsDID") or "").strip()
    if not value:
        return None
    scope, _, name = value.partition(":")
    if not scope or not name:
        raise ConfigurationError(f"{CATALOG_SECTION}/MetadataFieldsDID = {value}: use <scope>:<name>")
    return DID(scope, name)
