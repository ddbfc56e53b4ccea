"""The Rucio file catalog in DIRAC's terms: :class:`RucioCatalog` = reads + writes + DFC-compatible metadata.

User metadata lives in Rucio DID metadata: keys Rucio keeps in DID columns (``run_number``, ``events``,
``datatype``, ...) go there, every other key to the JSON plugin (PostgreSQL). Queries are split per plugin
(:mod:`KM3DIRAC.core.metadata_query`) and their results intersected, with one server call per scope and plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from KM3DIRAC.core.catalog_reads import FILE, NO_SUCH_FILE, Bulk
from KM3DIRAC.core.catalog_writes import CatalogWrites
from KM3DIRAC.core.errors import InvalidLFNError
from KM3DIRAC.core.lfn import DID
from KM3DIRAC.core.metadata_query import RUCIO_COLUMN_KEYS, USER_COLUMN_KEYS, InvalidQueryError, plan_query

# KM3NeT's metadata fields and their DFC types (what dirac-dms-find-lfns and the portal use to parse values).
DEFAULT_FILE_META_FIELDS = {
    "run_number": "INT", "events": "INT", "datatype": "VARCHAR(128)", "DetectorID": "INT", "Stream": "VARCHAR(128)",
    "Campaign": "VARCHAR(128)", "Step": "VARCHAR(128)", "SoftwareVersion": "VARCHAR(128)",
    "JobID": "INT", "TransformationID": "INT", "TaskID": "INT",
}
PATH_KEY = "Path"  # in a metadata query: the directory to search below (KM3DIRAC convention)
DEFAULT_DIRECTORY_META_FIELDS = {"DetectorID": "INT", "Campaign": "VARCHAR(128)", "datatype": "VARCHAR(128)"}


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


class RucioCatalog(CatalogWrites):
    def __init__(self, client: Any, mapper: Any = None, account: str | None = None,
                 schema: MetadataSchema | None = None) -> None:
        super().__init__(client, mapper, account)
        self.schema = schema or MetadataSchema()

    def metadata_fields(self) -> dict[str, dict[str, str]]:
        return {"FileMetaFields": dict(self.schema.file_fields),
                "DirectoryMetaFields": dict(self.schema.directory_fields)}

    def _field_type(self, key: str) -> str | None:
        return self.schema.file_fields.get(key) or self.schema.directory_fields.get(key)

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
            user = {key: value for key, value in meta.items() if key in USER_COLUMN_KEYS and value is not None}
            user.update(self.client.get_metadata(did.scope, did.name, plugin="JSON"))
            result.successful[lfn] = user
        return result

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
        """LFNs of the files below ``path`` matching the DIRAC metadata ``query`` (sorted).

        The query key ``Path`` (reserved, not a metadata key) restricts the search to a directory too: DIRAC's
        TransformationSystem passes a transformation's input meta query without a path."""
        query = dict(query)
        if PATH_KEY in query:
            narrower = self._narrower_path(path, query.pop(PATH_KEY))
            if narrower is None:
                return []  # the two directories do not overlap
            path = narrower
        plans = plan_query({key: self._typed_query_value(key, value) for key, value in query.items()})
        scopes, name_pattern = self._scopes_and_pattern(path)
        found: set[DID] = set()
        for scope in scopes:
            scope_result: set[str] | None = None
            for plan in plans.values() or [None]:
                groups = [{**g, "name": name_pattern} for g in (plan.groups if plan else [{}])]
                names = set(self._list_dids(scope, groups, "file"))
                for exclusion in plan.exclusions if plan else []:
                    names -= set(self._list_dids(scope, [{**g, "name": name_pattern} for g in exclusion], "file"))
                scope_result = names if scope_result is None else scope_result & names
            found.update(DID(scope, name) for name in scope_result or ())
        return sorted(self.mapper.to_lfn(did) for did in found)

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

    def _scopes_and_pattern(self, path: str) -> tuple[list[str], str]:
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidQueryError(f"path {path!r} must be an absolute directory")
        path = path.rstrip("/")
        if self.mapper.is_root(path):
            return sorted(self.client.list_scopes()), f"{self.mapper.root}/*"
        did = self.mapper.to_did(path)
        return [did.scope], f"{did.name}/*"

    def compatible_metadata(self, query: dict[str, Any], path: str = "/") -> dict[str, list]:
        """For each metadata field, the values found among the files that match ``query`` below ``path``."""
        lfns = self.find_files(query, path)
        values: dict[str, set] = {}
        for meta in self.user_metadata(dict.fromkeys(lfns)).successful.values():
            for key, value in meta.items():
                if key not in query and key in self.schema.file_fields:
                    values.setdefault(key, set()).add(value)
        return {key: sorted(found, key=str) for key, found in values.items()}

    def find_files_web(self, query: dict[str, Any], path: str, start: int, max_items: int) -> dict[str, Any]:
        lfns = self.find_files(query, path)
        page = lfns[start:start + max_items]
        details = self.file_metadata(dict.fromkeys(page)).successful
        # the DFC's records carry each file's user metadata too (the portal's File Catalog shows it per file)
        user = self.user_metadata(dict.fromkeys(details), want_directory=False).successful
        for lfn, record in details.items():
            record["Metadata"] = user.get(lfn, {})
        return {"TotalRecords": len(lfns), "Records": details}


__all__ = ["DID", "Bulk", "MetadataSchema", "RucioCatalog"]
