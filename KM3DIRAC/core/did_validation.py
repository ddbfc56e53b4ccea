"""What the Rucio server will refuse, checked per LFN before any writing call.

Rucio validates a whole request at once (``add_replicas`` checks every DID against its ``dids`` schema, an unknown
scope fails the request with ``ScopeNotFound``): one bad LFN in a bulk call would fail the LFNs beside it. The
catalog therefore checks every LFN first, puts each bad one in Failed with the problem and the remedy, and sends
only the good ones.

Checked: the LFN form (:class:`KM3DIRAC.core.lfn.LFNMapper`: namespace, ``..``/``//``, scope pattern, lengths), the
characters Rucio's DID name schema allows (``rucio.common.schema.generic.NAME``) and that the scope exists (one
``list_scopes`` call, cached for :data:`SCOPE_CACHE_SECONDS`; a call naming a scope the cache does not hold lists
the scopes again, so a scope created a moment ago is found).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from KM3DIRAC.core.errors import InvalidLFNError
from KM3DIRAC.core.lfn import DID, LFNMapper

SCOPE_CACHE_SECONDS = 60.0  # scopes and RSE names
# rucio/common/schema/generic.py NAME (Rucio 41): what the server's "dids" schema accepts
GENERIC_NAME_PATTERN = r"^[/A-Za-z0-9][/A-Za-z0-9\.\-_]*$"
NAME_ALLOWED = "letters, digits and / . - _ (a letter, digit or / first)"


class FailureSink(Protocol):
    failed: dict[str, str]


def rucio_name_pattern() -> re.Pattern[str]:
    """Rucio 41's generic DID name pattern (``rucio.common.schema`` itself imports server modules, so it is copied:
    rucio-clients cannot import it)."""
    return re.compile(GENERIC_NAME_PATTERN)


def missing_scope_message(lfn: str, scope: str, account: str | None) -> str:
    return (f"{lfn}: Rucio scope '{scope}' does not exist. A Rucio administrator creates it with "
            f"`rucio scope add {scope} --account {account or '<account>'}` (older clients: "
            f"`rucio-admin scope add --scope {scope} --account {account or '<account>'}`); then retry")


class ScopeCache:
    """The scopes of one Rucio server, listed at most once per :data:`SCOPE_CACHE_SECONDS` (thread-safe)."""

    def __init__(self, client: Any, ttl: float = SCOPE_CACHE_SECONDS) -> None:
        self.client = client
        self.ttl = ttl
        self._scopes: frozenset[str] = frozenset()
        self._listed_at = float("-inf")
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        self._scopes = frozenset(self.client.list_scopes())
        self._listed_at = time.monotonic()

    def existing(self, scopes: Iterable[str]) -> set[str]:
        """The subset of ``scopes`` that exist on the server."""
        wanted = set(scopes)
        with self._lock:
            refreshed = time.monotonic() - self._listed_at > self.ttl
            if refreshed:
                self._refresh()
            if not wanted <= self._scopes and not refreshed:
                self._refresh()  # created since the last listing? (a scope really missing costs one more call)
            return wanted & self._scopes

    def all(self) -> frozenset[str]:
        """Every scope (cached like :meth:`existing`)."""
        with self._lock:
            if time.monotonic() - self._listed_at > self.ttl:
                self._refresh()
            return self._scopes

    def forget(self) -> None:
        with self._lock:
            self._listed_at = float("-inf")


class RSECache(ScopeCache):
    """The RSE names of one Rucio server, cached like the scopes."""

    def _refresh(self) -> None:
        self._scopes = frozenset(row["rse"] for row in self.client.list_rses())
        self._listed_at = time.monotonic()


def missing_rse_message(lfn: str, rse: str) -> str:
    return (f"{lfn}: the StorageElement {rse} is not a Rucio RSE: KM3DIRAC registers a replica at the RSE of the "
            f"same name (a Rucio administrator adds it with `rucio rse add {rse}`), or use an SE that has one")


_caches: dict[int, ScopeCache] = {}
_rse_caches: dict[int, RSECache] = {}
_caches_lock = threading.Lock()


def _cache_for(caches: dict[int, Any], client: Any, make: Callable[[Any], Any]) -> Any:
    with _caches_lock:
        cache = caches.get(id(client))
        if cache is None or cache.client is not client:  # a new client reusing a dead one's id
            cache = caches[id(client)] = make(client)
        return cache


def rse_cache_for(client: Any) -> RSECache:
    """One :class:`RSECache` per rucio client object."""
    return _cache_for(_rse_caches, client, RSECache)


def scope_cache_for(client: Any) -> ScopeCache:
    """One :class:`ScopeCache` per rucio client object (the adapter keeps one client per process)."""
    return _cache_for(_caches, client, ScopeCache)


class DIDValidator:
    """Checks LFNs for a writing call: each bad one goes to ``result.failed`` naming the problem and the remedy."""

    def __init__(self, mapper: LFNMapper, scopes: ScopeCache, account: str | None = None) -> None:
        self.mapper = mapper
        self.scopes = scopes
        self.account = account
        self.name_pattern = rucio_name_pattern()

    def name_problem(self, lfn: str, did: DID) -> str | None:
        if self.name_pattern.match(did.name):
            return None
        return self.name_refusal(lfn, did)

    @staticmethod
    def name_refusal(lfn: str, did: DID) -> str:
        """Why Rucio's DID name pattern refuses ``did.name``."""
        allowed = re.compile(r"[/A-Za-z0-9.\-_]")
        bad = sorted({c for c in did.name if not allowed.match(c)})
        if bad:
            return f"{lfn}: character(s) {''.join(bad)!r} not allowed in a Rucio DID name: use {NAME_ALLOWED}"
        return f"{lfn}: a Rucio DID name must start with a letter, digit or /"

    def check_names(self, lfns: Iterable[Any], result: FailureSink) -> dict[Any, DID]:
        """``{lfn: DID}`` of the LFNs whose form and DID name the server accepts (a name its schema refuses would fail
        the whole request); the others are Failed entries with the reason."""
        dids: dict[Any, DID] = {}
        accepted = self.name_pattern.match
        for lfn, did in self.mapper.to_dids(lfns):
            if type(did) is DID and accepted(did.name):  # the common case first, inline (a million LFNs)
                dids[lfn] = did
            elif isinstance(did, InvalidLFNError):
                result.failed[str(lfn)] = str(did)
            else:  # a DID whose name Rucio's pattern refuses (the LFN was a string, else to_did refused it)
                result.failed[str(lfn)] = self.name_refusal(str(lfn), did)
        return dids

    def check(self, lfns: Iterable[Any], result: FailureSink) -> dict[Any, DID]:
        """``{lfn: DID}`` of the LFNs a writing call may send to the server (names as :meth:`check_names`, scopes
        that exist); the others are Failed entries."""
        dids = self.check_names(lfns, result)
        if dids:
            existing = self.scopes.existing(did.scope for did in dids.values())
            for lfn in [lfn for lfn, did in dids.items() if did.scope not in existing]:
                result.failed[lfn] = missing_scope_message(lfn, dids.pop(lfn).scope, self.account)
        return dids


def check_value_type(lfn: str, name: str, value: Any, expected: type | tuple[type, ...]) -> str | None:
    """A Failed reason when ``value`` is not of the ``expected`` type (bool is not an int here)."""
    if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
        return f"{lfn}: {name} must be {_type_names(expected)}, not {value!r}"
    if not isinstance(value, expected):
        return f"{lfn}: {name} must be {_type_names(expected)}, not {type(value).__name__} {value!r}"
    return None


def _type_names(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(t.__name__ for t in types)


# Rucio 41 DID columns a user may set (rucio/db/sqla/models.py DataIdentifier): type and, for strings, length.
INT32_MAX = 2**31 - 1
COLUMN_TYPES: dict[str, tuple[type, int]] = {
    "run_number": (int, INT32_MAX), "events": (int, 2**63 - 1), "task_id": (int, INT32_MAX),
    "panda_id": (int, INT32_MAX), "lumiblocknr": (int, INT32_MAX),
    "project": (str, 50), "datatype": (str, 50), "stream_name": (str, 70), "prod_step": (str, 50),
    "version": (str, 50), "campaign": (str, 50), "provenance": (str, 2), "phys_group": (str, 25),
}
GUID_PATTERN = re.compile(r"^\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\}?$")


def metadata_problem(lfn: str, meta: dict[str, Any]) -> str | None:
    """A Failed reason for metadata the server would refuse (a DID-column key with a value of the wrong type or
    too long, a key that is not a non-empty string), else None. Free keys take any JSON value."""
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            return f"{lfn}: metadata key {key!r} must be a non-empty string"
        if key not in COLUMN_TYPES or value is None:
            continue
        kind, limit = COLUMN_TYPES[key]
        if kind is int:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{lfn}: metadata {key} must be an integer (a Rucio DID column), not {value!r}"
            if not -limit - 1 <= value <= limit:
                return f"{lfn}: metadata {key} = {value} is out of range for its Rucio DID column"
        elif not isinstance(value, str):
            return f"{lfn}: metadata {key} must be a string (a Rucio DID column), not {value!r}"
        elif len(value) > limit:
            return f"{lfn}: metadata {key} is {len(value)} characters, its Rucio DID column holds {limit}"
    return None


def guid_problem(lfn: str, guid: Any) -> str | None:
    if not isinstance(guid, str) or not GUID_PATTERN.match(guid):
        return f"{lfn}: GUID {guid!r} is not a GUID (32 hexadecimal digits, dashes optional)"
    return None
