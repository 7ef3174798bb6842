"""LlamaIndex ``MetadataFilters`` -> mmembed's pre-filter syntax (see ``mmembed.index.protocol``).

Page keys are mapped to the index's own record fields: ``file_path`` -> ``source``,
``page_number`` / ``page_label`` -> ``page`` (labels become ints), ``content_hash`` and
``id`` stay; any other key addresses the page's stored metadata.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    ExactMatchFilter,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.readers.mmembed.pages import CONTENT_HASH, FILE_NAME, FILE_PATH, PAGE_LABEL, PAGE_NUMBER

from mmembed.types import MMEmbedError

Where = dict[str, Any]


class UnsupportedFilterError(MMEmbedError, ValueError):
    """A LlamaIndex filter has no equivalent in mmembed's pre-filter."""


_OPERATORS: dict[FilterOperator, str] = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}
_FIELDS = {FILE_PATH: "source", "source": "source", PAGE_NUMBER: "page", PAGE_LABEL: "page", "page": "page"}
_FIELDS.update({CONTENT_HASH: "content_hash", "id": "id"})
SUPPORTED = ", ".join(op.name for op in _OPERATORS)


def to_where(filters: MetadataFilters | Where | None) -> Where | None:
    """The mmembed filter dict equivalent to ``filters`` (a dict is taken as already in mmembed syntax).

    Raises :class:`UnsupportedFilterError` for operators or conditions mmembed cannot apply
    (ANY, ALL, CONTAINS, TEXT_MATCH, IS_EMPTY, NOT) rather than silently ignoring them.
    """
    if filters is None or isinstance(filters, dict):
        return filters
    if not isinstance(filters, MetadataFilters):
        raise TypeError(
            f"filters must be MetadataFilters or an mmembed filter dict, got {type(filters).__name__}"
        )
    return _group(filters)


def _group(filters: MetadataFilters) -> Where:
    condition = filters.condition or FilterCondition.AND
    if condition not in (FilterCondition.AND, FilterCondition.OR):
        raise UnsupportedFilterError(
            f"filter condition {condition.value!r} is not supported by mmembed's pre-filter; "
            "use AND / OR and negated operators (NE, NIN) instead."
        )
    parts = [_group(f) if isinstance(f, MetadataFilters) else _leaf(f) for f in filters.filters]
    return {"$and" if condition == FilterCondition.AND else "$or": parts}


def _leaf(item: MetadataFilter | ExactMatchFilter) -> Where:
    operator = item.operator if isinstance(item, MetadataFilter) else FilterOperator.EQ
    mongo = _OPERATORS.get(operator)
    if mongo is None:
        raise UnsupportedFilterError(
            f"filter operator {operator.name} (on {item.key!r}) is not supported by mmembed's pre-filter; "
            f"supported operators: {SUPPORTED}."
        )
    if item.key == FILE_NAME:
        raise UnsupportedFilterError(
            f"cannot filter on {FILE_NAME!r}: the index stores the full path; filter on {FILE_PATH!r} instead."
        )
    key = _FIELDS.get(item.key, item.key)
    value: Any = item.value
    if key == "page":
        value = [_page(v, item.key) for v in value] if isinstance(value, list) else _page(value, item.key)
    return {key: {mongo: value}}


def _page(value: Any, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise UnsupportedFilterError(f"filter on {key!r} needs page numbers (1-based), got {value!r}.")
