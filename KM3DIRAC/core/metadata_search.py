"""Pieces of KM3DIRAC's metadata search that need no server: value predicates, negations, request packing.

- :func:`matches` evaluates a DIRAC condition on one value in Python (directory metadata is few DIDs: it is read
  in bulk and evaluated here, so that files inherit it).
- :func:`negations` turns a condition into the conditions that select the values failing it (a file's own value
  overrides what it inherits: the files whose own value fails are subtracted).
- :func:`pack_groups` splits the OR-groups of one Rucio filter into requests whose URL stays below
  :data:`MAX_FILTER_CHARS` (``list_dids`` is a GET: a few hundred groups in one URL answer HTTP 414).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

# list_dids puts the filters in the URL; gunicorn refuses request lines over 4094 bytes, Apache over 8190.
MAX_FILTER_CHARS = 3000

NEGATED_OPERATOR = {"=": "!=", "!=": "=", ">": "<=", "<": ">=", ">=": "<", "<=": ">", "in": "nin", "nin": "in"}


def _comparable(value: Any, operand: Any) -> tuple[Any, Any]:
    """Numbers compare as numbers, even when one side came as a string (command-line values)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(operand, str):
        try:
            return value, float(operand)
        except ValueError:
            return str(value), operand
    if isinstance(operand, (int, float)) and not isinstance(operand, bool) and isinstance(value, str):
        try:
            return float(value), operand
        except ValueError:
            return value, str(operand)
    return value, operand


def _compare(value: Any, operator: str, operand: Any) -> bool:
    if operator in ("in", "nin"):
        operands = operand if isinstance(operand, (list, tuple, set)) else [operand]
        found = any(_compare(value, "=", o) for o in operands)
        return found if operator == "in" else not found
    left, right = _comparable(value, operand)
    try:
        if operator == "=":
            return bool(left == right)
        if operator == "!=":
            return bool(left != right)
        return bool({">": lambda: left > right, "<": lambda: left < right, ">=": lambda: left >= right,
                     "<=": lambda: left <= right}[operator]())
    except TypeError:
        return False


def matches(value: Any, condition: Any) -> bool:
    """Whether a set value satisfies a DIRAC condition (scalar, list for ``in``, dict of operators)."""
    if value is None:
        return False  # DFC: a condition on a key selects only what has the key
    if isinstance(condition, dict):
        return all(_compare(value, operator, operand) for operator, operand in condition.items())
    if isinstance(condition, (list, tuple, set)):
        return _compare(value, "in", list(condition))
    return _compare(value, "=", condition)


def negations(condition: Any) -> list[Any]:
    """Conditions whose union selects exactly the (set) values that fail ``condition``."""
    if isinstance(condition, dict):
        return [{NEGATED_OPERATOR[operator]: operand} for operator, operand in condition.items()]
    if isinstance(condition, (list, tuple, set)):
        return [{"nin": list(condition)}]
    return [{"!=": condition}]


def filter_chars(groups: list[dict[str, Any]]) -> int:
    """Characters the groups take in a ``list_dids`` URL (rucio-clients urlencodes ``str(filters)``)."""
    return len(urlencode({"filters": str(groups)}))


def pack_groups(groups: list[dict[str, Any]], budget: int = MAX_FILTER_CHARS) -> list[list[dict[str, Any]]]:
    """Consecutive OR-groups packed into requests of at most ``budget`` URL characters (one group alone may be
    longer: it is sent alone)."""
    packs: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for group in groups:
        group_size = filter_chars([group]) + 6  # the separator between groups: ", " encoded
        if current and size + group_size > budget:
            packs.append(current)
            current, size = [], 0
        current.append(group)
        size += group_size
    if current:
        packs.append(current)
    return packs


def integer_ranges(values: list[Any]) -> list[tuple[int, int]] | None:
    """Sorted maximal runs of consecutive integers (``[1, 2, 3, 7]`` -> ``[(1, 3), (7, 7)]``); None unless every
    value is an integer."""
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    ranges: list[tuple[int, int]] = []
    for value in sorted(set(values)):
        if ranges and value == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], value)
        else:
            ranges.append((value, value))
    return ranges
