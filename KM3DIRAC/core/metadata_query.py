"""DIRAC metadata queries (DFC conventions) -> Rucio ``list_dids`` filters.

A DIRAC query is ``{key: value}`` where value is a scalar (equality), a list (``in``) or a dict of operators
``{"=", "!=", ">", "<", ">=", "<=", "in", "nin"}`` (several operators on one key make a range).

Rucio evaluates one filter with one metadata plugin: the DID-table columns (``run_number``, ``events``, ...) and
the JSON plugin's free keys cannot be mixed in one ``list_dids`` call. :func:`plan_query` therefore splits the
query into one :class:`RucioQuery` per plugin; the caller intersects their results. ``in`` becomes OR-groups of
one filter (one server call per scope and plugin, not one per value); ``nin`` becomes an exclusion query whose
results are subtracted.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from KM3DIRAC.core.errors import KM3DiracError

# Keys Rucio 41's DID-column plugin manages (DataIdentifier columns less the excluded ones, plus its extra keys);
# every other key belongs to the JSON plugin.
RUCIO_COLUMN_KEYS = frozenset({
    "name", "hidden", "is_new", "bytes", "length", "md5", "adler32", "expired_at", "purge_replicas", "deleted_at",
    "events", "guid", "project", "datatype", "run_number", "stream_name", "prod_step", "version", "campaign",
    "task_id", "panda_id", "lumiblocknr", "provenance", "phys_group", "transient", "accessed_at", "closed_at",
    "eol_at", "is_archive", "constituent", "access_cnt", "lifetime", "type",
})
# Column keys a user may set as metadata through the catalog (the rest are Rucio bookkeeping).
USER_COLUMN_KEYS = frozenset({
    "events", "project", "datatype", "run_number", "stream_name", "prod_step", "version", "campaign", "task_id",
    "lumiblocknr", "provenance", "phys_group",
})
OPERATOR_SUFFIX = {"=": "", "!=": ".ne", ">": ".gt", "<": ".lt", ">=": ".gte", "<=": ".lte"}
MAX_OR_GROUPS = 1000


class InvalidQueryError(KM3DiracError, ValueError):
    """A metadata query that cannot be translated; the message names the key and the problem."""


@dataclass
class RucioQuery:
    """One plugin's share of a query: OR-groups of AND-filters, minus exclusion filters (for ``nin``)."""

    groups: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    exclusions: list[list[dict[str, Any]]] = field(default_factory=list)


def plugin_of(key: str) -> str:
    return "column" if key in RUCIO_COLUMN_KEYS else "json"


def _conditions(key: str, value: Any) -> tuple[dict[str, Any], list[Any] | None, list[Any] | None]:
    """(AND filters on key, ``in`` values or None, ``nin`` values or None) for one query entry."""
    if isinstance(value, (list, tuple, set)):
        return {}, list(value), None
    if not isinstance(value, dict):
        return {key: value}, None, None
    filters: dict[str, Any] = {}
    in_values = None
    nin_values = None
    for operator, operand in value.items():
        if operator == "in":
            in_values = list(operand) if isinstance(operand, (list, tuple, set)) else [operand]
        elif operator == "nin":
            nin_values = list(operand) if isinstance(operand, (list, tuple, set)) else [operand]
        elif operator in OPERATOR_SUFFIX:
            filters[key + OPERATOR_SUFFIX[operator]] = operand
        else:
            raise InvalidQueryError(f"metadata key {key!r}: unknown operator {operator!r}")
    return filters, in_values, nin_values


def plan_query(query: dict[str, Any]) -> dict[str, RucioQuery]:
    """Split a DIRAC metadata query into one :class:`RucioQuery` per Rucio metadata plugin."""
    if not isinstance(query, dict):
        raise InvalidQueryError(f"a metadata query must be a dict, not {type(query).__name__}")
    plans: dict[str, RucioQuery] = {}
    in_lists: dict[str, list[tuple[str, list[Any]]]] = {}
    for key, value in query.items():
        if not isinstance(key, str) or not key:
            raise InvalidQueryError(f"metadata key {key!r} is not a non-empty string")
        plugin = plugin_of(key)
        plan = plans.setdefault(plugin, RucioQuery())
        filters, in_values, nin_values = _conditions(key, value)
        plan.groups[0].update(filters)
        if in_values is not None:
            if not in_values:
                raise InvalidQueryError(f"metadata key {key!r}: empty 'in' list matches nothing")
            in_lists.setdefault(plugin, []).append((key, in_values))
        if nin_values:
            plan.exclusions.append([{key: excluded} for excluded in nin_values])
    for plugin, lists in in_lists.items():
        plan = plans[plugin]
        base = plan.groups[0]
        combinations = list(itertools.product(*[[(key, v) for v in values] for key, values in lists]))
        if len(combinations) > MAX_OR_GROUPS:
            raise InvalidQueryError(f"'in' lists of {[key for key, _ in lists]} give {len(combinations)} "
                                    f"combinations, more than {MAX_OR_GROUPS}")
        plan.groups = [{**base, **dict(combination)} for combination in combinations]
    return plans
