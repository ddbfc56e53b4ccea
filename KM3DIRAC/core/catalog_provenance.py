"""Provenance and look-ups: ancestors/descendants, file details, GUID -> LFN, PFN -> LFN, SE dumps, dataset parameters.

Provenance lives in Rucio as the free (JSON plugin) metadata key :data:`PARENTS_KEY` of each file: the LFNs (or
``scope:name`` DIDs) of its parents, comma separated. KM3DIRAC's job wrappers write it on every output
(``KM3DIRAC.core.job_run``); ``addFileAncestors`` adds to it. Rucio has no file-to-file relation of its own (a file
cannot be attached to a file), so this key is the relation; plain Rucio users read it with ``rucio did metadata``.

Both directions walk the graph one generation per round, in bulk: ancestors read the key of a whole generation
with ``get_metadata_bulk`` (one request per :data:`CHUNK` files), descendants look for files whose key names any of
a generation (one ``list_dids`` per scope and :data:`DESCENDANT_QUERY_CHUNK` parents, a ``LIKE`` match then checked
exactly).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from KM3DIRAC.core.catalog_reads import FILE, NO_SUCH_FILE, Bulk, chunks
from KM3DIRAC.core.catalog_writes import CatalogWrites
from KM3DIRAC.core.errors import InvalidLFNError
from KM3DIRAC.core.lfn import DID

log = logging.getLogger(__name__)

PARENTS_KEY = "Parents"
MAX_DEPTH = 20  # generations walked at most (a guard against cycles written by hand)
DESCENDANT_QUERY_CHUNK = 20  # parents per list_dids request (OR groups travel in the URL)
GUID_QUERY_CHUNK = 100


def parents_of(value: Any) -> list[str]:
    """The parent LFNs stored in a :data:`PARENTS_KEY` value (comma separated text, or a list)."""
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    elif isinstance(value, str):
        items = value.split(",")
    else:
        return []
    return [item.strip()[4:] if item.strip().upper().startswith("LFN:") else item.strip() for item in items
            if item.strip()]


def wanted_depths(depths: Any) -> tuple[set[int] | None, int]:
    """DFC ``depths`` (an int or a list of ints; empty: every depth) -> (depths kept or None for all, walk depth)."""
    values = depths if isinstance(depths, (list, tuple, set)) else [depths] if depths not in (None, "") else []
    kept = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidLFNError(f"depths must be positive integers, not {value!r}")
        kept.add(value)
    if not kept:
        return None, MAX_DEPTH
    return kept, min(max(kept), MAX_DEPTH)


class CatalogProvenance(CatalogWrites):
    # ------------------------------------------------------------------------------------------- JSON metadata
    def json_metadata(self, dids: Iterable[DID]) -> dict[DID, dict[str, Any]]:
        """Free (JSON plugin) metadata of existing DIDs, in bulk (absent DIDs are absent)."""
        from rucio.common.exception import DataIdentifierNotFound

        found: dict[DID, dict[str, Any]] = {}
        for chunk in chunks(list(dict.fromkeys(dids))):
            try:
                rows = self.client.get_metadata_bulk([d.as_dict() for d in chunk], inherit=False, plugin="JSON")
            except DataIdentifierNotFound:
                rows = []
            for row in rows:
                found[DID(row["scope"], row["name"])] = {k: v for k, v in row.items() if k not in ("scope", "name")}
        return found

    # ------------------------------------------------------------------------------------------- ancestors
    def file_ancestors(self, lfns: dict[str, Any], depths: Any = 1) -> Bulk:
        """``{lfn: {ancestor: depth}}`` for the ancestors at the wanted ``depths`` (DFC ``getFileAncestors``)."""
        return self._walk(lfns, depths, self._parents_of)

    def _parents_of(self, generation: set[str]) -> dict[str, list[str]]:
        dids = self._dids_of(generation)
        free = self.json_metadata(dids.values()) if dids else {}
        return {item: parents_of(free.get(did, {}).get(PARENTS_KEY)) for item, did in dids.items()}

    def _walk(self, lfns: dict[str, Any], depths: Any,
              neighbours_of: Callable[[set[str]], Mapping[str, Iterable[str]]]) -> Bulk:
        """``{lfn: {relative: depth}}``: one generation a step, each asked in bulk for all asked files at once;
        a relative keeps the depth it was first reached at."""
        kept, walk = wanted_depths(depths)
        result, files, _ = self._files_only(lfns)
        found: dict[str, dict[str, int]] = {lfn: {} for lfn in files}
        frontier: dict[str, set[str]] = {lfn: {lfn} for lfn in files}  # per asked LFN: this generation
        for depth in range(1, walk + 1):
            generation = {item for items in frontier.values() for item in items}
            if not generation:
                break
            neighbours = neighbours_of(generation)
            next_frontier: dict[str, set[str]] = {}
            for lfn, items in frontier.items():
                reached = {other for item in items for other in neighbours.get(item, ())} - set(found[lfn]) - {lfn}
                for other in reached:
                    found[lfn][other] = depth
                next_frontier[lfn] = reached
            frontier = next_frontier
        for lfn in files:
            result.successful[lfn] = {other: d for other, d in found[lfn].items() if kept is None or d in kept}
        return result

    def _dids_of(self, items: Iterable[str]) -> dict[str, DID]:
        dids = {}
        for item in items:
            try:
                dids[item] = self.mapper.to_did(item)
            except InvalidLFNError:
                log.warning("provenance names %r, which is no LFN or DID: skipped", item)
        return dids

    # ------------------------------------------------------------------------------------------- descendants
    def file_descendants(self, lfns: dict[str, Any], depths: Any = 1) -> Bulk:
        """``{lfn: {descendant: depth}}`` (DFC ``getFileDescendents``): files naming it in their parents."""
        return self._walk(lfns, depths, self._children_of)

    def _children_of(self, parents: set[str]) -> dict[str, set[str]]:
        """``{parent: {child LFNs}}`` over every scope: a LIKE match in bulk, then the exact parent list."""
        scopes = sorted(self.validator.scopes.all())
        candidates: set[DID] = set()
        ordered = sorted(parents)
        for scope in scopes:
            for chunk in chunks(ordered, DESCENDANT_QUERY_CHUNK):
                names = self._list_dids(scope, [{PARENTS_KEY: f"*{parent}*"} for parent in chunk], "file")
                candidates.update(DID(scope, name) for name in names)
        children: dict[str, set[str]] = defaultdict(set)
        if not candidates:
            return children
        alive = self.did_metadata(candidates)
        for did, meta in self.json_metadata(alive).items():
            if alive[did].get("did_type") != FILE:
                continue
            for parent in parents_of(meta.get(PARENTS_KEY)):
                if parent in parents:
                    children[parent].add(self.mapper.to_lfn(did))
        return children

    def add_file_ancestors(self, lfns: dict[str, Any]) -> Bulk:
        """``{lfn: {"Ancestors": [lfns]}}`` (DFC ``addFileAncestors``): added to the file's :data:`PARENTS_KEY`.

        Every ancestor must be a file of the catalog; a missing one fails that LFN, naming it."""
        result = Bulk()
        asked: dict[str, list[str]] = {}
        for lfn, info in lfns.items():
            ancestors = info.get("Ancestors") if isinstance(info, dict) else None
            ancestors = [ancestors] if isinstance(ancestors, str) else ancestors
            if not isinstance(ancestors, (list, tuple, set)) or not all(isinstance(a, str) for a in ancestors):
                result.failed[str(lfn)] = f"{lfn}: give {{'Ancestors': [LFNs]}}"
                continue
            asked[lfn] = [a[4:] if a.upper().startswith("LFN:") else a for a in ancestors]
        files_result, files, _ = self._files_only(asked)
        result.failed.update(files_result.failed)
        every = {a for lfn in files for a in asked[lfn]}
        ancestor_files = self._files_only(dict.fromkeys(every))
        existing_meta = self.json_metadata(files.values())
        updates = []
        for lfn, did in files.items():
            problems = [a for a in asked[lfn] if a in ancestor_files[0].failed or a == lfn]
            if problems:
                reasons = "; ".join(f"{a}: {'the file itself' if a == lfn else ancestor_files[0].failed[a]}"
                                    for a in problems)
                result.failed[lfn] = f"{lfn}: ancestors not usable: {reasons}"
                continue
            current = parents_of(existing_meta.get(did, {}).get(PARENTS_KEY))
            merged = list(dict.fromkeys([*current, *asked[lfn]]))
            if merged != current:
                updates.append((lfn, {**did.as_dict(), "meta": {PARENTS_KEY: ",".join(merged)}}))
            else:
                result.successful[lfn] = True

        def write(chunk: list[str]) -> None:
            by_lfn = dict(updates)
            self.client.set_dids_metadata_bulk([by_lfn[lfn] for lfn in chunk])

        self._per_chunk([lfn for lfn, _ in updates], write, "writing the ancestors failed", result)
        return result

    # ------------------------------------------------------------------------------------------- look-ups
    def file_details(self, lfns: dict[str, Any]) -> Bulk:
        """DFC ``getFileDetails``: the file metadata plus ``Metadata`` (user keys: DID columns and JSON keys)."""
        from KM3DIRAC.core.metadata_query import USER_COLUMN_KEYS

        result, files, metadata = self._files_only(lfns)
        free = self.json_metadata(files.values())
        for lfn, did in files.items():
            user = {k: v for k, v in metadata[did].items() if k in USER_COLUMN_KEYS and v is not None}
            user.update(free.get(did, {}))
            result.successful[lfn] = {**self._dirac_file_metadata(did, metadata[did]), "Metadata": user}
        return result

    def dataset_parameters(self, lfns: dict[str, Any]) -> Bulk:
        """DFC ``getDatasetParameters`` on Rucio datasets (directories holding files): size, file count, status
        (``Frozen`` once closed, ``Dynamic`` while open), dates, owner account."""
        result, dids, metadata = self.lookup(lfns)
        for lfn, did in dids.items():
            meta = metadata.get(did)
            if meta is None:
                result.failed[lfn] = NO_SUCH_FILE
            elif meta["did_type"] != "DATASET":
                result.failed[lfn] = f"{lfn} is a {meta['did_type']}, not a dataset (a directory holding files)"
            else:
                # Rucio fills a dataset's bytes/length columns only when it is closed: counted from its files
                files = list(self.client.list_files(did.scope, did.name))
                result.successful[lfn] = {
                    "DatasetName": lfn, "MetaQuery": None, "TotalSize": sum(f.get("bytes") or 0 for f in files),
                    "NumberOfFiles": len(files), "Status": "Dynamic" if meta.get("is_open") else "Frozen",
                    "CreationDate": meta.get("created_at"), "ModificationDate": meta.get("updated_at"),
                    "Owner": meta.get("account"), "OwnerGroup": meta.get("account"),
                }
        return result

    def lfns_for_guids(self, guids: Iterable[Any]) -> Bulk:
        """``{guid: lfn}`` (DFC ``getLFNForGUID``), over every scope, ``GUID_QUERY_CHUNK`` GUIDs a request."""
        from KM3DIRAC.core.did_validation import GUID_PATTERN

        result = Bulk()
        wanted: dict[str, str] = {}
        for guid in guids:
            if not isinstance(guid, str) or not GUID_PATTERN.match(guid):
                result.failed[str(guid)] = f"{guid!r} is not a GUID"
                continue
            wanted[guid.strip("{}").replace("-", "").lower()] = guid
        for scope in sorted(self.validator.scopes.all()) if wanted else []:
            for chunk in chunks(list(wanted), GUID_QUERY_CHUNK):
                # dashed: Rucio's filter engine would read an all-digit hex GUID as a number (DatabaseException)
                names = self._list_dids(scope, [{"guid": str(uuid.UUID(g))} for g in chunk], "file")
                for did, meta in self.did_metadata(DID(scope, name) for name in names).items():
                    key = str(meta.get("guid") or "").replace("-", "").lower()
                    if key in wanted:
                        result.successful.setdefault(wanted[key], self.mapper.to_lfn(did))
        for guid in wanted.values():
            if guid not in result.successful:
                result.failed[guid] = "GUID not found"
        return result

    def lfns_for_pfns(self, pfns: dict[str, Any]) -> Bulk:
        """``{pfn: lfn}`` (DFC ``getLFNForPFN``) where the PFN is a replica's URL as ``getReplicas`` gives it."""
        result = Bulk()
        candidates: dict[str, str] = {}
        marker = f"{self.mapper.root}/"
        for pfn in pfns:
            index = pfn.find(marker) if isinstance(pfn, str) else -1
            if index < 0:
                result.failed[str(pfn)] = f"{pfn}: not a URL below a {self.mapper.root} namespace"
            else:
                candidates[pfn] = pfn[index:]
        listed = self.replicas(dict.fromkeys(set(candidates.values())), all_status=True)
        for pfn, lfn in candidates.items():
            urls = listed.successful.get(lfn, {})
            if any(url == pfn or url.split("?")[0] == pfn.split("?")[0] for url in urls.values()):
                result.successful[pfn] = lfn
            else:
                result.failed[pfn] = NO_SUCH_FILE
        return result

    def se_dump(self, rses: Iterable[str]) -> list[tuple[str, str, str, int]]:
        """``[(SE, lfn, adler32, size)]`` of the replicas each RSE keeps pinned (DFC ``getSEDump``): from the
        rules at the RSE and their locks, one request per rule, sizes and checksums in bulk."""
        rows: list[tuple[str, str, str, int]] = []
        for rse in rses:
            dids: set[DID] = set()
            for rule in self.client.list_replication_rules({"rse_expression": rse}):
                for lock in self.client.list_replica_locks(rule["id"]):
                    if lock.get("rse") in (None, rse):
                        dids.add(DID(lock["scope"], lock["name"]))
            metadata = self.did_metadata(dids)
            listed = self.replicas({self.mapper.to_lfn(d): True for d in metadata}, all_status=True).successful
            for did in sorted(metadata, key=str):
                lfn = self.mapper.to_lfn(did)
                if rse in listed.get(lfn, {}):
                    rows.append((rse, lfn, metadata[did].get("adler32") or "", metadata[did].get("bytes") or 0))
        return rows
