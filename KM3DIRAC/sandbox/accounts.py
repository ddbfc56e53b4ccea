"""Who the sandbox's people are: besides its default user (``km3user``, the Rucio administrator ``root``, as before),
two users and a production manager, each a DIRAC user with a certificate and proxies of their own and a Rucio
account of their own, owning one scope.

- ``alice``, ``bob``: DIRAC users in ``km3net_user``, Rucio accounts ``alice`` and ``bob`` owning their homes' scopes
  ``user.alice`` (``/km3net/user/a/alice``) and ``user.bob`` (``/km3net/user/b/bob``).
- ``km3prodmgr``: the production manager, DIRAC user in ``km3net_prod`` only, Rucio account ``km3prod`` owning the
  production scope ``production`` (``/km3net/production/...``).

The catalog runs with ``Identity = caller``: every call from a user's command or job acts as the Rucio account the
proxy's DIRAC user maps to (``UserAccounts``), so Rucio's scope ownership (KM3DIRAC.RucioPolicy) confines each of
them. The sandbox's Rucio server speaks plain HTTP (no x509 client authentication), so each account's userpass
credentials lie in ``etc/rucio-accounts/<account>.json`` (mode 600, ``UserpassCredentials``), never in the CS; each
account's DN is also mapped as its X509 identity, as a production Rucio needs.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from KM3DIRAC.core.lfn import user_scope
from KM3DIRAC.sandbox.dirac_components import PRODUCTION_GROUP, USER_GROUP

#: the Rucio account of the sandbox's default user (km3user): Rucio's administrator, in both its DIRAC groups
DEFAULT_ACCOUNT = "root"
PRODUCTION_ACCOUNT = "km3prod"
PRODUCTION_SCOPE = "production"


@dataclass(frozen=True)
class SandboxPerson:
    """A DIRAC user of the sandbox with a Rucio account of their own that owns ``scope``."""

    user: str
    group: str
    account: str
    scope: str
    what: str

    @property
    def account_type(self) -> str:
        return "SERVICE" if self.group == PRODUCTION_GROUP else "USER"


PEOPLE = (
    SandboxPerson("alice", USER_GROUP, "alice", user_scope("alice"), "a user (Rucio account alice, scope user.alice)"),
    SandboxPerson("bob", USER_GROUP, "bob", user_scope("bob"), "another user (Rucio account bob, scope user.bob)"),
    SandboxPerson("km3prodmgr", PRODUCTION_GROUP, PRODUCTION_ACCOUNT, PRODUCTION_SCOPE,
                  f"the production manager (Rucio account {PRODUCTION_ACCOUNT}, scope {PRODUCTION_SCOPE})"),
)


def person(user: str) -> SandboxPerson | None:
    return next((candidate for candidate in PEOPLE if candidate.user == user), None)


def credentials_file(directory: Path, account: str) -> Path:
    return directory / f"{account}.json"


def ensure_credentials(directory: Path, account: str, username: str | None = None,
                       password: str | None = None) -> dict[str, str]:
    """The userpass credentials of ``account`` (made once, random, mode 600), as ``UserpassCredentials`` reads them."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = credentials_file(directory, account)
    if path.exists() and username is None:
        return json.loads(path.read_text())
    credentials = {"username": username or f"{account}-sandbox", "password": password or secrets.token_urlsafe(24)}
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(credentials))
    return credentials


def accounts_cfg_text(default_user: str, default_user_dn: str, dns: dict[str, str], credentials_dir: Path) -> str:
    """The Registry entries of the sandbox's people and the catalog options that make each act as their account."""
    users = "\n".join(f"    {p.user}\n    {{\n      DN = {dns[p.user]}\n    }}" for p in PEOPLE)
    members = {group: ", ".join([default_user, *(p.user for p in PEOPLE if p.group == group)])
               for group in (USER_GROUP, PRODUCTION_GROUP)}
    user_accounts = ", ".join([f"{default_user}:{DEFAULT_ACCOUNT}", *(f"{p.user}:{p.account}" for p in PEOPLE)])
    return f"""Registry
{{
  Users
  {{
    {default_user}
    {{
      DN = {default_user_dn}
    }}
{users}
  }}
  Groups
  {{
    {USER_GROUP}
    {{
      Users = {members[USER_GROUP]}
    }}
    {PRODUCTION_GROUP}
    {{
      Users = {members[PRODUCTION_GROUP]}
    }}
  }}
}}
Resources
{{
  FileCatalogs
  {{
    RucioFileCatalog
    {{
      # each command and job acts as the Rucio account of its proxy's DIRAC user (KM3DIRAC.sandbox.accounts)
      Identity = caller
      UserAccounts = {user_accounts}
      GroupAccounts =
      UserpassCredentials = {credentials_dir / "{account}.json"}
    }}
  }}
}}
"""


def make_rucio_accounts(client, people: tuple[SandboxPerson, ...], credentials_dir: Path, dns: dict[str, str],
                        rses: list[str]) -> None:
    """(Idempotently) each person's Rucio account, userpass and X509 identities, unlimited quota on ``rses`` and
    own scope, made by Rucio's administrator ``client``."""
    from rucio.common.exception import Duplicate

    for someone in people:
        credentials = ensure_credentials(credentials_dir, someone.account)
        email = f"{someone.account}@km3dirac-sandbox.invalid"
        calls = ((client.add_account, (someone.account, someone.account_type, email), {}),
                 (client.add_identity, (someone.account, credentials["username"], "USERPASS", email),
                  {"password": credentials["password"]}),
                 (client.add_identity, (someone.account, dns[someone.user], "X509", email), {"default": True}),
                 (client.add_scope, (someone.account, someone.scope), {}))
        for call, arguments, keywords in calls:
            try:
                call(*arguments, **keywords)
            except Duplicate:
                pass
        for rse in rses:
            client.set_local_account_limit(someone.account, rse, -1)
