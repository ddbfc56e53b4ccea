"""Who may write where: a Rucio account writes, overwrites, attaches and removes only in the scopes it owns.

The guarantee is Rucio's own permission check on the server (KM3NeT's policy, :mod:`KM3DIRAC.RucioPolicy`): an
account that does not own a scope (and is not an admin) is refused every change in it. This module asks the same
question up front, so that DIRAC's ``hasAccess`` contract and the job wrapper refuse *before* any byte reaches a
storage element (storage has no notion of Rucio scopes), with a message naming the LFN, the account and the owner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.lfn import DID


class AccessRefused(KM3DiracError, PermissionError):
    """The Rucio account in use may not change what it tried to change; the message names what and why."""


@dataclass(frozen=True)
class AccountRights:
    """The Rucio account a client acts as, whether it is an admin, and the scopes it owns."""

    account: str
    admin: bool
    scopes: frozenset[str]

    def may_write(self, scope: str) -> bool:
        return self.admin or scope in self.scopes


def account_rights(client: Any) -> AccountRights:
    """The rights of ``client``'s account, asked from Rucio (one call per question)."""
    account = client.whoami()["account"]
    admin = account == "root" or any(
        attribute.get("key") == "admin" and str(attribute.get("value")).lower() in ("true", "1")
        for attribute in _attributes(client, account))
    try:
        scopes = frozenset(client.list_scopes_for_account(account))
    except Exception as error:  # rucio raises ScopeNotFound for an account owning none
        if type(error).__name__ != "ScopeNotFound":
            raise
        scopes = frozenset()
    return AccountRights(account, admin, scopes)


def _attributes(client: Any, account: str) -> list[dict[str, Any]]:
    attributes = client.list_account_attributes(account)
    # rucio-clients answers a generator of lists
    flat: list[dict[str, Any]] = []
    for item in attributes:
        flat.extend(item if isinstance(item, list) else [item])
    return flat


def refusal(lfn: str, did: DID, operation: str, rights: AccountRights) -> str:
    return (f"{lfn}: permission denied: Rucio account {rights.account} may not {operation} in scope {did.scope} "
            f"(it belongs to another account; you can write only in the scopes you own: "
            f"{', '.join(sorted(rights.scopes)) or 'none'})")


def write_refusals(rights: AccountRights, dids: dict[str, DID], operation: str) -> dict[str, str]:
    """``{lfn: reason}`` for each DID outside the scopes ``rights`` may change."""
    return {lfn: refusal(lfn, did, operation, rights) for lfn, did in dids.items() if not rights.may_write(did.scope)}


def check_write_access(client: Any, dids: Iterable[tuple[str, DID]], operation: str) -> None:
    """Raise :class:`AccessRefused` naming every DID ``client``'s account may not change."""
    wanted = dict(dids)
    if not wanted:
        return
    refused = write_refusals(account_rights(client), wanted, operation)
    if refused:
        raise AccessRefused("; ".join(refused[lfn] for lfn in sorted(refused)))
