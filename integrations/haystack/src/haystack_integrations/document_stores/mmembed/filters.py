"""Translate Haystack filters into the filter syntax of mmembed's index.

Haystack filters (``{"field": "meta.year", "operator": ">=", "value": 2020}``, combined with
``{"operator": "AND" | "OR" | "NOT", "conditions": [...]}``) are rewritten into mmembed's
dict syntax (see :mod:`mmembed.index.protocol`), so filtering happens inside the index
before scoring. ``NOT`` is pushed down to the comparisons (De Morgan), keeping Haystack's
meaning for missing fields: ``!=`` and ``not in`` match documents that lack the field,
``== None`` matches documents whose field is missing or null, and ``>``/``>=``/``<``/``<=``
never match a missing or null field.

Fields: ``meta.<key>`` (top-level metadata keys; a bare ``<key>`` is read as ``meta.<key>``
like Haystack's legacy filters), ``id`` and ``content``. A page's own fields
``meta.file_path`` / ``meta.page_number`` / ``meta.content_hash`` are filtered the way the store
returns them: on the index's ``source`` / ``page`` / ``content_hash`` columns for pages indexed by
mmembed itself (the CLI, another adapter), on the stored meta for documents Haystack wrote. Values compare strictly by type
(``2020`` does not match ``"2020"``); strings can be ordered only when they are ISO 8601
dates, and are then compared as points in time (the filter's date becomes a ``datetime``,
which mmembed's index compares chronologically with stored date strings, time zones
honoured; a date without one counts as UTC).
"""

from __future__ import annotations

import math
from dataclasses import fields as dataclass_fields
from typing import Any

from haystack import Document
from haystack.errors import FilterError

from mmembed.index.filters import parse_iso_datetime

CONTENT_KEY = "haystack.content"
"""Metadata key of the index under which a document's ``content`` is stored."""

MARKER_KEY = "haystack.document"
"""Metadata key marking a page written by this store (its ``meta`` is stored verbatim)."""

CoreFilter = dict[str, Any]

_MATCH_ALL: CoreFilter = {"$and": []}
_MATCH_NONE: CoreFilter = {"$or": []}
_ORDERING = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}
# NOT (x > v) is x <= v for documents that have a comparable value.
_ORDERING_NEGATION = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}
_COMPARISONS = {"==", "!=", "in", "not in", *_ORDERING}
_LOGICAL = {"AND", "OR", "NOT"}
_UNFILTERABLE_FIELDS = {f.name for f in dataclass_fields(Document)} - {"id", "content", "meta"}
# meta keys a page indexed by mmembed gets from the index's own columns (see documents.to_document)
_PAGE_COLUMNS = {"file_path": "source", "page_number": "page", "content_hash": "content_hash"}
_COLUMNS = {"id", *_PAGE_COLUMNS.values()}


def translate_filters(filters: dict[str, Any] | None) -> CoreFilter | None:
    """The mmembed index filter equivalent to Haystack ``filters`` (``None`` = no filter).

    :raises FilterError: for a malformed filter or an operator/value mmembed cannot express.
    """
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise FilterError(f"filters must be a dict, got {type(filters).__name__}")
    return _node(filters, negate=False)


def _node(node: Any, *, negate: bool) -> CoreFilter:
    if not isinstance(node, dict):
        raise FilterError(f"each filter condition must be a dict, got {node!r}")
    if "field" in node:
        return _comparison(node, negate=negate)
    return _logical(node, negate=negate)


def _logical(node: dict[str, Any], *, negate: bool) -> CoreFilter:
    if "operator" not in node:
        raise FilterError(f"'operator' key missing in {node}")
    if "conditions" not in node:
        raise FilterError(f"'conditions' key missing in {node}")
    operator, conditions = node["operator"], node["conditions"]
    if operator not in _LOGICAL:
        raise FilterError(f"unknown logical operator {operator!r}; use one of {sorted(_LOGICAL)}")
    if not isinstance(conditions, list):
        raise FilterError(f"'conditions' must be a list of filters, got {conditions!r}")
    if operator == "NOT":  # NOT (c1 AND c2 ...)
        operator, negate = "AND", not negate
    # De Morgan: a negated AND is an OR of negations and vice versa.
    use_and = (operator == "AND") != negate
    parts = [_node(condition, negate=negate) for condition in conditions]
    return {"$and" if use_and else "$or": parts}


def _comparison(node: dict[str, Any], *, negate: bool) -> CoreFilter:
    for key in ("operator", "value"):
        if key not in node:
            raise FilterError(f"'{key}' key missing in {node}")
    operator, value = node["operator"], node["value"]
    if operator not in _COMPARISONS:
        raise FilterError(f"unknown comparison operator {operator!r}; use one of {sorted(_COMPARISONS)}")
    key = _key(node["field"])
    if operator in ("!=", "not in"):  # the positive twin, negated
        operator, negate = ("==" if operator == "!=" else "in"), not negate
    if operator == "==":
        value = _scalar(value, operator)
    elif operator == "in":
        value = _list(value, operator)
    else:
        value = _orderable(value, operator)
    column = _PAGE_COLUMNS.get(key.removeprefix("metadata."))
    on_key = _compare(key, operator, value, negate=negate)
    if column is None:
        return on_key
    # Haystack's own documents keep these keys in their meta; pages indexed elsewhere have them as columns.
    written_here = {"metadata." + MARKER_KEY: True}
    indexed_elsewhere = {"metadata." + MARKER_KEY: {"$exists": False}}
    on_column = _compare_column(column, operator, value, negate=negate)
    return {"$or": [{"$and": [written_here, on_key]}, {"$and": [indexed_elsewhere, on_column]}]}


def _compare(key: str, operator: str, value: Any, *, negate: bool) -> CoreFilter:
    if operator == "==":
        return _equal(key, value, negate=negate)
    if operator == "in":
        return _member(key, value, negate=negate)
    return _ordering(key, operator, value, negate=negate)


def _compare_column(column: str, operator: str, value: Any, *, negate: bool) -> CoreFilter:
    """A comparison on a record column: never missing or null, of one type (int ``page``, else str);
    a value of another type matches nothing (everything when negated), as it would in Haystack."""
    kind: type = int if column == "page" else str

    def fits(v: Any) -> bool:
        return isinstance(v, kind) and not isinstance(v, bool)

    if operator == "in":
        return _member(column, [v for v in value if fits(v)], negate=negate)
    if operator not in _ORDERING and not fits(value):
        return _MATCH_ALL if negate else _MATCH_NONE
    if operator in _ORDERING:
        if kind is int and isinstance(value, float) and not isinstance(value, bool):
            # pages are whole numbers: page > 2.5 is page >= 3, page <= 2.5 is page <= 2
            operator, value = _whole_bound(operator, value)
        if not fits(value):  # a date against a file path or hash, a string against a page number
            return _MATCH_ALL if negate else _MATCH_NONE
        if negate:
            operator = _ORDERING_NEGATION[operator]
        return {column: {_ORDERING[operator]: value}}
    return _equal(column, value, negate=negate)


def _whole_bound(operator: str, value: float) -> tuple[str, int]:
    if operator in (">", "<="):
        return operator, math.floor(value)
    return operator, math.ceil(value)  # ">=" and "<"


def _key(field: Any) -> str:
    if not isinstance(field, str) or not field:
        raise FilterError(f"'field' must be a non-empty string, got {field!r}")
    if field == "id":
        return "id"
    if field == "content":
        return "metadata." + CONTENT_KEY
    if field in _UNFILTERABLE_FIELDS:
        raise FilterError(
            f"cannot filter on the document's {field!r}; filter on 'id', 'content' or 'meta.<key>'"
        )
    name = field.removeprefix("meta.")
    if not name or "." in name:
        raise FilterError(
            f"cannot filter on {field!r}: only top-level metadata keys ('meta.<key>') can be filtered, "
            "not nested ones; store the value under its own top-level meta key"
        )
    # Explicit prefix: meta keys such as 'page' or 'source' must not address the index's own columns.
    return "metadata." + name


def _scalar(value: Any, operator: str) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise FilterError(
        f"operator {operator!r} compares with a string, number, boolean or None, got {type(value).__name__}"
    )


def _list(value: Any, operator: str) -> list[Any]:
    if not isinstance(value, list):
        raise FilterError(f"operator {operator!r} takes a list of values, got {type(value).__name__}")
    return [_scalar(v, operator) for v in value]


def _missing_or_null(key: str) -> CoreFilter:
    if key in _COLUMNS:  # a column: never missing, never null
        return _MATCH_NONE
    return {"$or": [{key: {"$exists": False}}, {key: None}]}


def _equal(key: str, value: Any, *, negate: bool) -> CoreFilter:
    if value is None:
        if key in _COLUMNS:
            return _MATCH_ALL if negate else _MATCH_NONE
        return {key: {"$exists": True, "$ne": None}} if negate else _missing_or_null(key)
    # The index's $ne, like Haystack's !=, also matches documents without the key.
    return {key: {"$ne": value}} if negate else {key: value}


def _member(key: str, values: list[Any], *, negate: bool) -> CoreFilter:
    if key in _COLUMNS:  # columns are never None
        values = [v for v in values if v is not None]
    if negate:  # not in: a missing key matches unless None is one of the values
        if None in values:
            return {key: {"$exists": True, "$nin": values}}
        return {key: {"$nin": values}}
    if None in values:
        return {"$or": [{key: {"$in": values}}, {key: {"$exists": False}}]}
    return {key: {"$in": values}}


def _orderable(value: Any, operator: str) -> Any:
    """An ordering comparison's value: ``None``, a number, or an ISO 8601 date as a ``datetime``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FilterError(
            f"operator {operator!r} compares with a number or an ISO 8601 date string, got {value!r}"
        )
    if isinstance(value, str):
        try:
            return parse_iso_datetime(value)
        except ValueError:
            raise FilterError(
                f"cannot order by the string {value!r} with {operator!r}: strings are only comparable "
                "when they are ISO 8601 dates"
            ) from None
    return value


def _ordering(key: str, operator: str, value: Any, *, negate: bool) -> CoreFilter:
    if value is None:  # Haystack: nothing is ordered against None
        return _MATCH_ALL if negate else _MATCH_NONE
    if not negate:
        return {key: {_ORDERING[operator]: value}}
    flipped = _ORDERING[_ORDERING_NEGATION[operator]]
    return {"$or": [{key: {flipped: value}}, _missing_or_null(key)]}
