"""The Rucio file catalog: directories and writes (files, replicas, pinning rules).

Registration is ``add_replicas`` + ``attach_dids_to_dids`` in bulk (never Rucio's per-file ``add_files`` DIRAC
endpoint, which makes one rule per file). Replicas are pinned at their RSE by one rule per (dataset, RSE) — a
dataset rule covers every file attached to it — created when the dataset gets its first files at that RSE; a
file whose dataset already lives elsewhere gets a rule of its own, so no transfer is ever triggered by pinning.
Rules never expire. A failed registration leaves nothing half-registered: replicas added for a chunk whose
attachment fails are deleted again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from KM3DIRAC.core.catalog_reads import COLLECTIONS, FILE, NO_SUCH_FILE, Bulk, CatalogReads, chunks
from KM3DIRAC.core.checksums import normalise_adler32
from KM3DIRAC.core.lfn import DID

log = logging.getLogger(__name__)


class CatalogWrites(CatalogReads):
    # ------------------------------------------------------------------------------------------- directories
    def list_directory(self, lfns: dict[str, Any], verbose: bool = False) -> Bulk:
        result = Bulk()
        for lfn in lfns:
            if not isinstance(lfn, str):
                result.failed[str(lfn)] = f"{lfn!r}: a directory must be a string"
                continue
            path = lfn.rstrip("/") or "/"
            if path == "/":  # DIRAC's namespace root holds the VO's directory (where the portal's tree starts)
                result.successful[lfn] = self._listing([], [self.mapper.root], {})
                continue
            if self.mapper.is_root(path):
                scopes = sorted(self.client.list_scopes())
                result.successful[lfn] = self._listing([], [f"{self.mapper.root}/{s}" for s in scopes], {})
            elif (scope := self.mapper.scope_of_directory(path)) is not None:
                if scope not in set(self.client.list_scopes()):
                    result.failed[lfn] = NO_SUCH_FILE
                    continue
                names = self._list_dids(scope, [{"name": f"{path}/*"}], "collection")
                top = [name for name in names if self.mapper.parent(name) == path]
                result.successful[lfn] = self._listing([], top, {})
            else:
                self._list_collection(lfn, path, verbose, result)
        return result

    def _list_collection(self, lfn: str, path: str, verbose: bool, result: Bulk) -> None:
        from rucio.common.exception import DataIdentifierNotFound, ScopeNotFound

        try:
            did = self.mapper.to_did(path)
            children = list(self.client.list_content(did.scope, did.name))
        except (DataIdentifierNotFound, ScopeNotFound):
            result.failed[lfn] = NO_SUCH_FILE
            return
        except ValueError as error:
            result.failed[lfn] = str(error)
            return
        files = [DID(c["scope"], c["name"]) for c in children if c["type"] == FILE]
        dirs = [self.mapper.to_lfn(DID(c["scope"], c["name"])) for c in children if c["type"] in COLLECTIONS]
        file_meta = {}
        if verbose or files:
            metadata = self.did_metadata(files)
            file_meta = {self.mapper.to_lfn(d): self._dirac_file_metadata(d, metadata[d]) for d in files
                         if d in metadata}
        result.successful[lfn] = self._listing([self.mapper.to_lfn(d) for d in files], dirs, file_meta)

    @staticmethod
    def _listing(files: list[str], dirs: list[str], file_meta: dict[str, dict]) -> dict:
        return {
            "Files": {f: {"MetaData": file_meta.get(f, {})} for f in files},
            "SubDirs": dict.fromkeys(dirs, True),
            "Links": {},
            "Datasets": {},
        }

    def directory_size(self, lfns: dict[str, Any]) -> Bulk:
        from rucio.common.exception import DataIdentifierNotFound

        result = Bulk()
        dids = self.resolve(lfns, result)
        for lfn, did in dids.items():
            try:
                files = list(self.client.list_files(did.scope, did.name))
                content = list(self.client.list_content(did.scope, did.name))
            except DataIdentifierNotFound:
                result.failed[lfn] = NO_SUCH_FILE
                continue
            physical: dict[str, dict[str, int]] = defaultdict(lambda: {"Files": 0, "Size": 0})
            file_dids = [DID(f["scope"], f["name"]) for f in files]
            sizes = {DID(f["scope"], f["name"]): f.get("bytes") or 0 for f in files}
            for chunk in chunks(file_dids):
                for row in self.client.list_replicas([d.as_dict() for d in chunk], resolve_archives=False):
                    for rse in row.get("rses", {}):
                        physical[rse]["Files"] += 1
                        physical[rse]["Size"] += sizes.get(DID(row["scope"], row["name"]), 0)
            physical_dict: dict[str, Any] = dict(physical)
            physical_dict["TotalFiles"] = sum(v["Files"] for v in physical.values())
            physical_dict["TotalSize"] = sum(v["Size"] for v in physical.values())
            result.successful[lfn] = {
                "LogicalSize": sum(sizes.values()),
                "LogicalFiles": len(files),
                "LogicalDirectories": sum(1 for c in content if c["type"] in COLLECTIONS),
                "PhysicalSize": physical_dict,
            }
        return result

    def create_directory(self, lfns: dict[str, Any]) -> Bulk:
        """A new directory is a DATASET (it will hold files); its missing ancestors become CONTAINERs."""
        result = Bulk()
        dids = self.resolve(lfns, result)
        problems = self.ensure_collections(list(dids.values()), leaf_type="DATASET", leaf_may_be_container=True)
        for lfn, did in dids.items():
            if did in problems:
                result.failed[lfn] = problems[did]
            else:
                result.successful[lfn] = True
        return result

    def ensure_collections(self, leaves: list[DID], leaf_type: str,
                           leaf_may_be_container: bool = False) -> dict[DID, str]:
        """Create missing ``leaves`` (as ``leaf_type``) and their ancestors (CONTAINERs), attached to each other.

        Returns ``{leaf: reason}`` for leaves that cannot be used: an existing leaf of the wrong kind, or an
        ancestor that is a DATASET (a directory cannot hold both files and sub-directories in Rucio).
        """
        wanted: dict[DID, str] = {}
        for leaf in leaves:
            for ancestor in self.mapper.ancestors(leaf.name):
                wanted.setdefault(DID(leaf.scope, ancestor), "CONTAINER")
            wanted[leaf] = leaf_type
        existing = self.did_metadata(wanted)
        problems: dict[DID, str] = {}
        for leaf in leaves:
            chain = [DID(leaf.scope, a) for a in self.mapper.ancestors(leaf.name)] + [leaf]
            for did in chain:
                meta = existing.get(did)
                allowed = COLLECTIONS if did == leaf and leaf_may_be_container else (wanted[did],)
                if meta is not None and meta["did_type"] not in allowed:
                    problems[leaf] = (f"{self.mapper.to_lfn(did)} is a {meta['did_type']}, cannot hold "
                                      f"{'files' if did == leaf else 'sub-directories'}")
                    break
                if meta is not None and did == leaf and not leaf_may_be_container and meta.get("is_open") is False:
                    problems[leaf] = f"{self.mapper.to_lfn(did)} is closed: no file can be added to it"
                    break
        to_create = [did for did in wanted if did not in existing
                     and not any(did == leaf or did.name in self.mapper.ancestors(leaf.name) for leaf in problems)]
        if to_create:
            self._add_collections([{"scope": d.scope, "name": d.name, "type": wanted[d]} for d in to_create])
            attachments: dict[DID, list[dict]] = defaultdict(list)
            for did in to_create:
                parent = self.mapper.parent(did.name)
                if self.mapper.scope_of_directory(parent) is None:
                    attachments[DID(did.scope, parent)].append(did.as_dict())
            if attachments:
                self.client.attach_dids_to_dids(
                    [{"scope": p.scope, "name": p.name, "dids": children} for p, children in attachments.items()],
                    ignore_duplicate=True,
                )
        return problems

    # ------------------------------------------------------------------------------------------- datasets
    def dataset_files(self, lfns: dict[str, Any]) -> Bulk:
        """``{dataset or container: [file LFNs]}``, resolved recursively by Rucio."""
        from rucio.common.exception import DataIdentifierNotFound

        result = Bulk()
        for lfn, did in self.resolve(lfns, result).items():
            try:
                files = [DID(f["scope"], f["name"]) for f in self.client.list_files(did.scope, did.name)]
            except DataIdentifierNotFound:
                result.failed[lfn] = NO_SUCH_FILE
                continue
            result.successful[lfn] = sorted(self.mapper.to_lfn(f) for f in files)
        return result

    def set_dataset_open(self, lfns: dict[str, Any], is_open: bool) -> Bulk:
        """Close (freeze) or reopen datasets. A closed run dataset tells KM3DIRAC's plugins the run is complete."""
        from rucio.common.exception import DataIdentifierNotFound, RucioException

        result, dids, metadata = self.lookup(lfns)
        for lfn, did in dids.items():
            meta = metadata.get(did)
            if meta is None:
                result.failed[lfn] = NO_SUCH_FILE
            elif meta["did_type"] != "DATASET":
                result.failed[lfn] = f"{lfn} is a {meta['did_type']}, only datasets are closed or reopened"
            else:
                try:
                    if bool(meta.get("is_open")) != is_open:
                        self.client.set_status(did.scope, did.name, open=is_open)
                    result.successful[lfn] = True
                except (DataIdentifierNotFound, RucioException) as error:
                    result.failed[lfn] = f"{lfn}: {error}"
        return result

    def _add_collections(self, collections: list[dict]) -> None:
        """Create collections in one call; when another client created some meanwhile (two jobs of one run
        registering at once), create the rest one by one and take the existing ones as they are."""
        from rucio.common.exception import DataIdentifierAlreadyExists

        try:
            self.client.add_dids(collections)
        except DataIdentifierAlreadyExists:
            for collection in collections:
                try:
                    self.client.add_did(collection["scope"], collection["name"], collection["type"])
                except DataIdentifierAlreadyExists:
                    pass

    def remove_directory(self, lfns: dict[str, Any]) -> Bulk:
        """Remove empty directories (DFC semantics: a directory with content is not removed)."""
        from rucio.common.exception import DataIdentifierNotFound

        result = Bulk()
        dids = self.resolve(lfns, result)
        for lfn, did in dids.items():
            try:
                if list(self.client.list_content(did.scope, did.name)):
                    result.failed[lfn] = f"{lfn}: directory is not empty"
                    continue
                parent = self.mapper.parent(did.name)
                if self.mapper.scope_of_directory(parent) is None:
                    self.client.detach_dids(did.scope, parent, [did.as_dict()])
                self.client.set_metadata(did.scope, did.name, "lifetime", 1)
                result.successful[lfn] = True
            except DataIdentifierNotFound:
                result.successful[lfn] = True  # DFC: removing an absent directory succeeds
        return result

    # ------------------------------------------------------------------------------------------- files
    def add_files(self, lfns: dict[str, Any]) -> Bulk:
        """Register files: ``{lfn: {"Size", "Checksum", "SE", "GUID", "PFN"?, "Meta"?}}``.

        An LFN that already exists with the same size and checksum is a success (its replica at ``SE`` is added
        if missing); with a different size or checksum it is a Failed entry.
        """
        result = Bulk()
        dids = self.resolve(lfns, result)
        records = {}
        for lfn, did in dids.items():
            record, problem = self._file_record(lfn, did, lfns[lfn])
            if problem:
                result.failed[lfn] = problem
            else:
                records[lfn] = record
        existing = self.did_metadata((records[lfn]["did"] for lfn in records), include_removed=True)
        visible = self.did_metadata(did for did in existing)
        new_records = {}
        for lfn, record in records.items():
            meta = existing.get(record["did"])
            if meta is None:
                new_records[lfn] = record
            elif meta["did_type"] != FILE:
                result.failed[lfn] = f"{lfn} exists as a directory ({meta['did_type']})"
            elif meta["bytes"] != record["bytes"] or (
                    record["adler32"] and normalise_adler32(meta["adler32"] or "") != record["adler32"]):
                result.failed[lfn] = (f"{lfn} already registered with size {meta['bytes']} and adler32 "
                                      f"{meta['adler32']}, not {record['bytes']} / {record['adler32']}")
            elif record["did"] not in visible:
                # removed through this catalog and not purged by Rucio yet: registered again, same content
                record["revive"] = True
                new_records[lfn] = record
        already = {lfn: records[lfn] for lfn in records if lfn not in new_records and lfn not in result.failed}
        self._register(new_records, result)
        self._add_replicas_of_existing(already, result)
        return result

    def _file_record(self, lfn: str, did: DID, info: Any) -> tuple[dict, str | None]:
        if not isinstance(info, dict):
            return {}, f"{lfn}: file information must be a dict with Size, Checksum and SE"
        size = info.get("Size")
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return {}, f"{lfn}: invalid Size {info.get('Size')!r}"
        se = info.get("SE")
        if not isinstance(se, str) or not se:
            return {}, f"{lfn}: missing SE"
        checksum = info.get("Checksum") or ""
        checksum_type = str(info.get("ChecksumType") or "AD").upper()
        if checksum and checksum_type not in ("AD", "ADLER32"):
            return {}, f"{lfn}: checksum type {checksum_type} not supported, Rucio needs adler32"
        if checksum:
            checksum = normalise_adler32(str(checksum))
            if len(checksum) != 8 or any(c not in "0123456789abcdef" for c in checksum):
                return {}, f"{lfn}: invalid adler32 checksum {info.get('Checksum')!r}"
        meta = info.get("Meta") or info.get("Metadata") or {}
        if not isinstance(meta, dict):
            return {}, f"{lfn}: Meta must be a dict"
        record = {"did": did, "bytes": size, "adler32": checksum, "rse": se, "meta": dict(meta)}
        guid = info.get("GUID")
        if guid:
            record["meta"]["guid"] = str(guid).replace("-", "").lower()
        return record, None

    def _register(self, records: dict[str, dict], result: Bulk) -> None:
        if not records:
            return
        leaves = {DID(r["did"].scope, self.mapper.parent(r["did"].name)) for r in records.values()}
        problems = self.ensure_collections(sorted(leaves, key=str), leaf_type="DATASET")
        by_rse: dict[str, list[str]] = defaultdict(list)
        for lfn, record in records.items():
            dataset = DID(record["did"].scope, self.mapper.parent(record["did"].name))
            if dataset in problems:
                result.failed[lfn] = problems[dataset]
            else:
                by_rse[record["rse"]].append(lfn)
        for rse, rse_lfns in by_rse.items():
            for chunk in chunks(rse_lfns):
                self._register_chunk(rse, {lfn: records[lfn] for lfn in chunk}, result)

    def _register_chunk(self, rse: str, records: dict[str, dict], result: Bulk) -> None:
        from rucio.common.exception import RucioException

        files = []
        for record in records.values():
            entry = {**record["did"].as_dict(), "bytes": record["bytes"]}
            if record["adler32"]:
                entry["adler32"] = record["adler32"]
            if record["meta"]:
                entry["meta"] = record["meta"]  # set by the server in the same transaction as the replica
            files.append(entry)
        try:
            self.client.add_replicas(rse, files)
        except RucioException as error:
            result.fail(records, f"registration of the replica at {rse} failed: {error}")
            return
        attachments: dict[DID, list[dict]] = defaultdict(list)
        for record in records.values():
            attachments[DID(record["did"].scope, self.mapper.parent(record["did"].name))].append(
                record["did"].as_dict())
        try:
            self.client.attach_dids_to_dids(
                [{"scope": d.scope, "name": d.name, "dids": children} for d, children in attachments.items()],
                ignore_duplicate=True,
            )
            self._pin(rse, attachments)
            revived = [{**r["did"].as_dict(), "meta": {"lifetime": None}} for r in records.values() if r.get("revive")]
            if revived:
                self.client.set_dids_metadata_bulk(revived)
                # its old replica record may still be there, marked UNAVAILABLE by the removal: the bytes are back
                self.client.update_replicas_states(rse, [{"scope": r["scope"], "name": r["name"], "state": "A"}
                                                         for r in revived])
        except RucioException as error:
            self._undo_registration(rse, files, attachments)
            result.fail(records, f"registration at {rse} failed and was rolled back: {error}")
            return
        for lfn in records:
            result.successful[lfn] = True

    def _undo_registration(self, rse: str, files: list[dict], attachments: dict[DID, list[dict]]) -> None:
        """Take back a chunk whose attachment or pinning failed: detached, replicas unavailable, DIDs expired.

        Rucio lets no account delete replica records or file DIDs; this is what removeFile does, so the files are
        invisible to the catalog at once and Rucio's daemons purge them.
        """
        from rucio.common.exception import DataIdentifierNotFound, RucioException

        dids = [{"scope": f["scope"], "name": f["name"]} for f in files]
        try:
            for dataset, children in attachments.items():
                try:
                    self.client.detach_dids(dataset.scope, dataset.name, children)
                except DataIdentifierNotFound:
                    pass
            self.client.update_replicas_states(rse, [{**did, "state": "U"} for did in dids])
            self.client.set_dids_metadata_bulk([{**did, "meta": {"lifetime": 0}} for did in dids])
        except RucioException as error:
            log.error("could not roll back the registration at %s of %d files: %s", rse, len(dids), error)

    def _pin(self, rse: str, attachments: dict[DID, list[dict]]) -> None:
        """One rule per (dataset, RSE): on the dataset if it has no rule yet, else per file off its home RSE."""
        loose_files: list[dict] = []
        for dataset, children in attachments.items():
            rules = list(self.client.list_did_rules(dataset.scope, dataset.name))
            if any(rule["rse_expression"] == rse for rule in rules):
                continue
            if not rules:
                self._add_rules([dataset.as_dict()], rse)
            else:
                loose_files.extend(children)
        if loose_files:
            self._add_rules(loose_files, rse)

    def _add_rules(self, dids: list[dict], rse: str) -> None:
        """Pinning rules at ``rse``, in one call; rules another client made meanwhile (jobs registering into one
        dataset at once) are taken as they are."""
        from rucio.common.exception import DuplicateRule

        try:
            self.client.add_replication_rule(dids, 1, rse, grouping="NONE", ignore_availability=True)
        except DuplicateRule:
            for did in dids:
                try:
                    self.client.add_replication_rule([did], 1, rse, grouping="NONE", ignore_availability=True)
                except DuplicateRule:
                    pass

    def _add_replicas_of_existing(self, records: dict[str, dict], result: Bulk) -> None:
        if not records:
            return
        current = self.replicas(dict.fromkeys(records), all_status=False).successful
        missing = {lfn: rec for lfn, rec in records.items() if rec["rse"] not in current.get(lfn, {})}
        for lfn in records:
            if lfn not in missing:
                result.successful[lfn] = True
        self._add_replica_records(missing, result)

    def add_replicas(self, lfns: dict[str, Any]) -> Bulk:
        """``{lfn: {"SE": se, "PFN"?}}``: register a replica of an existing file at ``SE`` and pin it there."""
        result, files, metadata = self._files_only(lfns)
        records = {}
        for lfn, did in files.items():
            info = lfns[lfn]
            se = info.get("SE") if isinstance(info, dict) else None
            if not isinstance(se, str) or not se:
                result.failed[lfn] = f"{lfn}: missing SE"
                continue
            meta = metadata[did]
            records[lfn] = {"did": did, "bytes": meta["bytes"], "adler32": meta["adler32"], "rse": se, "meta": {}}
        self._add_replica_records(records, result)
        return result

    def _add_replica_records(self, records: dict[str, dict], result: Bulk) -> None:

        by_rse: dict[str, list[str]] = defaultdict(list)
        for lfn, record in records.items():
            by_rse[record["rse"]].append(lfn)
        for rse, rse_lfns in by_rse.items():
            def register(chunk: list[str], rse: str = rse) -> None:
                self.client.add_replicas(rse, [{**records[lfn]["did"].as_dict(), "bytes": records[lfn]["bytes"],
                                                "adler32": records[lfn]["adler32"]} for lfn in chunk])
                self._add_rules([records[lfn]["did"].as_dict() for lfn in chunk], rse)

            self._per_chunk(rse_lfns, register, f"replica registration at {rse} failed", result)

    @staticmethod
    def _per_chunk(lfns: list[str], action: Callable[[list[str]], None], failure: str, result: Bulk) -> None:
        """``action`` on chunks of ``lfns``: each chunk's LFNs succeed together or fail together, naming why."""
        from rucio.common.exception import RucioException

        for chunk in chunks(lfns):
            try:
                action(chunk)
            except RucioException as error:
                result.fail(chunk, f"{failure}: {error}")
                continue
            for lfn in chunk:
                result.successful[lfn] = True

    def remove_replicas(self, lfns: dict[str, Any]) -> Bulk:
        """``{lfn: {"SE": se}}``: forget the replica at that RSE only (its rules there included)."""
        result, files, _ = self._files_only(lfns)
        by_rse: dict[str, list[str]] = defaultdict(list)
        for lfn in files:
            info = lfns[lfn]
            se = info.get("SE") if isinstance(info, dict) else info
            if not isinstance(se, str) or not se:
                result.failed[lfn] = f"{lfn}: missing SE"
            else:
                by_rse[se].append(lfn)
        current = self.replicas(dict.fromkeys(files), all_status=True).successful
        for rse, rse_lfns in by_rse.items():
            present = [lfn for lfn in rse_lfns if rse in current.get(lfn, {})]
            for lfn in rse_lfns:
                if lfn not in present:
                    result.successful[lfn] = True  # DFC: removing an absent replica succeeds
            self._drop_replicas(rse, {lfn: files[lfn] for lfn in present}, result)
        return result

    def _drop_replicas(self, rse: str, files: dict[str, DID], result: Bulk) -> None:
        """Forget the replicas at ``rse``: the files' own rules there go, the replicas are marked UNAVAILABLE.

        Rucio lets no account delete replica records (deletion is the reaper's job): DIRAC has removed the bytes
        already (DataManager removes from the StorageElement before the catalog), so the catalog stops
        advertising the replica, and Rucio's daemons clean the record.
        """
        def drop(chunk: list[str]) -> None:
            for lfn in chunk:
                did = files[lfn]
                for rule in self.client.list_did_rules(did.scope, did.name):
                    if rule["rse_expression"] == rse:
                        self.client.delete_replication_rule(rule["id"], purge_replicas=False)
            self.client.update_replicas_states(rse, [{**files[lfn].as_dict(), "state": "U"} for lfn in chunk])

        self._per_chunk(list(files), drop, f"removal of the replica at {rse} failed", result)

    def remove_files(self, lfns: dict[str, Any]) -> Bulk:
        """Remove files from the catalog: rules, replicas and the attachment to their directory."""
        from rucio.common.exception import DataIdentifierNotFound, RucioException

        result, files, _ = self._files_only(lfns)
        for lfn in [lfn for lfn, reason in result.failed.items() if reason == NO_SUCH_FILE]:
            del result.failed[lfn]
            result.successful[lfn] = True  # DFC: removing an absent file succeeds
        current = self.replicas(dict.fromkeys(files), all_status=True).successful
        by_rse: dict[str, dict[str, DID]] = defaultdict(dict)
        for lfn, did in files.items():
            for rse in current.get(lfn, {}):
                by_rse[rse][lfn] = did
        replica_result = Bulk()
        for rse, rse_files in by_rse.items():
            self._drop_replicas(rse, rse_files, replica_result)
        for lfn, did in files.items():
            if lfn in replica_result.failed:
                result.failed[lfn] = replica_result.failed[lfn]
                continue
            parent = self.mapper.parent(did.name)
            try:
                if self.mapper.scope_of_directory(parent) is None:
                    self.client.detach_dids(did.scope, parent, [did.as_dict()])
            except DataIdentifierNotFound:
                pass
            try:
                # expired: invisible to this catalog at once, purged by Rucio's undertaker
                self.client.set_metadata(did.scope, did.name, "lifetime", 0)
            except RucioException as error:
                result.failed[lfn] = f"{lfn}: removal failed after its replicas were dropped: {error}"
                continue
            result.successful[lfn] = True
        return result
