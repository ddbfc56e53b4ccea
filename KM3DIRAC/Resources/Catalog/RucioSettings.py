"""The CS and rucio-clients set-up shared by KM3DIRAC's catalog adapter and its job wrappers.

One authenticated rucio ``Client`` per (account, credential) and process, at most :data:`MAX_CLIENTS` of them; the
catalog options are read from the CS section ``/Resources/FileCatalogs/RucioFileCatalog`` (documented in
ConfigTemplate.cfg). The option parsing itself is plain Python in :mod:`KM3DIRAC.core.rucio_settings`.

With ``Identity = caller`` every call acts as the Rucio account of the DIRAC identity whose proxy is in use (DIRAC's
proxy location: ``X509_USER_PROXY``, then ``/tmp/x509up_u<uid>``): a user's command, a user's job (its proxy), an
agent working for a user (DIRAC's ``executeWithUserProxy`` sets ``X509_USER_PROXY``), a production job (the
production manager's proxy, its group mapped to the production account). A process that runs with the server
certificate (``/DIRAC/Security/UseServerCertificate``) acts as the configured service ``Account``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

from KM3DIRAC import VO
from KM3DIRAC.core.catalog import RucioCatalog
from KM3DIRAC.core.errors import ConfigurationError
from KM3DIRAC.core.lfn import LFNMapper
from KM3DIRAC.core.rucio_calls import RucioCallPolicy, build_client
from KM3DIRAC.core.rucio_settings import (
    AUTH_TYPES,
    CATALOG_SECTION,
    Caller,
    caller_client_settings,
    fields_did,
    identity_mode,
    is_yes,
    metadata_schema,
)
from KM3DIRAC.core.rucio_settings import client_settings as _core_client_settings

#: rucio Clients kept per process (least recently used dropped first): one per (account, credential) in use
MAX_CLIENTS = 32
_clients: OrderedDict[tuple, Any] = OrderedDict()
_clients_lock = threading.Lock()
_callers: dict[tuple, Caller] = {}

__all__ = ["AUTH_TYPES", "CATALOG_SECTION", "MAX_CLIENTS", "Caller", "call_policy", "calling_identity",
           "catalog_from_cs", "catalog_from_options", "catalog_options", "client_settings", "fields_did",
           "metadata_schema", "rucio_client", "settings_for_call"]


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


def _uses_server_certificate() -> bool:
    from DIRAC import gConfig

    return is_yes(gConfig.getValue("/DIRAC/Security/UseServerCertificate", "false"))


def calling_identity() -> Caller | None:
    """The DIRAC identity of the proxy in use (None when the process uses the server certificate).

    Raises :class:`ConfigurationError` when there is no proxy, or its DN is not a registered DIRAC user."""
    if _uses_server_certificate():
        return None
    from DIRAC.Core.Security import Locations

    path = Locations.getProxyLocation()
    if not path:
        raise ConfigurationError("no proxy in use (X509_USER_PROXY or /tmp/x509up_u<uid>): run dirac-proxy-init")
    status = os.stat(path)
    key = (path, status.st_mtime_ns, status.st_size, status.st_ino)
    if key not in _callers:
        from DIRAC.Core.Security.X509Chain import X509Chain

        chain = X509Chain()
        loaded = chain.loadProxyFromFile(path)
        if not loaded["OK"]:
            raise ConfigurationError(f"the proxy {path} cannot be read: {loaded['Message']}")
        credentials = chain.getCredentials()
        if not credentials["OK"]:
            raise ConfigurationError(f"the proxy {path}: {credentials['Message']}")
        info = credentials["Value"]
        user = info.get("username") or _registered_user(info.get("DN") or "")
        if not user:
            raise ConfigurationError(f"the proxy's DN {info.get('DN')} is not a registered DIRAC user")
        if len(_callers) > MAX_CLIENTS:
            _callers.clear()
        _callers[key] = Caller(user=user, group=info.get("group") or "", dn=info.get("DN") or "",
                               proxy=path)
    return _callers[key]


def _registered_user(dn: str) -> str | None:
    """The DIRAC user of ``dn`` asked afresh: DIRAC's Registry caches a lookup made before the CS was loaded (a
    command's start-up) for five minutes, failure included; naming the users list gives another cache key."""
    from DIRAC import gConfig
    from DIRAC.ConfigurationSystem.Client.Helpers import Registry

    users = gConfig.getSections("/Registry/Users")
    if not dn or not users["OK"]:
        return None
    # positional: DIRAC 9.1.22's cache key names the argument userList, the function usersList (a keyword fails)
    found = Registry.getUsernameForDN(dn, users["Value"])
    return found["Value"] if found["OK"] else None


def settings_for_call(options: dict[str, Any]) -> tuple[dict[str, Any], Caller | None]:
    """rucio Client settings for a call now: the service's, or (``Identity = caller``) the calling identity's."""
    if identity_mode(options) == "service":
        return client_settings(options), None
    caller = calling_identity()
    if caller is None:
        return client_settings(options), None
    return caller_client_settings(options, caller), caller


def rucio_client(settings: dict[str, Any], caller: Caller | None = None, policy: RucioCallPolicy | None = None):
    """One authenticated rucio Client per (account, credential, DIRAC identity, call policy), at most
    :data:`MAX_CLIENTS`; every call bounded by ``policy`` (time-out per request, retries with back-off:
    :mod:`KM3DIRAC.core.rucio_calls`)."""
    policy = policy or RucioCallPolicy()
    key = (tuple(sorted((k, str(v)) for k, v in settings.items())), caller, repr(policy))
    with _clients_lock:
        if key in _clients:
            _clients.move_to_end(key)
            return _clients[key]
    client = build_client(settings, policy)
    with _clients_lock:
        _clients[key] = client
        while len(_clients) > MAX_CLIENTS:
            _clients.popitem(last=False)
    return client


def catalog_options() -> dict[str, Any]:
    """The options of the catalog's CS section (empty when the section is absent)."""
    from DIRAC import gConfig

    options = gConfig.getOptionsDict(CATALOG_SECTION)
    return options["Value"] if options["OK"] else {}


def catalog_from_options(options: dict[str, Any]) -> RucioCatalog:
    """KM3DIRAC's catalog core acting as the service account or (``Identity = caller``) as the calling identity."""
    settings, caller = settings_for_call(options)
    client = rucio_client(settings, caller, call_policy(options))
    return RucioCatalog(client, LFNMapper(options.get("VO") or VO), schema=metadata_schema(options),
                        fields_did=fields_did(options))


def catalog_from_cs() -> RucioCatalog:
    """KM3DIRAC's catalog core configured from the CS, for code that runs outside DIRAC's FileCatalog."""
    return catalog_from_options(catalog_options())
