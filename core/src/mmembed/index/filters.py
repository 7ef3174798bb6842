"""Compile the metadata filter syntax of :mod:`mmembed.index.protocol` to a SQL ``WHERE`` clause.

Values are always bound as parameters (never pasted into SQL). Comparisons are type-strict:
``{"year": 2020}`` does not match the string ``"2020"``, ``True`` does not match ``1``. A
``datetime`` / ``date`` value compares stored ISO 8601 strings as points in time (SQLite's
``julianday``: offsets honoured, a time without one is UTC); other values never match it.
Negations (``$ne``, ``$nin``) also match pages that lack the key, as in MongoDB.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from typing import Any

from .errors import FilterError

Filter = dict[str, Any]

RECORD_FIELDS = {"id": str, "source": str, "content_hash": str, "page": int}
RANGE_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
FIELD_OPS = {"$eq", "$ne", "$in", "$nin", "$exists", *RANGE_OPS}
NUMBER_TYPES = "('integer', 'real')"

MAX_DEPTH = 32
"""Deepest nesting of ``$and`` / ``$or`` a filter may use (deeper is refused, not recursed into)."""
MAX_CONDITIONS = 4096
"""Most field conditions one filter may hold (each binds up to three SQL parameters); put
long lists of values in one ``$in`` instead, which binds a single parameter."""

Sql = tuple[str, list[Any]]
TRUE: Sql = ("1", [])
FALSE: Sql = ("0", [])


def compile_filter(where: Filter | None) -> Sql:
    """``(sql, params)`` selecting the rows of ``pages`` that match ``where``."""
    if where is None:
        return TRUE
    budget = [MAX_CONDITIONS]
    return _compile(where, where, 1, budget)


def _fail(whole: Filter, why: str) -> FilterError:
    return FilterError(f"invalid filter {_show(whole)}: {why}. See mmembed.index.protocol for the syntax.")


def _show(value: Any) -> str:
    try:
        return json.dumps(value, default=repr)[:300]
    except (TypeError, ValueError, RecursionError):
        return f"<{type(value).__name__}>"


def _compile(node: Any, whole: Filter, depth: int, budget: list[int]) -> Sql:
    if not isinstance(node, dict):
        raise _fail(whole, f"expected a dict, got {_show(node)}")
    if depth > MAX_DEPTH:
        raise FilterError(
            f"the filter nests $and/$or more than {MAX_DEPTH} levels deep; flatten it (a $and or $or "
            "takes any number of clauses, and $in takes a list of values)."
        )
    parts: list[Sql] = []
    for key, cond in node.items():
        if not isinstance(key, str):
            raise _fail(whole, f"keys must be strings, got {key!r}")
        if key in ("$and", "$or"):
            if not isinstance(cond, list | tuple):
                raise _fail(whole, f"{key} takes a list of filters")
            subs = [_compile(sub, whole, depth + 1, budget) for sub in cond]
            parts.append(
                _join(subs, " AND " if key == "$and" else " OR ", empty=TRUE if key == "$and" else FALSE)
            )
        elif key.startswith("$"):
            raise _fail(whole, f"unknown operator {key!r} (top level takes $and, $or or field names)")
        else:
            budget[0] -= 1
            if budget[0] < 0:
                raise FilterError(
                    f"the filter holds more than {MAX_CONDITIONS} conditions; match long lists of "
                    'values with one $in (e.g. {"source": {"$in": [...]}}) instead of many $or clauses.'
                )
            parts.append(_field(key, cond, whole))
    return _join(parts, " AND ", empty=TRUE)


def _join(parts: list[Sql], sep: str, *, empty: Sql) -> Sql:
    """``parts`` joined by ``sep`` as a balanced tree of parentheses: SQLite's parser
    limits expression depth (1000), which a flat chain of a thousand ORs would exceed."""
    if not parts:
        return empty
    if len(parts) == 1:
        return parts[0]
    if len(parts) > 2:
        half = len(parts) // 2
        parts = [_join(parts[:half], sep, empty=empty), _join(parts[half:], sep, empty=empty)]
    params: list[Any] = []
    for _, p in parts:
        params.extend(p)
    return "(" + sep.join(sql for sql, _ in parts) + ")", params


def _field(key: str, cond: Any, whole: Filter) -> Sql:
    if isinstance(cond, dict):
        if not cond or not all(isinstance(op, str) and op.startswith("$") for op in cond):
            raise _fail(
                whole, f"the condition on {key!r} must be a value or a dict of operators like $in, $gte"
            )
        ops = list(cond.items())
    else:
        ops = [("$eq", cond)]
    target: _Target = _RecordField(key) if key in RECORD_FIELDS else _MetadataKey(key, whole)
    parts = [_operator(target, op, value, whole) for op, value in ops]
    return _join(parts, " AND ", empty=TRUE)


def _operator(target: _Target, op: str, value: Any, whole: Filter) -> Sql:
    if op not in FIELD_OPS:
        raise _fail(
            whole, f"unknown operator {op!r} on {target.name!r}; use one of {', '.join(sorted(FIELD_OPS))}"
        )
    if op == "$exists":
        if not isinstance(value, bool):
            raise _fail(whole, f"$exists takes true or false, got {_show(value)}")
        sql, params = target.exists()
        return (sql if value else f"NOT {sql}"), params
    if op in ("$in", "$nin"):
        if not isinstance(value, list | tuple | set | frozenset):
            raise _fail(whole, f"{op} on {target.name!r} takes a list, got {_show(value)}")
        for v in value:
            _check_scalar(target, v, whole)
        sql, params = target.member(list(value))
        return (sql, params) if op == "$in" else (f"NOT {sql}", params)
    _check_scalar(target, value, whole)
    if op == "$eq":
        return target.equals(value)
    if op == "$ne":
        sql, params = target.equals(value)
        return f"NOT {sql}", params
    if isinstance(value, date) and isinstance(target, _MetadataKey):
        return target.compare_time(RANGE_OPS[op], value)
    if isinstance(value, bool) or value is None:
        raise _fail(whole, f"{op} on {target.name!r} needs a number or a string, got {_show(value)}")
    return target.compare(RANGE_OPS[op], value)


def _check_scalar(target: _Target, value: Any, whole: Filter) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(whole, f"{target.name!r} compared with a non-finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise _fail(whole, f"{target.name!r} compared with an integer outside the 64-bit range")
    if isinstance(target, _RecordField):
        kind = RECORD_FIELDS[target.name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _fail(
                whole, f"{target.name!r} is {'an integer' if kind is int else 'a string'}, got {_show(value)}"
            )
    elif value is not None and not isinstance(value, str | int | float | bool | date):
        raise _fail(
            whole,
            f"metadata values compare with a string, number, boolean, null or datetime, got {_show(value)}",
        )


class _RecordField:
    """A column of ``pages``: never missing, one declared type."""

    def __init__(self, name: str) -> None:
        self.name = name

    def exists(self) -> Sql:
        return TRUE

    def equals(self, value: Any) -> Sql:
        return f"({self.name} = ?)", [value]

    def compare(self, op: str, value: Any) -> Sql:
        return f"({self.name} {op} ?)", [value]

    def member(self, values: list[Any]) -> Sql:
        return f"({self.name} IN (SELECT value FROM json_each(?)))", [json.dumps(values)]


class _MetadataKey:
    """A top-level key of the page's JSON metadata (a dotted name is one literal key)."""

    def __init__(self, key: str, whole: Filter) -> None:
        name = key.removeprefix("metadata.")
        if not name or '"' in name or any(ord(c) < 32 for c in name):
            raise _fail(whole, f"metadata key {key!r} is empty or contains a quote / control character")
        self.name = name
        # SQLite compares a path label with the key as it is written in the stored JSON,
        # where a backslash is escaped (json.dumps writes `\\`): escape it the same way.
        self.path = '$."' + name.replace("\\", "\\\\") + '"'

    def _typed(self, condition: str, params: list[Any]) -> Sql:
        # json_type() is NULL for a missing key: IFNULL makes every leaf a plain 0/1, so NOT works.
        return f"IFNULL({condition}, 0)", params

    def exists(self) -> Sql:
        return "(json_type(metadata, ?) IS NOT NULL)", [self.path]

    def equals(self, value: Any) -> Sql:
        p = self.path
        if isinstance(value, date):
            return self.compare_time("=", value)
        if value is None:
            return self._typed("json_type(metadata, ?) = 'null'", [p])
        if isinstance(value, bool):
            return self._typed("json_type(metadata, ?) = ?", [p, "true" if value else "false"])
        if isinstance(value, str):
            return self._typed(
                "(json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?)", [p, p, value]
            )
        return self._typed(
            f"(json_type(metadata, ?) IN {NUMBER_TYPES} AND json_extract(metadata, ?) = ?)", [p, p, value]
        )

    def compare(self, op: str, value: Any) -> Sql:
        p = self.path
        types = "('text')" if isinstance(value, str) else NUMBER_TYPES
        return self._typed(
            f"(json_type(metadata, ?) IN {types} AND json_extract(metadata, ?) {op} ?)", [p, p, value]
        )

    def compare_time(self, op: str, value: date) -> Sql:
        """A stored ISO 8601 string against a point in time (``julianday`` is NULL, so no
        match, for a string that is not a date)."""
        p = self.path
        return self._typed(
            f"(json_type(metadata, ?) = 'text' AND julianday(json_extract(metadata, ?)) {op} julianday(?))",
            [p, p, _iso_utc(value)],
        )

    def member(self, values: list[Any]) -> Sql:
        p = self.path
        strings = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        parts: list[Sql] = []
        if strings:
            parts.append(
                (
                    "(json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) IN (SELECT value FROM json_each(?)))",
                    [p, p, json.dumps(strings)],
                )
            )
        if numbers:
            parts.append(
                (
                    f"(json_type(metadata, ?) IN {NUMBER_TYPES} AND json_extract(metadata, ?) IN (SELECT value FROM json_each(?)))",
                    [p, p, json.dumps(numbers)],
                )
            )
        parts.extend(
            self.equals(v)
            for v in dict.fromkeys(v for v in values if v is None or isinstance(v, bool | date))
        )
        sql, params = _join(parts, " OR ", empty=FALSE)
        return self._typed(sql, params)


def parse_iso_datetime(text: str) -> datetime:
    """ISO 8601 text as a :class:`datetime`; a trailing ``Z`` (UTC) is read the same on every
    Python version (``datetime.fromisoformat`` only accepts it from 3.11).

    >>> parse_iso_datetime("2024-01-01T08:30:00Z").isoformat()
    '2024-01-01T08:30:00+00:00'
    """
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _iso_utc(value: date) -> str:
    """``value`` as the ISO 8601 text SQLite's ``julianday`` reads; aware times in UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat()


_Target = _RecordField | _MetadataKey
