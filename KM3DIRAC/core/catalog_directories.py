"""DFC directories on Rucio: a directory may hold files and sub-directories at once.

Rucio datasets hold only files and containers only collections. A directory ``D`` below the scope level is
therefore one or two Rucio collections:

- the DID named ``D``, of the type its first content needed: a DATASET when it first held files (what KM3DIRAC
  and Rucio's DIRAC endpoint always made of a file's parent), a CONTAINER when it first held sub-directories;
- only when ``D`` must also hold the other kind, its *companion* ``D/`` (``D`` with a trailing slash, a name no
  LFN can have: DIRAC normalises LFNs without it) of the other type: the DATASET ``D/`` holding D's own files,
  attached inside the CONTAINER ``D``; or the CONTAINER ``D/`` holding D's sub-directories, attached beside the
  DATASET ``D`` in D's parent.

So every file stays in a dataset (one rule per dataset and RSE pins it), every directory stays reachable from its
parent by Rucio's own ``list_content`` / ``list_files`` (a rule on a container covers the whole tree below it),
and data registered before (by KM3DIRAC or Rucio's DIRAC endpoint: file parents DATASETs, ancestors CONTAINERs)
is read as it is. The scope-level directory ``/<vo>/<scope>`` is the scope: its sub-directories are found by
name, files directly in it live in the DATASET ``/<vo>/<scope>`` (Rucio's DIRAC endpoint's choice too).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from KM3DIRAC.core.catalog_reads import COLLECTIONS, FILE, NO_SUCH_FILE, Bulk, CatalogReads, chunks
from KM3DIRAC.core.errors import InvalidLFNError
from KM3DIRAC.core.lfn import DID

log = logging.getLogger(__name__)

FILES = "files"
SUBDIRS = "subdirs"
HOLDER_TYPE = {FILES: "DATASET", SUBDIRS: "CONTAINER"}
ENSURE_ROUNDS = 4  # creation rounds when other clients create the same directories at the same time


def companion_of(did: DID) -> DID:
    return DID(did.scope, did.name.rstrip("/") + "/")


def directory_name(name: str) -> str:
    """The directory a collection stands for (a companion ``D/`` stands for ``D``)."""
    return name.rstrip("/") or name


@dataclass
class DirectoryDIDs:
    """The Rucio collections of one directory: ``primary`` (named D) and ``companion`` (``D/``) metadata rows,
    None when absent."""

    did: DID
    primary: dict | None = None
    companion: dict | None = None

    @property
    def exists(self) -> bool:
        return any(row is not None and row["did_type"] in COLLECTIONS for row in (self.primary, self.companion))

    @property
    def is_file(self) -> bool:
        return self.primary is not None and self.primary["did_type"] == FILE

    def rows(self) -> list[tuple[DID, dict]]:
        pairs = [(self.did, self.primary), (companion_of(self.did), self.companion)]
        return [(did, row) for did, row in pairs if row is not None and row["did_type"] in COLLECTIONS]

    def holder(self, role: str) -> DID | None:
        """The existing collection holding this directory's files (``FILES``) or sub-directories (``SUBDIRS``)."""
        for did, row in self.rows():
            if row["did_type"] == HOLDER_TYPE[role]:
                return did
        return None

    def holder_row(self, role: str) -> dict | None:
        for _, row in self.rows():
            if row["did_type"] == HOLDER_TYPE[role]:
                return row
        return None


class CatalogDirectories(CatalogReads):
    """Directory reads and the creation of the collections a directory needs (see the module docstring)."""

    # ------------------------------------------------------------------------------------------- state
    def directory_dids(self, directories: Iterable[DID], include_removed: bool = False) -> dict[DID, DirectoryDIDs]:
        """The collections of each directory, in one bulk lookup (``D`` and ``D/`` together)."""
        wanted = list(dict.fromkeys(DID(d.scope, directory_name(d.name)) for d in directories))
        rows = self.did_metadata([x for d in wanted for x in (d, companion_of(d))], include_removed=include_removed)
        return {d: DirectoryDIDs(d, rows.get(d), rows.get(companion_of(d))) for d in wanted}

    def files_holders(self, directories: Iterable[DID]) -> dict[DID, DID | None]:
        """The dataset holding each directory's files (None: the directory holds no files)."""
        return {d: state.holder(FILES) for d, state in self.directory_dids(directories).items()}

    def directory_open_states(self, lfns: Iterable[str]) -> dict[str, bool]:
        """``is_open`` of the dataset holding each directory's files; directories holding no files are absent."""
        dids = {}
        for lfn in lfns:
            try:
                dids[lfn] = self.mapper.to_did(lfn)
            except InvalidLFNError:
                continue  # the VO-level directory holds no files
        states = self.directory_dids(dids.values())
        result = {}
        for lfn, did in dids.items():
            row = states[DID(did.scope, directory_name(did.name))].holder_row(FILES)
            if row is not None:
                result[lfn] = row.get("is_open") is not False
        return result

    def _is_scope_level(self, did: DID) -> bool:
        return self.mapper.scope_of_directory(did.name) is not None

    def _parent_directory(self, did: DID) -> DID | None:
        """The parent directory of a directory below the scope level; None at the scope level."""
        parent = self.mapper.parent(did.name)
        if self._is_scope_level(did) or self.mapper.scope_of_directory(parent) is not None:
            return None
        return DID(did.scope, parent)

    # ------------------------------------------------------------------------------------------- creation
    def ensure_directories(self, needs: dict[DID, str], meta: dict[DID, dict] | None = None,
                           ) -> tuple[dict[DID, DID], dict[DID, str]]:
        """Make sure each directory can hold what ``needs`` says (``FILES`` or ``SUBDIRS``), creating the missing
        collections (and ancestors) and attaching them. Returns ``({directory: holder of that role},
        {directory: problem})``. ``meta``: DID metadata of the collection holding a directory's files, set in
        the call that creates it (Rucio's transmogrifier sees a new collection with its metadata, never without).

        Safe against other clients doing the same at once: a creation that loses a race is read again, and the
        type the other client chose is used (its companion is created when the role needs the other type)."""
        wanted: dict[DID, set[str]] = defaultdict(set)
        meta_of: dict[DID, dict] = {}
        for directory, role in needs.items():
            if meta and directory in meta:
                meta_of[DID(directory.scope, directory_name(directory.name))] = meta[directory]
            directory = DID(directory.scope, directory_name(directory.name))
            wanted[directory].add(role)
            for ancestor in self.mapper.ancestors(directory.name):
                wanted[DID(directory.scope, ancestor)].add(SUBDIRS)
        touched: dict[DID, str] = {}  # collections created or revived here (and their types): they get attached
        problems: dict[DID, str] = {}
        states: dict[DID, DirectoryDIDs] = {}
        created_meta: dict[DID, dict] = {}
        for _ in range(ENSURE_ROUNDS):
            states = self.directory_dids(wanted, include_removed=True)
            problems = {}
            to_create: dict[DID, str] = {}
            to_revive: list[DID] = []
            for directory, roles in wanted.items():
                state = states[directory]
                for role in sorted(roles):  # FILES first: a new directory for both is the DATASET D and D/
                    if role == SUBDIRS and self._is_scope_level(directory):
                        continue  # the scope itself holds its top directories
                    plan = self._plan_holder(state, role)
                    if isinstance(plan, str):
                        problems[directory] = plan
                    elif plan[1] == "create":
                        target = plan[0]
                        if to_create.get(target, HOLDER_TYPE[role]) != HOLDER_TYPE[role]:
                            target = companion_of(state.did)
                        to_create[target] = HOLDER_TYPE[role]
                        if role == FILES and directory in meta_of:
                            created_meta[target] = meta_of[directory]
                    elif plan[1] == "revive":
                        to_revive.append(plan[0])
                        touched[plan[0]] = HOLDER_TYPE[role]
            if not to_create and not to_revive:
                break
            if to_create:
                created = self._add_collections([{**did.as_dict(), "type": kind,
                                                  **({"meta": created_meta[did]} if did in created_meta else {})}
                                                 for did, kind in sorted(to_create.items(), key=lambda i: str(i[0]))])
                touched.update({did: kind for did, kind in to_create.items() if did in created})
            if to_revive:
                self.client.set_dids_metadata_bulk([{**did.as_dict(), "meta": {"lifetime": None}}
                                                    for did in to_revive])
        else:
            states = self.directory_dids(wanted)
        self._attach_collections(touched, states)
        holders: dict[DID, DID] = {}
        result_problems: dict[DID, str] = {}
        for directory, role in needs.items():
            directory = DID(directory.scope, directory_name(directory.name))
            chain = [DID(directory.scope, a) for a in self.mapper.ancestors(directory.name)] + [directory]
            problem = next((problems[d] for d in chain if d in problems), None)
            holder = states[directory].holder(role) if directory in states else None
            row = states[directory].holder_row(role) if directory in states else None
            if problem is None and holder is None:
                problem = f"{self.mapper.to_lfn(directory)}: could not be created (other clients kept changing it)"
            if problem is None and role == FILES and row is not None and row.get("is_open") is False:
                problem = f"{self.mapper.to_lfn(directory)} is closed: no file can be added to it"
            if problem is not None:
                result_problems[directory] = problem
            else:
                holders[directory] = holder  # type: ignore[assignment]
        return holders, result_problems

    def _plan_holder(self, state: DirectoryDIDs, role: str) -> tuple[DID, str] | str:
        """(collection, "use" | "create" | "revive") for one role of one directory, or the problem."""
        want = HOLDER_TYPE[role]
        lfn = self.mapper.to_lfn(state.did)
        if state.is_file:
            return f"{lfn} is a file, it cannot hold {'files' if role == FILES else 'sub-directories'}"
        for did, row in ((state.did, state.primary), (companion_of(state.did), state.companion)):
            if row is not None and row["did_type"] == want:
                return (did, "revive") if self._expired(row) else (did, "use")
        if state.primary is None:
            return state.did, "create"
        if state.companion is None:
            return companion_of(state.did), "create"
        return f"{lfn}: its collections {state.did.name} and {state.did.name}/ are both {state.primary['did_type']}"

    @staticmethod
    def _expired(row: dict) -> bool:
        import datetime

        from KM3DIRAC.core.catalog_reads import REMOVED_MARGIN

        expired_at = row.get("expired_at")
        horizon = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + REMOVED_MARGIN
        return expired_at is not None and expired_at <= horizon

    def _attach_collections(self, collections: dict[DID, str], states: dict[DID, DirectoryDIDs]) -> None:
        """Attach new collections where the module docstring says: a companion DATASET inside its CONTAINER,
        everything else in the parent's sub-directory holder (nothing at the scope level). Rucio refuses datasets
        and containers in one attachment to a container, so each parent gets one entry per type."""
        attachments: dict[tuple[DID, str], list[dict]] = defaultdict(list)
        for collection, kind in collections.items():
            directory = DID(collection.scope, directory_name(collection.name))
            state = states.get(directory)
            is_companion = collection.name.endswith("/")
            if is_companion and state is not None and state.primary is not None \
                    and state.primary["did_type"] == "CONTAINER":
                attachments[(directory, kind)].append(collection.as_dict())
                continue
            parent = self._parent_directory(directory)
            if parent is None:
                continue
            parent_holder = states[parent].holder(SUBDIRS) if parent in states else None
            if parent_holder is None:
                log.warning("%s: its parent %s has no container; left unattached", collection, parent)
                continue
            attachments[(parent_holder, kind)].append(collection.as_dict())
        if not attachments:
            return
        from rucio.common.exception import RucioException

        entries = [{"scope": p.scope, "name": p.name, "dids": children} for (p, _), children in attachments.items()]
        try:
            self.client.attach_dids_to_dids(entries, ignore_duplicate=True)
        except RucioException:
            # a revived collection attached again by another client at the same moment: one by one, and what is
            # attached meanwhile is taken as it is
            for entry in entries:
                for child in entry["dids"]:
                    try:
                        self.client.attach_dids_to_dids([{**entry, "dids": [child]}], ignore_duplicate=True)
                    except RucioException as error:
                        if "duplicate" not in str(error).lower():
                            raise

    def _add_collections(self, collections: list[dict]) -> set[DID]:
        """Create collections in one call; when another client created some meanwhile (two jobs of one run
        registering at once), create the rest one by one and take the existing ones as they are. Returns the
        collections this call created (the creator attaches them). Sorted by name, so that concurrent creations
        lock in one order."""
        from rucio.common.exception import DataIdentifierAlreadyExists, RucioException

        try:
            self.client.add_dids(collections)
            return {DID(c["scope"], c["name"]) for c in collections}
        except (DataIdentifierAlreadyExists, RucioException) as error:
            if not isinstance(error, DataIdentifierAlreadyExists) and "deadlock" not in str(error).lower():
                raise
            created = set()
            for collection in collections:
                try:
                    self.client.add_did(collection["scope"], collection["name"], collection["type"],
                                        meta=collection.get("meta"))
                    created.add(DID(collection["scope"], collection["name"]))
                except DataIdentifierAlreadyExists:
                    pass
            return created

    # ------------------------------------------------------------------------------------------- reads
    def _content(self, holder: DID | None) -> list[dict]:
        from rucio.common.exception import DataIdentifierNotFound

        if holder is None:
            return []
        try:
            return list(self.client.list_content(holder.scope, holder.name))
        except DataIdentifierNotFound:
            return []

    def directory_entries(self, directory: DID, state: DirectoryDIDs | None = None) -> tuple[list[DID], list[str]]:
        """(file DIDs directly in the directory, LFNs of its direct sub-directories)."""
        files_holder: DID | None
        if self._is_scope_level(directory):
            names = self._list_dids(directory.scope, [{"name": f"{directory.name}/*"}], "collection")
            subdirs = {directory_name(n) for n in names if self.mapper.parent(directory_name(n)) == directory.name}
            files_holder = DID(directory.scope, directory.name)
        else:
            state = state or self.directory_dids([directory])[directory]
            files_holder = state.holder(FILES)
            own = {directory.name, companion_of(directory).name}
            subdirs = {directory_name(child["name"]) for child in self._content(state.holder(SUBDIRS))
                       if child["type"] in COLLECTIONS and child["name"] not in own}
        files = [DID(c["scope"], c["name"]) for c in self._content(files_holder) if c["type"] == FILE]
        return files, sorted(self.mapper.to_lfn(DID(directory.scope, name)) for name in subdirs)

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
                continue
            try:
                did = self.mapper.to_did(path)
            except InvalidLFNError as error:
                result.failed[lfn] = str(error)
                continue
            if self._is_scope_level(did):
                if did.scope not in set(self.client.list_scopes()):
                    result.failed[lfn] = NO_SUCH_FILE
                    continue
                files, subdirs = self.directory_entries(did)
            else:
                state = self.directory_dids([did])[did]
                if not state.exists:
                    result.failed[lfn] = f"{lfn} is a file, not a directory" if state.is_file else NO_SUCH_FILE
                    continue
                files, subdirs = self.directory_entries(did, state)
            metadata = self.did_metadata(files)
            file_meta = {self.mapper.to_lfn(d): self._dirac_file_metadata(d, metadata[d]) for d in files
                         if d in metadata}
            result.successful[lfn] = self._listing(sorted(file_meta), subdirs, file_meta)
        return result

    @staticmethod
    def _listing(files: list[str], dirs: list[str], file_meta: dict[str, dict]) -> dict:
        return {
            "Files": {f: {"MetaData": file_meta.get(f, {})} for f in files},
            "SubDirs": dict.fromkeys(dirs, True),
            "Links": {},
            "Datasets": {},
        }

    def is_directory(self, lfns: dict[str, Any]) -> Bulk:
        result = Bulk()
        scopes = None
        collection_lfns = {}
        for lfn in lfns:
            if isinstance(lfn, str) and self.mapper.is_root(lfn):
                result.successful[lfn] = True
            elif isinstance(lfn, str) and self.mapper.scope_of_directory(lfn) is not None:
                scopes = scopes if scopes is not None else set(self.client.list_scopes())
                result.successful[lfn] = self.mapper.scope_of_directory(lfn) in scopes
            else:
                collection_lfns[lfn] = lfns[lfn]
        dids = self.resolve(collection_lfns, result)
        states = self.directory_dids(dids.values())
        for lfn, did in dids.items():
            result.successful[lfn] = states[DID(did.scope, directory_name(did.name))].exists
        return result

    def _existing_directories(self, lfns: dict[str, Any], result: Bulk) -> dict[str, DirectoryDIDs]:
        """States of the directories below the scope level among ``lfns``; the others go to ``result.failed``."""
        dids = self.resolve(lfns, result)
        states = self.directory_dids(dids.values())
        found = {}
        for lfn, did in dids.items():
            state = states[DID(did.scope, directory_name(did.name))]
            if state.exists:
                found[lfn] = state
            else:
                result.failed[lfn] = f"{lfn} is a file, not a directory" if state.is_file else NO_SUCH_FILE
        return found

    def _files_below(self, state: DirectoryDIDs) -> list[dict]:
        """Every file below a directory (recursively), each once, with its size (``list_files`` rows)."""
        from rucio.common.exception import DataIdentifierNotFound

        rows: dict[DID, dict] = {}
        for did, _ in state.rows():
            try:
                for row in self.client.list_files(did.scope, did.name):
                    rows.setdefault(DID(row["scope"], row["name"]), row)
            except DataIdentifierNotFound:
                continue
        return list(rows.values())

    def directory_size(self, lfns: dict[str, Any]) -> Bulk:
        """DFC ``getDirectorySize``: logical files and size below the directory (recursively), direct
        sub-directories, and per RSE the replicas' count and size."""
        result = Bulk()
        for lfn, state in self._existing_directories(lfns, result).items():
            files = self._files_below(state)
            _, subdirs = self.directory_entries(state.did, state)
            physical: dict[str, dict[str, int]] = defaultdict(lambda: {"Files": 0, "Size": 0})
            sizes = {DID(f["scope"], f["name"]): f.get("bytes") or 0 for f in files}
            for chunk in chunks(list(sizes)):
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
                "LogicalDirectories": len(subdirs),
                "PhysicalSize": physical_dict,
            }
        return result

    def directory_metadata(self, lfns: dict[str, Any]) -> Bulk:
        """DFC ``getDirectoryMetadata`` (what ``dirac-dms-lfn-metadata`` shows for a directory): owner, dates,
        mode, and KM3DIRAC's view of it (the Rucio collections, open or closed)."""
        result = Bulk()
        plain = {}
        for lfn in lfns:
            if isinstance(lfn, str) and (self.mapper.is_root(lfn) or self.mapper.scope_of_directory(lfn)):
                scope = self.mapper.scope_of_directory(lfn)
                if scope is not None and scope not in set(self.client.list_scopes()):
                    result.failed[lfn] = NO_SUCH_FILE
                    continue
                result.successful[lfn] = {"Mode": 0o775, "Owner": None, "OwnerGroup": None, "Status": 0,
                                          "Type": "Directory", "Scope": scope, "RucioDIDs": {}}
            else:
                plain[lfn] = lfns[lfn]
        for lfn, state in self._existing_directories(plain, result).items():
            rows = state.rows()
            first = rows[0][1]
            files_row = state.holder_row(FILES)
            result.successful[lfn] = {
                "Mode": 0o775,
                "Owner": first.get("account"),
                "OwnerGroup": first.get("account"),
                "OwnerDN": "",
                "OwnerRole": "",
                "CreationDate": min(row["created_at"] for _, row in rows),
                "ModificationDate": max(row["updated_at"] for _, row in rows),
                "Status": 0,
                "Type": "Directory",
                "Scope": state.did.scope,
                "RucioDIDs": {str(did): row["did_type"] for did, row in rows},
                "Open": None if files_row is None else files_row.get("is_open") is not False,
            }
        return result

    def directory_replicas(self, lfns: dict[str, Any], all_status: bool = False) -> Bulk:
        """DFC ``getDirectoryReplicas``: ``{directory: {lfn: {SE: PFN}}}`` for the files directly in it."""
        result = Bulk()
        for lfn, state in self._existing_directories(lfns, result).items():
            files, _ = self.directory_entries(state.did, state)
            replicas = self.replicas(dict.fromkeys(self.mapper.to_lfn(f) for f in files), all_status=all_status)
            result.successful[lfn] = replicas.successful
        return result

    def directory_dump(self, lfns: dict[str, Any]) -> Bulk:
        """DFC ``getDirectoryDump``: every file below (``{lfn: {Size, CreationDate}}``) and every sub-directory."""
        result = Bulk()
        for lfn, state in self._existing_directories(lfns, result).items():
            files = [DID(f["scope"], f["name"]) for f in self._files_below(state)]
            metadata = self.did_metadata(files)
            names = self._list_dids(state.did.scope, [{"name": f"{state.did.name}/*"}], "collection")
            subdirs = sorted({self.mapper.to_lfn(DID(state.did.scope, directory_name(n))) for n in names}
                             - {self.mapper.to_lfn(state.did)})
            result.successful[lfn] = {
                "Files": {self.mapper.to_lfn(d): {"Size": metadata[d].get("bytes"),
                                                  "CreationDate": metadata[d].get("created_at")}
                          for d in files if d in metadata},
                "SubDirs": subdirs,
            }
        return result

    def dataset_files(self, lfns: dict[str, Any]) -> Bulk:
        """``{directory (dataset or container): [file LFNs below it]}``, resolved recursively by Rucio."""
        result = Bulk()
        for lfn, state in self._existing_directories(lfns, result).items():
            result.successful[lfn] = sorted(self.mapper.to_lfn(DID(f["scope"], f["name"]))
                                            for f in self._files_below(state))
        return result
