"""The Rucio file catalog in DIRAC's terms: :class:`RucioCatalog` = reads + writes + DFC-compatible metadata.

User metadata lives in Rucio DID metadata: keys Rucio keeps in DID columns (``run_number``, ``events``,
``datatype``, ...) go there, every other key to the JSON plugin (PostgreSQL). Queries are split per plugin
(:mod:`KM3DIRAC.core.metadata_query`) and their results intersected, with one server call per scope and plugin.
"""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from KM3DIRAC.core.catalog_directories import directory_name
from KM3DIRAC.core.catalog_provenance import CatalogProvenance
from KM3DIRAC.core.catalog_reads import COLLECTIONS, FILE, NO_SUCH_FILE, Bulk, chunks
from KM3DIRAC.core.catalog_replica_status import CatalogReplicaStatus
from KM3DIRAC.core.errors import InvalidLFNError
from KM3DIRAC.core.lfn import DID
from KM3DIRAC.core.metadata_query import (
    RUCIO_COLUMN_KEYS,
    USER_COLUMN_KEYS,
    InvalidQueryError,
    RucioQuery,
    plan_query,
    plugin_of,
)
from KM3DIRAC.core.metadata_search import matches, negations, pack_groups

# KM3NeT's metadata fields and their DFC types (what dirac-dms-find-lfns and the portal use to parse values).
DEFAULT_FILE_META_FIELDS = {
    "run_number": "INT", "events": "INT", "datatype": "VARCHAR(128)", "DetectorID": "INT", "Stream": "VARCHAR(128)",
    "Campaign": "VARCHAR(128)", "Step": "VARCHAR(128)", "SoftwareVersion": "VARCHAR(128)",
    "JobID": "INT", "TransformationID": "INT", "TaskID": "INT",
}
FIELDS_DID_NAME = "km3dirac.metadata-fields"  # in the scope named like the VO, unless the CS says MetadataFieldsDID
FIELDS_CACHE_SECONDS = 60
FIELD_SEPARATOR = "__"  # JSON key file__<field> / directory__<field> (Rucio refuses "." in metadata keys)
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FIELD_TYPE = re.compile(r"^(INT|INTEGER|FLOAT|DOUBLE|DATETIME|DATE|VARCHAR\(\d{1,4}\))$", re.IGNORECASE)
PATH_KEY = "Path"  # in a metadata query: the directory to search below (KM3DIRAC convention)
NUMERIC_COLUMN_KEYS = frozenset({"run_number", "events", "task_id", "panda_id", "lumiblocknr", "bytes", "length"})
# DFC directory fields: the only fields DIRAC's web portal (WebAppDIRAC's File Catalog) lets a shifter search by, and
# those ``find ... where`` of the FC CLI accepts. Run and train are here for that: KM3DIRAC's searches treat every
# field alike (a file's own value, else the nearest directory's), so the train's and the data's values set on files
# are found as before; run_number stays a file field too. Types as WebAppDIRAC's page reads them: VARCHAR(128)
# fields get a list of values, others a value field.
DEFAULT_DIRECTORY_META_FIELDS = {
    "DetectorID": "INT", "Campaign": "VARCHAR(128)", "datatype": "VARCHAR(128)",
    "run_number": "INT", "TrainName": "VARCHAR(128)", "TrainStep": "VARCHAR(128)",
}


@dataclass
class MetadataSchema:
    file_fields: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FILE_META_FIELDS))
    directory_fields: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DIRECTORY_META_FIELDS))


def _typed(value: Any, field_type: str | None) -> Any:
    """Values come from the command line as strings: give numeric fields numbers, so Rucio compares numbers."""
    if field_type and field_type.upper().startswith(("INT", "FLOAT", "DOUBLE")) and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and field_type.upper().startswith("INT") else number
    return value


class RucioCatalog(CatalogProvenance, CatalogReplicaStatus):
    def __init__(self, client: Any, mapper: Any = None, account: str | None = None,
                 schema: MetadataSchema | None = None, fields_did: DID | None = None) -> None:
        super().__init__(client, mapper, account)
        self.schema = schema or MetadataSchema()
        #: where addMetadataField declares fields: JSON metadata ``file__<field>`` / ``directory__<field>`` = type
        self.fields_did = fields_did or DID(self.mapper.vo, FIELDS_DID_NAME)
        self._declared: tuple[float, dict[str, dict[str, str]]] | None = None

    def write_access(self, lfns: dict[str, Any], operation: str) -> Bulk:
        """DFC ``hasAccess`` for a writing ``operation``: True where the call can succeed, else a Failed entry with
        what the server would refuse (LFN form, DID name schema, missing scope with its remedy, closed dataset).
        DataManager asks this before it uploads bytes."""
        result = Bulk()
        if operation.startswith("remove"):
            dids = self.resolve(lfns, result)  # removing from a scope that does not exist: nothing there, allowed
        else:
            dids = self.resolve_for_write(lfns, result)
        if operation in ("addFile", "putAndRegister") and dids:
            parents = {lfn: DID(did.scope, self.mapper.parent(did.name)) for lfn, did in dids.items()
                       if self.mapper.scope_of_directory(self.mapper.parent(did.name)) is None}
            existing = self.did_metadata(parents.values())
            for lfn, parent in parents.items():
                meta = existing.get(parent)
                if meta is not None and meta["did_type"] == "DATASET" and meta.get("is_open") is False:
                    result.failed[lfn] = f"{self.mapper.to_lfn(parent)} is closed: no file can be added to it"
                elif meta is not None and meta["did_type"] == FILE:
                    result.failed[lfn] = f"{self.mapper.to_lfn(parent)} is a file, it cannot hold files"
        for lfn in dids:
            if lfn not in result.failed:
                result.successful[lfn] = True
        return result

    # ------------------------------------------------------------------------------------------- fields
    def metadata_fields(self) -> dict[str, dict[str, str]]:
        """DFC ``getMetadataFields``: KM3NeT's fields, the CS's, and those declared with addMetadataField."""
        declared = self._declared_fields()
        files = {**self.schema.file_fields, **{k: v["file"] for k, v in declared.items() if "file" in v}}
        directories = {**self.schema.directory_fields,
                       **{k: v["directory"] for k, v in declared.items() if "directory" in v}}
        return {"FileMetaFields": files, "DirectoryMetaFields": directories}

    def _field_type(self, key: str) -> str | None:
        declared = self._declared_fields().get(key, {})
        return (self.schema.file_fields.get(key) or self.schema.directory_fields.get(key)
                or declared.get("file") or declared.get("directory"))

    def _declared_fields(self) -> dict[str, dict[str, str]]:
        """``{field: {"file"|"directory": type}}`` from the fields DID (read at most once a minute)."""
        import time

        from rucio.common.exception import DataIdentifierNotFound, ScopeNotFound

        if self._declared is not None and time.monotonic() - self._declared[0] < FIELDS_CACHE_SECONDS:
            return self._declared[1]
        try:
            stored = self.client.get_metadata(self.fields_did.scope, self.fields_did.name, plugin="JSON")
        except (DataIdentifierNotFound, ScopeNotFound):
            stored = {}
        declared: dict[str, dict[str, str]] = defaultdict(dict)
        for key, value in stored.items():
            kind, _, name = key.partition(FIELD_SEPARATOR)
            if kind in ("file", "directory") and name and isinstance(value, str):
                declared[name][kind] = value
        self._declared = (time.monotonic(), dict(declared))
        return self._declared[1]

    def add_metadata_field(self, name: Any, field_type: Any, meta_type: str = "-d") -> str:
        """DFC ``addMetadataField``: declare a searchable field of a type for files (``-f``) or directories
        (``-d``). Declared on the fields DID in Rucio, so every client (DIRAC, jobs, the portal) sees it."""
        from rucio.common.exception import DataIdentifierNotFound, ScopeNotFound

        kind = {"-f": "file", "-d": "directory"}.get(str(meta_type).lower())
        if kind is None:
            raise InvalidQueryError(f"metadata type {meta_type!r}: use -f (file field) or -d (directory field)")
        if not isinstance(name, str) or not FIELD_NAME.match(name) or name == PATH_KEY \
                or (name in RUCIO_COLUMN_KEYS and name not in USER_COLUMN_KEYS):
            raise InvalidQueryError(f"metadata field {name!r}: a name of letters, digits and _ not reserved by "
                                    f"Rucio or KM3DIRAC ({PATH_KEY}) is needed")
        normalised = str(field_type).strip()
        if not FIELD_TYPE.match(normalised):
            raise InvalidQueryError(f"metadata field {name}: type {field_type!r} is not one of INT, FLOAT, DOUBLE, "
                                    "VARCHAR(n), DATETIME")
        static = (self.schema.file_fields if kind == "file" else self.schema.directory_fields).get(name)
        current = static or self._declared_fields().get(name, {}).get(kind)
        if current is not None:
            if current.upper() != normalised.upper():
                raise InvalidQueryError(f"metadata field {name} exists already as {kind} field of type {current}")
            return "Already exists"
        did = self.fields_did
        try:
            self.client.set_metadata(did.scope, did.name, f"{kind}{FIELD_SEPARATOR}{name}", normalised)
        except ScopeNotFound as error:
            raise InvalidQueryError(f"metadata fields are declared on {did}, whose scope {did.scope} does not "
                                    f"exist: a Rucio admin creates it, or set MetadataFieldsDID in the catalog's "
                                    "CS section") from error
        except DataIdentifierNotFound:
            self._add_collections([{**did.as_dict(), "type": "CONTAINER"}])
            self.client.set_metadata(did.scope, did.name, f"{kind}{FIELD_SEPARATOR}{name}", normalised)
        self._declared = None
        return f"Added {kind} metadata field {name} of type {normalised}"

    def delete_metadata_field(self, name: Any) -> str:
        """DFC ``deleteMetadataField``: the declaration goes (file and directory); the values stay on the DIDs."""
        from rucio.common.exception import DataIdentifierNotFound, KeyNotFound, ScopeNotFound

        declared = self._declared_fields().get(name, {}) if isinstance(name, str) else {}
        if not declared:
            if name in self.schema.file_fields or name in self.schema.directory_fields:
                raise InvalidQueryError(f"metadata field {name} is KM3DIRAC's or the CS's (FileMetaFields / "
                                        "DirectoryMetaFields): remove it there")
            raise InvalidQueryError(f"metadata field {name!r} is not declared")
        did = self.fields_did
        for kind in declared:
            try:
                self.client.delete_metadata(did.scope, did.name, f"{kind}{FIELD_SEPARATOR}{name}")
            except (KeyNotFound, DataIdentifierNotFound, ScopeNotFound):
                pass
        self._declared = None
        return f"Deleted metadata field {name}"

    def _typed_meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {key: _typed(value, self._field_type(key)) for key, value in meta.items()}

    # ------------------------------------------------------------------------------------------- get / set
    def user_metadata(self, lfns: dict[str, Any], want_directory: bool | None = None) -> Bulk:
        """Flat ``{key: value}`` of user keys (JSON plugin keys and user-settable DID columns) per path."""
        result, dids, columns = self.lookup(lfns)
        for lfn, did in dids.items():
            meta = columns.get(did)
            if meta is None:
                result.failed[lfn] = NO_SUCH_FILE
                continue
            is_file = meta["did_type"] == FILE
            if want_directory is not None and is_file == want_directory:
                result.failed[lfn] = f"{lfn} is {'a file' if is_file else 'a directory'}"
                continue
            user = self._own_user_metadata(did, meta)
            if want_directory:
                # DFC: a directory's metadata includes what it inherits from the directories above it
                chain = [DID(did.scope, name) for name in self.mapper.ancestors(did.name)]
                rows = self.did_metadata(chain)
                inherited: dict[str, Any] = {}
                for ancestor in chain:
                    if ancestor in rows:
                        inherited.update(self._own_user_metadata(ancestor, rows[ancestor]))
                user = {**inherited, **user}
            result.successful[lfn] = user
        return result

    def _own_user_metadata(self, did: DID, row: dict) -> dict[str, Any]:
        user = {key: value for key, value in row.items() if key in USER_COLUMN_KEYS and value is not None}
        user.update(self.client.get_metadata(did.scope, did.name, plugin="JSON"))
        return user

    def set_metadata(self, path_meta: dict[str, Any]) -> Bulk:
        """``{path: {key: value}}``: one bulk call, then per path when the bulk call fails."""
        from rucio.common.exception import RucioException

        result = Bulk()
        entries = []
        for lfn, meta in path_meta.items():
            if not isinstance(meta, dict) or not meta:
                result.failed[str(lfn)] = f"{lfn}: metadata must be a non-empty dict"
                continue
            bad = [key for key in meta if not isinstance(key, str) or not key or key == PATH_KEY
                   or (key in RUCIO_COLUMN_KEYS and key not in USER_COLUMN_KEYS)]
            if bad:
                result.failed[str(lfn)] = f"{lfn}: metadata keys {bad} are reserved by Rucio"
                continue
            try:
                did = self.mapper.to_did(lfn)
            except InvalidLFNError as error:
                result.failed[str(lfn)] = str(error)
                continue
            entries.append((lfn, did, self._typed_meta(meta)))
        try:
            self.client.set_dids_metadata_bulk([{**did.as_dict(), "meta": meta} for _, did, meta in entries])
            for lfn, _, _ in entries:
                result.successful[lfn] = True
            return result
        except RucioException:
            pass
        for lfn, did, meta in entries:
            try:
                self.client.set_metadata_bulk(did.scope, did.name, meta)
                result.successful[lfn] = True
            except RucioException as error:
                result.failed[lfn] = f"{lfn}: {error}"
        return result

    def remove_metadata(self, path_keys: dict[str, Any]) -> Bulk:
        """``{path: [keys]}``: JSON keys are deleted, DID-column keys reset to empty."""
        from rucio.common.exception import KeyNotFound, RucioException

        result = Bulk()
        dids = self.resolve(path_keys, result)
        for lfn, did in dids.items():
            keys = path_keys[lfn]
            keys = [keys] if isinstance(keys, str) else list(keys or [])
            try:
                for key in keys:
                    if key in USER_COLUMN_KEYS:
                        self.client.set_metadata(did.scope, did.name, key, None)
                    else:
                        try:
                            self.client.delete_metadata(did.scope, did.name, key)
                        except KeyNotFound:
                            pass
                result.successful[lfn] = True
            except RucioException as error:
                result.failed[lfn] = f"{lfn}: {error}"
        return result

    # ------------------------------------------------------------------------------------------- queries
    def find_files(self, query: dict[str, Any], path: str = "/") -> list[str]:
        """LFNs of the files below ``path`` matching the DIRAC metadata ``query`` (sorted), DFC semantics: files
        only, and a file's value of a key is its own, else the one of the nearest directory above it that has the
        key (directory metadata is inherited by the files below).

        The query key ``Path`` (reserved, not a metadata key) restricts the search to a directory too: DIRAC's
        TransformationSystem passes a transformation's input meta query without a path."""
        return sorted(self.mapper.to_lfn(did) for did in self._find_dids(query, path))

    def _find_dids(self, query: dict[str, Any], path: str) -> set[DID]:
        query, searched = self._query_and_path(query, path)
        if searched is None:
            return set()
        typed = {key: self._typed_query_value(key, value) for key, value in query.items()}
        scopes, base = self._scopes_and_base(searched)
        found: set[DID] = set()
        for scope in scopes:
            pattern = f"{base or self.mapper.root}/*"
            if typed:  # the files' own metadata and their directories' searched at once
                with ThreadPoolExecutor(max_workers=1) as pool:
                    inherited = pool.submit(self._inherited_matches, scope, base, typed)
                    names = self._search(scope, pattern, typed) | inherited.result()
            else:
                names = self._search(scope, pattern, typed)
            found.update(DID(scope, name) for name in names)
        return found

    def _query_and_path(self, query: dict[str, Any], path: str) -> tuple[dict[str, Any], str | None]:
        if not isinstance(query, dict):
            raise InvalidQueryError(f"a metadata query must be a dict, not {type(query).__name__}")
        query = dict(query)
        if PATH_KEY in query:
            return query, self._narrower_path(path, query.pop(PATH_KEY))
        return query, path

    @staticmethod
    def _narrower_path(path: str, query_path: Any) -> str | None:
        if not isinstance(query_path, str) or not query_path.startswith("/"):
            raise InvalidQueryError(f"query key {PATH_KEY} must be an absolute directory, not {query_path!r}")
        outer, inner = path.rstrip("/") or "/", query_path.rstrip("/") or "/"
        if inner == outer or inner.startswith(outer.rstrip("/") + "/"):
            return inner
        if outer.startswith(inner.rstrip("/") + "/"):
            return outer
        return None

    def _typed_query_value(self, key: str, value: Any) -> Any:
        field_type = self._field_type(key)
        if isinstance(value, dict):
            return {op: ([_typed(v, field_type) for v in operand] if isinstance(operand, (list, tuple))
                         else _typed(operand, field_type)) for op, operand in value.items()}
        if isinstance(value, (list, tuple)):
            return [_typed(v, field_type) for v in value]
        return _typed(value, field_type)

    def _scopes_and_base(self, path: str) -> tuple[list[str], str | None]:
        """The scopes to search and the directory name to search below (None: the whole VO)."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidQueryError(f"path {path!r} must be an absolute directory")
        path = path.rstrip("/")
        if self.mapper.is_root(path):
            return sorted(self.client.list_scopes()), None
        did = self.mapper.to_did(path)
        return [did.scope], did.name

    def _list_packed(self, scope: str, groups: list[dict], did_type: str) -> set[str]:
        """``list_dids`` of OR-groups, in as few requests as fit a URL each."""
        names: set[str] = set()
        for pack in pack_groups(groups):
            names.update(self._list_dids(scope, pack, did_type))
        return names

    def _search(self, scope: str, pattern: str, query: dict[str, Any]) -> set[str]:
        """Names of the files matching ``query`` on their own metadata below the name ``pattern``."""
        parts = plan_query(query) or [RucioQuery("column")]
        result: set[str] | None = None
        only_json = all(part.plugin == "json" for part in parts)
        for part in parts:
            names = self._list_packed(scope, [{**g, "name": pattern} for g in part.groups], "file")
            for exclusion in part.exclusions:
                if names:
                    names -= self._list_packed(scope, [{**g, "name": pattern} for g in exclusion], "file")
            result = names if result is None else result & names
            if not result:
                return set()
        if only_json and result:
            # Rucio's JSON plugin ignores did_type: datasets carrying the key come back too (plain Rucio users put
            # metadata on datasets); keep the files (and drop the removed ones)
            rows = self.did_metadata(DID(scope, name) for name in result)
            result = {did.name for did, row in rows.items() if row["did_type"] == FILE}
        return result or set()

    # ------------------------------------------------------------------------------------------- inheritance
    def _directory_metadata(self, scope: str, base: str | None, query: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Effective metadata (own, else inherited) of the query's keys for every directory at and below ``base`` in
        one scope. DID-column keys: the collections that have them set, asked from the server (one request); free
        keys: the JSON metadata of the collections below, in bulk."""
        pattern = f"{base or self.mapper.root}/*"
        chain = [*self.mapper.ancestors(base), base] if base and not self._is_scope_level(DID(scope, base)) else []
        chain_dids = [x for n in chain for x in (DID(scope, n), DID(scope, n + "/"))]
        own: dict[str, dict[str, Any]] = defaultdict(dict)
        column_keys = [key for key in query if plugin_of(key) == "column"]
        if column_keys:
            # the collections below and in the chain above that have a key set, in one request; their values only
            # when there are any (usually none: then inheritance cost this one request beside the files' search)
            names = [pattern, *(did.name for did in chain_dids)]
            having = [{"name": name, f"{key}.gte": self._set_value_floor(key, query[key])}
                      for key in column_keys for name in names]
            listed = [DID(scope, n) for n in self._list_packed(scope, having, "collection")]
            rows = self.did_metadata(listed) if listed else {}
            for did, row in sorted(rows.items(), key=lambda item: item[0].name):  # D before its companion D/
                if row["did_type"] in COLLECTIONS:
                    for key in column_keys:
                        if row.get(key) is not None:
                            own[directory_name(did.name)].setdefault(key, row[key])
        json_keys = {key for key in query if plugin_of(key) == "json"}
        if json_keys:
            listed = [DID(scope, n) for n in self._list_dids(scope, [{"name": pattern}], "collection")]
            for chunk in chunks([*chain_dids, *listed]):
                for row in sorted(self._json_metadata_bulk(chunk), key=lambda row: row["name"]):
                    for key in json_keys & set(row):
                        own[directory_name(row["name"])].setdefault(key, row[key])
        effective: dict[str, dict[str, Any]] = {}
        for name in sorted(own, key=lambda n: n.count("/")):
            effective[name] = {**self._nearest(self.mapper.parent(name), effective), **own[name]}
        return effective

    def _set_value_floor(self, key: str, condition: Any) -> Any:
        """A lower bound every set value of the key passes (selects the DIDs having a DID-column key)."""
        sample = condition
        while isinstance(sample, (dict, list, tuple, set)) and sample:
            sample = next(iter(sample.values())) if isinstance(sample, dict) else next(iter(sample))
        field_type = (self._field_type(key) or "").upper()
        numeric = key in NUMERIC_COLUMN_KEYS or field_type.startswith(("INT", "FLOAT", "DOUBLE"))
        if numeric or (isinstance(sample, (int, float)) and not isinstance(sample, bool)):
            return -1e300
        return ""

    def _nearest_name(self, directory: str, effective: dict[str, dict[str, Any]]) -> str | None:
        name = directory
        while name.count("/") > 2:
            if name in effective:
                return name
            name = self.mapper.parent(name)
        return None

    def _nearest(self, directory: str, effective: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The effective metadata a directory has through the nearest directory (itself or above) carrying keys."""
        name = directory
        while name.count("/") > 2:
            if name in effective:
                return effective[name]
            name = self.mapper.parent(name)
        return {}

    def _json_metadata_bulk(self, dids: list[DID]) -> list[dict]:
        from rucio.common.exception import DataIdentifierNotFound, ScopeNotFound

        try:
            return list(self.client.get_metadata_bulk([d.as_dict() for d in dids], inherit=False, plugin="JSON"))
        except (DataIdentifierNotFound, ScopeNotFound):
            return []

    def _inherited_matches(self, scope: str, base: str | None, query: dict[str, Any]) -> set[str]:
        """Files that match through the metadata of the directories above them: grouped by the set of keys their
        directory satisfies, each group is one search for the other keys, minus the files whose own value of an
        inherited key fails (a file's own value wins)."""
        directories = self._directory_metadata(scope, base, query)
        groups: dict[frozenset[str], set[str]] = defaultdict(set)
        for name, meta in directories.items():
            satisfied = frozenset(key for key, condition in query.items() if key in meta
                                  and matches(meta[key], condition))
            if satisfied:
                groups[satisfied].add(name)
        found: set[str] = set()
        for satisfied, names in groups.items():
            inside = [n for n in names if base is None or n == base or n.startswith(base + "/")]
            common = _common_directory(set(inside)) if inside else base
            if common is None:
                continue  # no directory inside the search (cannot happen without a base: then all are inside)
            if base is not None and not (common == base or common.startswith(base + "/")):
                common = base  # the keys come from above the searched directory: search all of it
            pattern = f"{common}/*"
            rest = {key: condition for key, condition in query.items() if key not in satisfied}
            candidates = {n for n in self._search(scope, pattern, rest)
                          if self._nearest_name(self.mapper.parent(n), directories) in names}
            for key in satisfied:
                for negation in negations(query[key]):
                    if candidates:
                        candidates -= self._search(scope, pattern, {key: negation})
            found |= candidates
        return found

    def effective_file_metadata(self, dids: list[DID], keys: set[str], path: str = "/") -> dict[DID, dict]:
        """``keys`` of each file: its own values, else inherited from its directories (bulk reads)."""
        own: dict[DID, dict[str, Any]] = defaultdict(dict)
        column_keys = {key for key in keys if plugin_of(key) == "column"}
        if column_keys:
            for did, row in self.did_metadata(dids).items():
                own[did].update({key: row[key] for key in column_keys if row.get(key) is not None})
        json_keys = keys - column_keys
        if json_keys:
            for chunk in chunks(list(dids)):
                for row in self._json_metadata_bulk(chunk):
                    own[DID(row["scope"], row["name"])].update({k: row[k] for k in json_keys & set(row)})
        directories: dict[str, dict[str, dict[str, Any]]] = {}
        result = {}
        for did in dids:
            if did.scope not in directories:
                scopes, base = self._scopes_and_base(path)
                directories[did.scope] = self._directory_metadata(did.scope, base if did.scope in scopes else None,
                                                                  {key: None for key in keys})
            inherited = self._nearest(self.mapper.parent(did.name), directories[did.scope])
            result[did] = {**inherited, **own.get(did, {})}
        return result

    # ------------------------------------------------------------------------------------------- DFC queries
    def compatible_metadata(self, query: dict[str, Any], path: str = "/") -> dict[str, list]:
        """DFC ``getCompatibleMetadata``: for every metadata field, the values it takes among the files matching
        the query without that field's own condition (what the portal's selectors offer)."""
        query, narrowed = self._query_and_path(query, path)
        if narrowed is None:
            return {}
        fields = set(self.schema.file_fields) | set(self.schema.directory_fields) | set(self._declared_fields())
        answers: dict[frozenset, set[DID]] = {}
        values: dict[str, set] = {}
        for key in sorted(fields):
            others = {k: v for k, v in query.items() if k != key}
            signature = frozenset(others)
            if signature not in answers:
                answers[signature] = self._find_dids(others, narrowed)
        metadata: dict[DID, dict] = {}
        everything = set().union(*answers.values()) if answers else set()
        if everything:
            metadata = self.effective_file_metadata(sorted(everything, key=str), fields, narrowed)
        for key in sorted(fields):
            signature = frozenset(k for k in query if k != key)
            for did in answers[signature]:
                value = metadata.get(did, {}).get(key)
                if value is not None:
                    values.setdefault(key, set()).add(value)
        return {key: sorted(found, key=_value_order) for key, found in values.items()}

    def find_files_web(self, query: dict[str, Any], path: str, start: int, max_items: int) -> dict[str, Any]:
        lfns = self.find_files(query, path)
        page = lfns[start:start + max_items]
        details = self.file_metadata(dict.fromkeys(page)).successful
        # the DFC's records carry each file's user metadata too (the portal's File Catalog shows it per file)
        user = self.user_metadata(dict.fromkeys(details), want_directory=False).successful
        for lfn, record in details.items():
            record["Metadata"] = user.get(lfn, {})
        return {"TotalRecords": len(lfns), "Records": details}

    def find_files_detailed(self, query: dict[str, Any], path: str = "/") -> dict[str, dict]:
        """DFC ``findFilesByMetadataDetailed``: ``{lfn: file metadata}``."""
        return self.file_metadata(dict.fromkeys(self.find_files(query, path))).successful

    def replicas_by_metadata(self, query: dict[str, Any], path: str = "/", all_status: bool = False) -> Bulk:
        """DFC ``getReplicasByMetadata``: the replicas of the matching files."""
        return self.replicas(dict.fromkeys(self.find_files(query, path)), all_status=all_status)

    def find_directories(self, query: dict[str, Any], path: str = "/") -> dict[int, str]:
        """DFC ``findDirectoriesByMetadata``: ``{n: directory}`` of the directories at and below ``path`` whose
        metadata (own or inherited) matches every key of the query (the DFC numbers them by DirID)."""
        query, narrowed = self._query_and_path(query, path)
        if narrowed is None or not query:
            return {}
        typed = {key: self._typed_query_value(key, value) for key, value in query.items()}
        scopes, base = self._scopes_and_base(narrowed)
        found = []
        for scope in scopes:
            effective = self._directory_metadata(scope, base, typed)
            if not effective:
                continue
            pattern = f"{base or self.mapper.root}/*"
            names = {directory_name(n) for n in self._list_dids(scope, [{"name": pattern}], "collection")}
            if base is not None and not self._is_scope_level(DID(scope, base)):
                names.add(base)
            for name in names:
                meta = self._nearest(name, effective)
                if all(key in meta and matches(meta[key], c) for key, c in typed.items()):
                    found.append(self.mapper.to_lfn(DID(scope, name)))
        return dict(enumerate(sorted(found), start=1))


def _value_order(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then everything else as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 0, value
    return 1, str(value)


def _common_directory(names: set[str]) -> str:
    parts = [name.split("/") for name in names]
    common = []
    for segments in zip(*parts, strict=False):
        if len(set(segments)) != 1:
            break
        common.append(segments[0])
    return "/".join(common) or "/"


__all__ = ["DID", "Bulk", "MetadataSchema", "RucioCatalog"]
