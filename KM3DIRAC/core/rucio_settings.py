"""rucio-clients settings from KM3DIRAC's catalog options (the CS section ``/Resources/FileCatalogs/RucioFileCatalog``).

Plain functions over the options dict, shared by the catalog adapter and the job wrappers through
:mod:`KM3DIRAC.Resources.Catalog.RucioSettings` (which reads the CS).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from KM3DIRAC.core.catalog import MetadataSchema
from KM3DIRAC.core.errors import ConfigurationError
from KM3DIRAC.core.lfn import DID

CATALOG_SECTION = "/Resources/FileCatalogs/RucioFileCatalog"
AUTH_TYPES = ("userpass", "x509_proxy", "x509", "oidc")
#: ``Identity`` option: ``service`` (every call as the configured ``Account``) or ``caller`` (as the Rucio account
#: of the DIRAC identity whose proxy is in use)
IDENTITIES = ("service", "caller")


def is_yes(value: Any) -> bool:
    """A yes/no option's value (CS or command line) as DIRAC writes them: yes, true, 1, y (any case) are yes."""
    return str(value).strip().lower() in ("yes", "true", "1", "y")


@dataclass(frozen=True)
class Caller:
    """The DIRAC identity whose credentials a call uses: the proxy's user, group and certificate DN."""

    user: str
    group: str
    dn: str
    proxy: str


def identity_mode(options: dict[str, Any]) -> str:
    mode = str(options.get("Identity") or "service").strip().lower()
    if mode not in IDENTITIES:
        raise ConfigurationError(f"{CATALOG_SECTION}/Identity = {mode}: use one of {', '.join(IDENTITIES)}")
    return mode


def name_map(options: dict[str, Any], option: str) -> dict[str, str]:
    """A ``name:account, name:account`` option (``GroupAccounts``, ``UserAccounts``) as a dict."""
    value = options.get(option)
    entries = value if isinstance(value, list) else str(value or "").split(",")
    mapping = {}
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        name, separator, account = entry.partition(":")
        if not separator or not name.strip() or not account.strip():
            raise ConfigurationError(f"{CATALOG_SECTION}/{option}: {entry!r} is not <DIRAC name>:<Rucio account>")
        mapping[name.strip()] = account.strip()
    return mapping


def account_for(options: dict[str, Any], caller: Caller) -> str:
    """The Rucio account a DIRAC identity acts as: its group's (``GroupAccounts``, e.g. the production group ->
    the production account), else its user's (``UserAccounts``), else the DIRAC user name itself."""
    return (name_map(options, "GroupAccounts").get(caller.group)
            or name_map(options, "UserAccounts").get(caller.user) or caller.user)


def read_userpass_credentials(pattern: str, account: str) -> dict[str, str]:
    """``{"username", "password"}`` of ``account`` from the file ``pattern`` names (``{account}`` replaced): a JSON
    object, either the credentials themselves or ``{account: credentials}``; readable by its owner only."""
    path = Path(pattern.replace("{account}", account))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigurationError(f"no Rucio credentials for account {account}: {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(f"{path}: Rucio credentials must be readable by their owner only (chmod 600)")
    try:
        content = json.loads(path.read_text())
    except ValueError:
        raise ConfigurationError(f"{path}: not a JSON object of Rucio credentials") from None
    entry = content.get(account, content) if isinstance(content, dict) else None
    if not isinstance(entry, dict) or not entry.get("username") or not entry.get("password"):
        raise ConfigurationError(f"{path}: no username and password for Rucio account {account}")
    return {"username": str(entry["username"]), "password": str(entry["password"])}


def caller_client_settings(options: dict[str, Any], caller: Caller,
                           read_credentials: Callable[[str, str], dict[str, str]] = read_userpass_credentials
                           ) -> dict[str, Any]:
    """rucio ``Client`` keyword arguments acting as ``caller``'s Rucio account (``Identity = caller``).

    ``x509_proxy``: the caller's own proxy is the credential; Rucio maps its DN to the account (``rucio-admin
    identity add --type X509``) and refuses an account the DN is not mapped to. ``userpass``: the account's
    credentials come from the file ``UserpassCredentials`` names, never from the CS. The service's ``Account``,
    ``Username`` and ``Password`` are never used for a caller."""
    account = account_for(options, caller)
    service_only = ("Account", "Username", "Password", "ProxyPath")
    settings = client_settings({k: v for k, v in options.items() if k not in service_only and k != "AuthType"})
    auth_type = options.get("AuthType") or "x509_proxy"
    if auth_type not in AUTH_TYPES:
        raise ConfigurationError(f"{CATALOG_SECTION}/AuthType = {auth_type}: use one of {', '.join(AUTH_TYPES)}")
    settings["account"] = account
    if auth_type == "userpass":
        pattern = options.get("UserpassCredentials")
        if not pattern:
            raise ConfigurationError(f"Identity = caller with AuthType userpass needs UserpassCredentials in "
                                     f"{CATALOG_SECTION} (a file of each account's credentials)")
        settings["auth_type"] = "userpass"
        settings["creds"] = read_credentials(str(pattern), account)
    elif auth_type in ("x509_proxy", "x509"):
        settings["auth_type"] = "x509_proxy"
        settings["creds"] = {"client_proxy": caller.proxy}
    else:
        settings["auth_type"] = auth_type
    return settings


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
