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

from KM3DIRAC.core.catalog_directories import FILES, SUBDIRS, CatalogDirectories, directory_name
from KM3DIRAC.core.catalog_reads import FILE, NO_SUCH_FILE, Bulk, chunks
from KM3DIRAC.core.checksums import normalise_adler32
from KM3DIRAC.core.did_validation import guid_problem, metadata_problem, missing_rse_message, rse_cache_for
from KM3DIRAC.core.lfn import DID

log = logging.getLogger(__name__)


class CatalogWrites(CatalogDirectories):
    # ------------------------------------------------------------------------------------------- directories
    def create_directory(self, lfns: dict[str, Any]) -> Bulk:
        """A new directory is a DATASET (it will hold files); its missing ancestors become CONTAINERs. An existing
        directory, whatever its collections, is a success (DFC)."""
        result = Bulk()
        dids = self.resolve(lfns, result)
        states = self.directory_dids(dids.values())
        new = {did: FILES for did in dids.values() if not states[DID(did.scope, directory_name(did.name))].exists}
        _, problems = self.ensure_directories(new)
        for lfn, did in dids.items():
            state = states[DID(did.scope, directory_name(did.name))]
            if state.is_file:
                result.failed[lfn] = f"{lfn} is a file"
            elif DID(did.scope, directory_name(did.name)) in problems:
                result.failed[lfn] = problems[DID(did.scope, directory_name(did.name))]
            else:
                result.successful[lfn] = True
        return result

    # ------------------------------------------------------------------------------------------- datasets
    def set_dataset_open(self, lfns: dict[str, Any], is_open: bool) -> Bulk:
        """Close (freeze) or reopen the dataset holding a directory's files. A closed run dataset tells KM3DIRAC's
        plugins the run is complete."""
        from rucio.common.exception import DataIdentifierNotFound, RucioException

        result = Bulk()
        for lfn, state in self._existing_directories(lfns, result).items():
            holder, row = state.holder(FILES), state.holder_row(FILES)
            if holder is None or row is None:
                result.failed[lfn] = (f"{lfn} holds no files (a {state.rows()[0][1]['did_type']}), only datasets "
                                      "are closed or reopened")
                continue
            try:
                if (row.get("is_open") is not False) != is_open:
                    self.client.set_status(holder.scope, holder.name, open=is_open)
                result.successful[lfn] = True
            except (DataIdentifierNotFound, RucioException) as error:
                result.failed[lfn] = f"{lfn}: {error}"
        return result

    def remove_directory(self, lfns: dict[str, Any]) -> Bulk:
        """Remove empty directories (DFC semantics: a directory with content is not removed, an absent one is a
        success). Both collections of the directory go: detached and expired for Rucio's undertaker."""
        from rucio.common.exception import DataIdentifierNotFound

        result = Bulk()
        dids = self.resolve(lfns, result)
        states = self.directory_dids(dids.values())
        parents = self.directory_dids(p for p in (self._parent_directory(DID(d.scope, directory_name(d.name)))
                                                  for d in dids.values()) if p is not None)
        for lfn, did in dids.items():
            state = states[DID(did.scope, directory_name(did.name))]
            if state.is_file:
                result.failed[lfn] = f"{lfn} is a file, not a directory"
                continue
            if not state.exists:
                result.successful[lfn] = True
                continue
            files, subdirs = self.directory_entries(state.did, state)
            if files or subdirs:
                result.failed[lfn] = f"{lfn}: directory is not empty"
                continue
            parent = self._parent_directory(state.did)
            parent_holder = parents[parent].holder(SUBDIRS) if parent in parents else None
            for collection, _ in state.rows():
                container = parent_holder
                if collection != state.did and state.primary and state.primary["did_type"] == "CONTAINER":
                    container = state.did
                if container is not None:
                    try:
                        self.client.detach_dids(container.scope, container.name, [collection.as_dict()])
                    except DataIdentifierNotFound:
                        pass
            self.client.set_dids_metadata_bulk([{**collection.as_dict(), "meta": {"lifetime": 1}}
                                                for collection, _ in state.rows()])
            result.successful[lfn] = True
        return result

    # ------------------------------------------------------------------------------------------- files
    def add_files(self, lfns: dict[str, Any]) -> Bulk:
        """Register files: ``{lfn: {"Size", "Checksum", "SE", "GUID", "PFN"?, "Meta"?}}``.

        An LFN that already exists with the same size and checksum is a success (its replica at ``SE`` is added
        if missing); with a different size or checksum it is a Failed entry.
        """
        result = Bulk()
        dids = self.resolve_for_write(lfns, result)
        records = {}
        for lfn, did in dids.items():
            record, problem = self._file_record(lfn, did, lfns[lfn])
            if problem:
                result.failed[lfn] = problem
            else:
                records[lfn] = record
        self._drop_unknown_rses(records, result)
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

    def _drop_unknown_rses(self, records: dict[str, dict], result: Bulk) -> None:
        """Records whose SE is no Rucio RSE become Failed entries naming the remedy (checked before any write)."""
        known = rse_cache_for(self.client).existing(record["rse"] for record in records.values())
        for lfn in [lfn for lfn, record in records.items() if record["rse"] not in known]:
            result.failed[lfn] = missing_rse_message(lfn, records.pop(lfn)["rse"])

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
        problem = metadata_problem(lfn, meta)
        if problem:
            return {}, problem
        file_meta = dict(meta)
        guid = info.get("GUID")
        if guid:
            problem = guid_problem(lfn, guid)
            if problem:
                return {}, problem
            file_meta["guid"] = str(guid).strip("{}").replace("-", "").lower()
        return {"did": did, "bytes": size, "adler32": checksum, "rse": se, "meta": file_meta}, None

    def _register(self, records: dict[str, dict], result: Bulk) -> None:
        if not records:
            return
        directories = {DID(r["did"].scope, self.mapper.parent(r["did"].name)) for r in records.values()}
        holders, problems = self.ensure_directories(dict.fromkeys(sorted(directories, key=str), FILES))
        by_rse: dict[str, list[str]] = defaultdict(list)
        for lfn, record in records.items():
            directory = DID(record["did"].scope, self.mapper.parent(record["did"].name))
            if directory in problems:
                result.failed[lfn] = problems[directory]
            else:
                record["dataset"] = holders[directory]  # the directory's own dataset (see catalog_directories)
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
            attachments[record["dataset"]].append(record["did"].as_dict())
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
        self._drop_unknown_rses(records, result)
        self._add_replica_records(records, result)
        return result

    def _add_replica_records(self, records: dict[str, dict], result: Bulk) -> None:

        by_rse: dict[str, list[str]] = defaultdict(list)
        for lfn, record in records.items():
            by_rse[record["rse"]].append(lfn)
        for rse, rse_lfns in by_rse.items():
            def register(chunk: list[str], rse: str = rse) -> None:
                awaited = self._copies_awaited(rse, [records[lfn]["did"] for lfn in chunk])
                new = [lfn for lfn in chunk if records[lfn]["did"] not in awaited]
                if awaited:
                    # a rule asked for these copies (its locks wait, the replicas are COPYING): now they are there.
                    # AVAILABLE is what Rucio's conveyor-finisher sets after a transfer: the locks become OK and
                    # the rule OK once all are; the rule that asked pins them, no other rule is added
                    self.client.update_replicas_states(rse, [{**did.as_dict(), "state": "A"} for did in awaited])
                if new:
                    self.client.add_replicas(rse, [{**records[lfn]["did"].as_dict(), "bytes": records[lfn]["bytes"],
                                                    "adler32": records[lfn]["adler32"]} for lfn in new])
                    self._add_rules([records[lfn]["did"].as_dict() for lfn in new], rse)

            self._per_chunk(rse_lfns, register, f"replica registration at {rse} failed", result)

    def _copies_awaited(self, rse: str, dids: list[DID]) -> set[DID]:
        """The files among ``dids`` whose replica at ``rse`` exists in state COPYING (a rule waits for it)."""
        replicas = self.client.list_replicas([did.as_dict() for did in dids], all_states=True,
                                             rse_expression=rse, ignore_availability=True)
        return {DID(replica["scope"], replica["name"]) for replica in replicas
                if (replica.get("states") or {}).get(rse) == "COPYING"}

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
        holders = self.files_holders(DID(did.scope, self.mapper.parent(did.name)) for did in files.values())
        for lfn, did in files.items():
            if lfn in replica_result.failed:
                result.failed[lfn] = replica_result.failed[lfn]
                continue
            holder = holders.get(DID(did.scope, self.mapper.parent(did.name)))
            try:
                if holder is not None:
                    self.client.detach_dids(holder.scope, holder.name, [did.as_dict()])
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
