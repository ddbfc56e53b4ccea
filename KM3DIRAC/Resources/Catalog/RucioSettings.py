"""The CS and rucio-clients set-up shared by KM3DIRAC's catalog adapter and its job wrappers.

One authenticated rucio ``Client`` per configuration and process; the catalog options are read from the CS section
``/Resources/FileCatalogs/RucioFileCatalog`` (documented in ConfigTemplate.cfg). The option parsing itself is
plain Python in :mod:`KM3DIRAC.core.rucio_settings`.
"""

from __future__ import annotations

import threading
from typing import Any

from KM3DIRAC import VO
from KM3DIRAC.core.catalog import RucioCatalog
from KM3DIRAC.core.lfn import LFNMapper
from KM3DIRAC.core.rucio_calls import RucioCallPolicy, build_client
from KM3DIRAC.core.rucio_settings import AUTH_TYPES, CATALOG_SECTION, fields_did, metadata_schema
from KM3DIRAC.core.rucio_settings import client_settings as _core_client_settings

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()

__all__ = ["AUTH_TYPES", "CATALOG_SECTION", "call_policy", "catalog_from_cs", "catalog_from_options", "catalog_options",
           "client_settings", "fields_did", "metadata_schema", "rucio_client"]


def _dirac_proxy_location() -> str | None:
    from DIRAC.Core.Security import Locations

    return Locations.getProxyLocation() or None


def client_settings(options: dict[str, Any]) -> dict[str, Any]:
    """rucio ``Client`` keyword arguments from the catalog options (DIRAC's proxy location as the last resort)."""
    return _core_client_settings(options, default_proxy=_dirac_proxy_location)


def call_policy(options: dict[str, Any]) -> RucioCallPolicy:
    """Time-out and retries of every Rucio call from the CS options Timeout, Attempts, RetryDelay, MaxRetryDelay
    (the one place they are read: the catalog, the job wrappers, agents and commands all get their client here)."""
    return RucioCallPolicy.from_options(options, CATALOG_SECTION)


def rucio_client(settings: dict[str, Any], policy: RucioCallPolicy | None = None):
    """One authenticated rucio Client per configuration, shared by every user of this process; every call bounded
    by ``policy`` (time-out per request, retries with back-off: :mod:`KM3DIRAC.core.rucio_calls`)."""
    policy = policy or RucioCallPolicy()
    key = (*sorted((k, str(v)) for k, v in settings.items()), ("policy", repr(policy)))
    with _clients_lock:
        if key not in _clients:
            _clients[key] = build_client(settings, policy)
        return _clients[key]


def catalog_options() -> dict[str, Any]:
    """The options of the catalog's CS section (empty when the section is absent)."""
    from DIRAC import gConfig

    options = gConfig.getOptionsDict(CATALOG_SECTION)
    return options["Value"] if options["OK"] else {}


def catalog_from_options(options: dict[str, Any]) -> RucioCatalog:
    client = rucio_client(client_settings(options), call_policy(options))
    return RucioCatalog(client, LFNMapper(options.get("VO") or VO), schema=metadata_schema(options),
                        fields_did=fields_did(options))


def catalog_from_cs() -> RucioCatalog:
    """KM3DIRAC's catalog core configured from the CS, for code that runs outside DIRAC's FileCatalog."""
    return catalog_from_options(catalog_options())
