"""DIRAC metadata queries (DFC conventions) -> Rucio ``list_dids`` filters.

A DIRAC query is ``{key: value}`` where value is a scalar (equality), a list (``in``) or a dict of operators
``{"=", "!=", ">", "<", ">=", "<=", "in", "nin"}`` (several operators on one key make a range).

Rucio evaluates one filter with one metadata plugin: the DID-table columns (``run_number``, ``events``, ...) and
the JSON plugin's free keys cannot be mixed in one ``list_dids`` call. :func:`plan_query` therefore splits the
query into :class:`RucioQuery` questions (one per plugin, or per ``in`` key for large lists); the caller
intersects their results. ``in`` becomes OR-groups of one filter (integer runs as ranges), packed into requests
that fit a URL (:func:`KM3DIRAC.core.metadata_search.pack_groups`): never one request per value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.metadata_search import integer_ranges

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
MAX_OR_GROUPS = 1000  # OR-groups of one question; larger products become one question per 'in' key


class InvalidQueryError(KM3DiracError, ValueError):
    """A metadata query that cannot be translated; the message names the key and the problem."""


@dataclass
class RucioQuery:
    """One ``list_dids`` question of one plugin: OR-groups of AND-filters, minus exclusion filters (for ``nin``).
    A query's parts are intersected."""

    plugin: str = "column"
    groups: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    exclusions: list[list[dict[str, Any]]] = field(default_factory=list)


def plugin_of(key: str) -> str:
    return "column" if key in RUCIO_COLUMN_KEYS else "json"


def _values(operand: Any) -> list[Any]:
    return list(operand) if isinstance(operand, (list, tuple, set)) else [operand]


def in_alternatives(key: str, values: list[Any]) -> list[dict[str, Any]]:
    """OR-alternatives selecting ``key`` in ``values``: runs of consecutive integers as one range each."""
    ranges = integer_ranges(values)
    if ranges is None:
        return [{key: value} for value in dict.fromkeys(values)]
    return [{key: low} if low == high else {f"{key}.gte": low, f"{key}.lte": high} for low, high in ranges]


def nin_alternatives(key: str, values: list[Any]) -> list[dict[str, Any]] | None:
    """For integers: the ranges between the excluded values (the key must be set, as in the DFC); else None."""
    ranges = integer_ranges(values)
    if ranges is None:
        return None
    alternatives = [{f"{key}.lt": ranges[0][0]}]
    alternatives += [{f"{key}.gt": high, f"{key}.lt": low} for (_, high), (low, _) in itertools.pairwise(ranges)]
    return [*alternatives, {f"{key}.gt": ranges[-1][1]}]


def _require_set(base: dict[str, Any], plugin: str, key: str, operand: Any) -> None:
    """Rucio's DID-column ``.ne`` also selects DIDs where the column is empty; the DFC's '!=' selects only what has
    the key: add a lower bound every set value passes (the JSON plugin needs none: a missing key never matches)."""
    if plugin == "column":
        floor: Any = -1e300 if isinstance(operand, (int, float)) and not isinstance(operand, bool) else ""
        base.setdefault(f"{key}.gte", floor)


def _merge(group: dict[str, Any], choice: dict[str, Any]) -> dict[str, Any] | None:
    """AND of two filter groups; None when they cannot both hold (two different equalities)."""
    merged = dict(group)
    for key, value in choice.items():
        if key not in merged or merged[key] == value:
            merged[key] = value
        elif key.endswith((".gte", ".gt")):
            merged[key] = max(merged[key], value)
        elif key.endswith((".lte", ".lt")):
            merged[key] = min(merged[key], value)
        elif "." not in key:
            return None
        else:
            raise InvalidQueryError(f"metadata key {key.split('.')[0]!r}: '!=' and 'nin' together are not supported")
    return merged


def plan_query(query: dict[str, Any]) -> list[RucioQuery]:
    """Split a DIRAC metadata query into Rucio questions whose results, intersected, answer it.

    One question per metadata plugin while the ``in`` lists of its keys combine into at most
    :data:`MAX_OR_GROUPS` OR-groups, else one question per ``in`` key (no cartesian product); integer ``in``
    lists become ranges, integer ``nin`` lists the ranges between, other ``nin`` lists exclusions."""
    if not isinstance(query, dict):
        raise InvalidQueryError(f"a metadata query must be a dict, not {type(query).__name__}")
    bases: dict[str, dict[str, Any]] = {}
    alternatives: dict[str, list[list[dict[str, Any]]]] = {}
    exclusions: dict[str, list[list[dict[str, Any]]]] = {}
    for key, value in query.items():
        if not isinstance(key, str) or not key:
            raise InvalidQueryError(f"metadata key {key!r} is not a non-empty string")
        plugin = plugin_of(key)
        base = bases.setdefault(plugin, {})
        operators = value if isinstance(value, dict) else {"in": value} if isinstance(value, (list, tuple, set)) \
            else {"=": value}
        for operator, operand in operators.items():
            if operator == "in":
                values = _values(operand)
                if not values:
                    raise InvalidQueryError(f"metadata key {key!r}: empty 'in' list matches nothing")
                alternatives.setdefault(plugin, []).append(in_alternatives(key, values))
            elif operator == "nin":
                values = _values(operand)
                if not values:
                    continue
                between = nin_alternatives(key, values)
                if between is not None:
                    alternatives.setdefault(plugin, []).append(between)
                elif f"{key}.ne" not in base:
                    base[f"{key}.ne"] = values[0]  # the key must be set, and is not the first value
                    _require_set(base, plugin, key, values[0])
                    if values[1:]:
                        exclusions.setdefault(plugin, []).append([{key: v} for v in values[1:]])
                else:
                    exclusions.setdefault(plugin, []).append([{key: v} for v in values])
            elif operator in OPERATOR_SUFFIX:
                base[key + OPERATOR_SUFFIX[operator]] = operand
                if operator == "!=":
                    _require_set(base, plugin, key, operand)
            else:
                raise InvalidQueryError(f"metadata key {key!r}: unknown operator {operator!r}")
    parts = []
    for plugin, base in bases.items():
        lists = alternatives.get(plugin, [])
        combinations = 1
        for alternative in lists:
            combinations *= len(alternative)
        if combinations <= MAX_OR_GROUPS:
            groups = [dict(base)]
            for alternative in lists:
                groups = [merged for group in groups for choice in alternative
                          if (merged := _merge(group, choice)) is not None]
            parts.append(RucioQuery(plugin, groups, exclusions.get(plugin, [])))
        else:
            for index, alternative in enumerate(lists):
                groups = [merged for choice in alternative if (merged := _merge(base, choice)) is not None]
                parts.append(RucioQuery(plugin, groups, exclusions.get(plugin, []) if index == 0 else []))
    return parts
