"""KM3NeT's permission policy: Rucio's ``generic`` policy, with a scope's owner allowed to manage its files.

Rucio's ``generic`` policy lets a scope's owner create DIDs, attach and detach, and set metadata in the scope, but
keeps file replicas (``add_replicas``, ``update_replicas_states``), rule deletion and re-opening collections for
admins. KM3DIRAC's users and production accounts are plain (non-admin) accounts that own their scopes
(``user.<name>`` for a user's home, the production scopes for the production account), so here:

- ``add_replicas`` / ``update_replicas_states``: admins, or an issuer owning the scope of every file in the request.
  Rucio 41's gateway hands the permission check only the RSE, so the files are read from the request's JSON body
  (the REST endpoints' ``files`` parameter); outside a web request (daemons, core calls) the ``generic`` rule holds.
- ``del_rule``: admins, the rule's account, or the owner of the rule's scope.
- ``set_status`` (open/close a collection): admins or the owner of its scope.

Everything else is ``generic``: an account can read everything, and cannot remove, overwrite or attach into a scope
it does not own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rucio.core.permission import generic

if TYPE_CHECKING:
    from rucio.common.types import InternalAccount
    from sqlalchemy.orm import Session


def _is_admin(issuer: InternalAccount, session: Session) -> bool:
    from rucio.core.account import has_account_attribute

    return issuer.external == "root" or bool(has_account_attribute(account=issuer, key="admin", session=session))


def _owns(issuer: InternalAccount, scope: Any, session: Session) -> bool:
    from rucio.common.types import InternalScope
    from rucio.core.scope import is_scope_owner

    if not isinstance(scope, InternalScope):
        scope = InternalScope(str(scope), vo=issuer.vo)
    return bool(is_scope_owner(scope=scope, account=issuer, session=session))


def _request_files() -> list[dict[str, Any]] | None:
    """The ``files`` of the current REST request's JSON body; None outside a request or without files."""
    try:
        from flask import has_request_context, request
    except ImportError:
        return None
    if not has_request_context():
        return None
    body = request.get_json(force=True, silent=True, cache=True)
    files = body.get("files") if isinstance(body, dict) else None
    return files if isinstance(files, list) and files else None


def _owns_request_files(issuer: InternalAccount, session: Session) -> bool:
    files = _request_files()
    if files is None:
        return False
    scopes = {entry.get("scope") for entry in files if isinstance(entry, dict)}
    return None not in scopes and all(_owns(issuer, scope, session) for scope in scopes)


def perm_add_replicas(issuer: InternalAccount, kwargs: dict[str, Any], session: Session) -> bool:
    return _is_admin(issuer, session) or _owns_request_files(issuer, session)


def perm_update_replicas_states(issuer: InternalAccount, kwargs: dict[str, Any], session: Session) -> bool:
    return _is_admin(issuer, session) or _owns_request_files(issuer, session)


def perm_del_rule(issuer: InternalAccount, kwargs: dict[str, Any], session: Session) -> bool:
    if _is_admin(issuer, session):
        return True
    from rucio.common.exception import RuleNotFound
    from rucio.core.rule import get_rule

    try:
        rule = get_rule(kwargs["rule_id"], session=session)
    except RuleNotFound:
        return False
    return rule["account"] == issuer or _owns(issuer, rule["scope"], session)


def perm_set_status(issuer: InternalAccount, kwargs: dict[str, Any], session: Session) -> bool:
    return _is_admin(issuer, session) or _owns(issuer, kwargs["scope"], session)


OVERRIDES = {
    "add_replicas": perm_add_replicas,
    "update_replicas_states": perm_update_replicas_states,
    "del_rule": perm_del_rule,
    "set_status": perm_set_status,
}


def has_permission(issuer: InternalAccount, action: str, kwargs: dict[str, Any], session: Session | None = None):
    """Rucio's entry point: KM3NeT's rule for the actions in :data:`OVERRIDES`, ``generic`` for the others."""
    if action in OVERRIDES:
        return OVERRIDES[action](issuer, kwargs, session)
    return generic.has_permission(issuer, action, kwargs, session=session)
