"""The Rucio file catalog, in DIRAC's terms, as plain Python over an injected rucio-clients ``Client``: reads.

Every bulk operation takes ``{lfn: value}`` and returns a :class:`Bulk` in which each input LFN lands in exactly
one of ``successful`` / ``failed``. Server round trips are bulk and chunked (:data:`CHUNK`), never one per LFN.
Errors that concern the whole call (server unreachable, authentication) propagate as exceptions.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from KM3DIRAC.core.did_validation import DIDValidator, scope_cache_for
from KM3DIRAC.core.lfn import DID, LFNMapper
from KM3DIRAC.core.replica_placement import DatasetProofs, prove_placement

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

CHUNK = 1000
# bulk requests in flight at once: the server parses one while this client reads another (the rucio client's
# session is shared between threads, as the per-dataset placement proof already does)
PARALLEL_REQUESTS = 4
NO_SUCH_FILE = "No such file or directory"
FILE = "FILE"
COLLECTIONS = ("DATASET", "CONTAINER")
REMOVED_MARGIN = datetime.timedelta(seconds=60)
GUID_NAMESPACE = uuid.UUID("8a7b0d4e-4c1d-4a53-9f1e-4b4d3e0a6c01")
# Rucio replica states getReplicas lists (KM3DIRAC.core.catalog_replica_status maps them to DIRAC statuses): with
# allStatus also the replicas whose bytes exist but are not to be read now; never UNAVAILABLE (removed or lost),
# BEING_DELETED or COPYING ones, whose URL would point at no bytes.
LISTED = frozenset({"AVAILABLE"})
LISTED_WITH_ALL_STATUS = frozenset({"AVAILABLE", "BAD", "TEMPORARY_UNAVAILABLE"})
REPLICA_STATUS = {"AVAILABLE": "AprioriGood", "BAD": "Trash", "TEMPORARY_UNAVAILABLE": "Probing",
                  "UNAVAILABLE": "Removed", "BEING_DELETED": "Removed", "COPYING": "Copying"}


@dataclass
class Bulk:
    successful: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def fail(self, lfns: Iterable[str], reason: str) -> None:
        for lfn in lfns:
            self.failed[lfn] = reason
            self.successful.pop(lfn, None)


def chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def parallel_map(function: Callable[[T], R], items: list[T], workers: int = PARALLEL_REQUESTS) -> Iterator[R]:
    """``map`` with up to ``workers`` calls at a time, in order; one item is called in this thread."""
    if len(items) <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        yield from pool.map(function, items)


#: LFNs from which a call pauses Python's cyclic garbage collector (below, its passes cost little)
PAUSE_GC_FROM = 100_000
#: replicas without URLs of this many LFNs or more: their datasets asked from the LFN strings, before the LFNs are
#: checked (the server answers meanwhile)
PREFETCH_PROOFS_FROM = 1000


@contextlib.contextmanager
def gc_paused(size: int) -> Iterator[None]:
    """Python's cyclic collector paused while a call of ``size`` LFNs builds its millions of small objects: each
    collection pass walks all of them again (1.3-1.9 s of 5 s client time for 1M LFNs measured). Nothing these
    calls build is cyclic garbage; the collector runs again afterwards (unless it was off before)."""
    if size < PAUSE_GC_FROM or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def guid_of(did: DID, stored: str | None) -> str:
    """The GUID DIRAC sees: the stored one, else one derived from the DID (stable, so retries agree)."""
    if stored:
        text = stored.replace("-", "").upper()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}" if len(text) == 32 else stored
    return str(uuid.uuid5(GUID_NAMESPACE, str(did))).upper()


class CatalogReads:
    """DIRAC FileCatalog read semantics on Rucio. ``client`` is an authenticated ``rucio.client.Client``."""

    def __init__(self, client: Any, mapper: LFNMapper | None = None, account: str | None = None) -> None:
        self.client = client
        self.mapper = mapper or LFNMapper()
        self.account = account or client.account
        self.validator = DIDValidator(self.mapper, scope_cache_for(client), self.account)

    # ------------------------------------------------------------------------------------------- helpers
    def resolve(self, lfns: Iterable[Any], result: Bulk) -> dict[str, DID]:
        """Map LFNs to DIDs; malformed ones (and names Rucio's DID schema refuses, which would fail the whole
        request) go to ``result.failed`` with the reason."""
        return self.validator.check_names(lfns, result)

    def resolve_for_write(self, lfns: Iterable[Any], result: Bulk) -> dict[str, DID]:
        """:meth:`resolve` plus what only a writing call must know: the scope exists (else the remedy)."""
        return self.validator.check(lfns, result)

    def did_metadata(self, dids: Iterable[DID], include_removed: bool = False) -> dict[DID, dict]:
        """DID-column metadata of the DIDs that exist, in bulk; unknown DIDs (and scopes) are absent, and so are
        files removed through this catalog unless ``include_removed``."""
        from rucio.common.exception import DataIdentifierNotFound, ScopeNotFound

        def rows_of(chunk: list[DID]) -> list[dict]:
            try:
                return list(self.client.get_metadata_bulk([did.as_dict() for did in chunk], inherit=False,
                                                          plugin="DID_COLUMN"))
            except (DataIdentifierNotFound, ScopeNotFound):
                return []

        found: dict[DID, dict] = {}
        parts = list(chunks(list(dict.fromkeys(dids))))
        for rows in parallel_map(rows_of, parts):
            # lifetime 0 set by removeFile; the margin absorbs clock skew between this host and the server
            horizon = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + REMOVED_MARGIN
            for row in rows:
                expired_at = row.get("expired_at")
                removed = expired_at is not None and expired_at <= horizon
                if removed and not include_removed:
                    continue  # removed (removeFile, removeDirectory, expired), waiting for Rucio's undertaker
                found[DID(row["scope"], row["name"])] = row
        return found

    def lookup(self, lfns: Iterable[Any]) -> tuple[Bulk, dict[str, DID], dict[DID, dict]]:
        """The start of most calls: a result with the malformed LFNs failed, the DIDs of the others, and the
        DID-column metadata of those that exist (one bulk call per chunk)."""
        result = Bulk()
        dids = self.resolve(lfns, result)
        return result, dids, self.did_metadata(dids.values())

    # ------------------------------------------------------------------------------------------- reads
    def exists(self, lfns: dict[str, Any]) -> Bulk:
        result, dids, present = self.lookup(lfns)
        for lfn, did in dids.items():
            result.successful[lfn] = lfn if did in present else False
        self._resolve_guid_aliases(lfns, result)
        return result

    def _resolve_guid_aliases(self, lfns: dict[str, Any], result: Bulk) -> None:
        """DFC convention: an absent LFN whose GUID is used by another file answers that file's LFN."""
        wanted = {lfn: value for lfn, value in lfns.items()
                  if result.successful.get(lfn) is False and isinstance(value, str) and value}
        by_scope: dict[str, dict[str, str]] = defaultdict(dict)
        for lfn, guid in wanted.items():
            by_scope[self.mapper.to_did(lfn).scope][guid.replace("-", "").lower()] = lfn
        for scope, guids in by_scope.items():
            for chunk in chunks(list(guids), 100):
                matches = self._list_dids(scope, [{"guid": guid} for guid in chunk], "file", long=False)
                if not matches:
                    continue
                for did, meta in self.did_metadata(DID(scope, name) for name in matches).items():
                    asked = guids.get((meta.get("guid") or "").replace("-", "").lower())
                    if asked:
                        result.successful[asked] = self.mapper.to_lfn(did)

    def _list_dids(self, scope: str, filters: list[dict], did_type: str, long: bool = False) -> list[str]:
        from rucio.common.exception import ScopeNotFound

        try:
            return [row["name"] if isinstance(row, dict) else row
                    for row in self.client.list_dids(scope, filters, did_type=did_type, long=long)]
        except ScopeNotFound:
            return []

    def _files_only(self, lfns: dict[str, Any]) -> tuple[Bulk, dict[str, DID], dict[DID, dict]]:
        result, dids, metadata = self.lookup(lfns)
        files = {}
        for lfn, did in dids.items():
            meta = metadata.get(did)
            if meta is None:
                result.failed[lfn] = NO_SUCH_FILE
            elif meta["did_type"] != FILE:
                result.failed[lfn] = f"{lfn} is a directory ({meta['did_type']}), not a file"
            else:
                files[lfn] = did
        return result, files, metadata

    def file_metadata(self, lfns: dict[str, Any]) -> Bulk:
        result, files, metadata = self._files_only(lfns)
        for lfn, did in files.items():
            result.successful[lfn] = self._dirac_file_metadata(did, metadata[did])
        return result

    def _dirac_file_metadata(self, did: DID, meta: dict) -> dict:
        return {
            "Size": meta.get("bytes"),
            "Checksum": meta.get("adler32"),
            "ChecksumType": "AD",
            "GUID": guid_of(did, meta.get("guid")),
            "CreationDate": meta.get("created_at"),
            "ModificationDate": meta.get("updated_at"),
            "Status": "AprioriGood" if meta.get("availability", "AVAILABLE") == "AVAILABLE" else "Lost",
            "Owner": meta.get("account"),
            "OwnerGroup": meta.get("account"),
            "Mode": 0o775,
            "Scope": did.scope,
        }

    def file_size(self, lfns: dict[str, Any]) -> Bulk:
        result, files, metadata = self._files_only(lfns)
        for lfn, did in files.items():
            result.successful[lfn] = metadata[did]["bytes"]
        return result

    def is_file(self, lfns: dict[str, Any]) -> Bulk:
        result, dids, metadata = self.lookup(lfns)
        for lfn, did in dids.items():
            meta = metadata.get(did)
            result.successful[lfn] = meta is not None and meta.get("did_type") == FILE
        return result

    def replicas(self, lfns: dict[str, Any], all_status: bool = False, urls: bool = True) -> Bulk:
        """``{lfn: {RSE: URL}}``; with ``urls=False`` ``{lfn: {RSE: True}}``, AVAILABLE replicas proven per dataset
        where possible (:mod:`KM3DIRAC.core.replica_placement`), the other files asked file by file."""
        if not urls and not all_status:
            with gc_paused(len(lfns)), DatasetProofs(self.client) as proofs:
                if len(lfns) >= PREFETCH_PROOFS_FROM:  # the server answers while the LFNs are checked
                    proofs.ask_for_lfns(lfns, self.mapper.to_did)
                return self._replicas(lfns, all_status, urls, proofs)
        return self._replicas(lfns, all_status, urls)

    def _replicas(self, lfns: dict[str, Any], all_status: bool, urls: bool,
                  proofs: DatasetProofs | None = None) -> Bulk:
        from rucio.common.exception import DataIdentifierNotFound

        result = Bulk()
        dids = self.resolve(lfns, result)
        if proofs is not None:
            dids = self._placement_per_dataset(dids, result, proofs)
        by_did = {did: lfn for lfn, did in dids.items()}
        seen: set[DID] = set()

        def rows_of(chunk: list[DID]) -> list[dict]:
            try:
                return list(self.client.list_replicas([did.as_dict() for did in chunk], all_states=all_status,
                                                      ignore_availability=True, resolve_archives=False))
            except DataIdentifierNotFound:
                return []

        # the server builds a URL per replica (milliseconds a file): several chunks in flight use its workers
        for rows in parallel_map(rows_of, list(chunks(list(by_did)))):
            for row in rows:
                did = DID(row["scope"], row["name"])
                states = row.get("states", {})
                per_rse = {}
                for rse, pfns in row.get("rses", {}).items():
                    if pfns and states.get(rse, "AVAILABLE") in (LISTED_WITH_ALL_STATUS if all_status else LISTED):
                        per_rse[rse] = pfns[0]
                if did in by_did and per_rse:  # files with no replica are checked below (removed ones fail)
                    seen.add(did)
                    result.successful[by_did[did]] = per_rse
        missing = [did for did in by_did if did not in seen]
        if missing:
            present = self.did_metadata(missing)
            for did in missing:
                meta = present.get(did)
                if meta is not None and meta["did_type"] == FILE:
                    result.successful[by_did[did]] = {}
                else:
                    result.failed[by_did[did]] = NO_SUCH_FILE
        if not urls:
            for lfn in by_did.values():
                if lfn in result.successful:
                    result.successful[lfn] = dict.fromkeys(result.successful[lfn], True)
        return result

    def _placement_per_dataset(self, dids: dict[str, DID], result: Bulk, proofs: DatasetProofs) -> dict[str, DID]:
        """Fill ``result`` for the files whose placement is proven per dataset; return the others."""
        placement = prove_placement(self.client, dids, proofs=proofs)
        successful = result.successful
        answers: dict[int, dict[str, bool]] = {}  # per RSE list (one a dataset): each file gets a copy
        for lfn, rses in placement.proven.items():
            answer = answers.get(id(rses))
            if answer is None:
                answer = answers[id(rses)] = dict.fromkeys(rses, True)
            successful[lfn] = answer.copy()
        return {lfn: dids[lfn] for lfn in placement.unproven}

    def replica_status(self, lfns: dict[str, Any]) -> Bulk:
        """``{lfn: SE}`` or ``{lfn: [SEs]}`` -> ``{lfn: {SE: status}}`` with Rucio's replica states."""
        replicas = self.replicas(dict.fromkeys(lfns), all_status=True)
        states = self._replica_states(replicas.successful)
        result = Bulk(failed=dict(replicas.failed))
        for lfn, wanted in lfns.items():
            if lfn in result.failed:
                continue
            listed = replicas.successful.get(lfn, {})  # removed replicas have no status: they are gone
            wanted_ses = [wanted] if isinstance(wanted, str) else list(wanted if isinstance(wanted, (dict, list, tuple,
                                                                                                 set)) and wanted
                                                                       else listed)
            per_se = {}
            for se in wanted_ses:
                if se in listed and se in states.get(lfn, {}):
                    per_se[se] = states[lfn][se]
            if wanted_ses and not per_se:
                result.failed[lfn] = f"no replica at {', '.join(wanted_ses)}"
            else:
                result.successful[lfn] = per_se
        return result

    def _replica_states(self, lfns_with_replicas: dict[str, dict]) -> dict[str, dict[str, str]]:
        dids = {self.mapper.to_did(lfn): lfn for lfn in lfns_with_replicas}
        states: dict[str, dict[str, str]] = defaultdict(dict)
        code = REPLICA_STATUS
        for chunk in chunks(list(dids)):
            for row in self.client.list_replicas([d.as_dict() for d in chunk], all_states=True,
                                                 ignore_availability=True, resolve_archives=False):
                lfn = dids[DID(row["scope"], row["name"])]
                for rse, state in row.get("states", {}).items():
                    states[lfn][rse] = code.get(state, state)
        return states
