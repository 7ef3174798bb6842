"""LlamaIndex MetadataFilters -> mmembed pre-filter translation."""

from __future__ import annotations

import pytest
from llama_index.core.vector_stores.types import (
    ExactMatchFilter,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.retrievers.mmembed import UnsupportedFilterError, to_where


def f(key: str, value: object, op: FilterOperator = FilterOperator.EQ) -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=op)  # type: ignore[arg-type]


def test_page_keys_map_to_record_fields() -> None:
    filters = MetadataFilters(
        filters=[
            f("file_path", "/docs/a.pdf"),
            f("page_label", ["1", "3"], FilterOperator.IN),
            f("page_number", 2, FilterOperator.GTE),
            f("content_hash", "abc", FilterOperator.NE),
        ]
    )
    assert to_where(filters) == {
        "$and": [
            {"source": {"$eq": "/docs/a.pdf"}},
            {"page": {"$in": [1, 3]}},
            {"page": {"$gte": 2}},
            {"content_hash": {"$ne": "abc"}},
        ]
    }


def test_metadata_keys_operators_and_nesting() -> None:
    filters = MetadataFilters(
        filters=[
            f("year", 2020, FilterOperator.GT),
            f("year", 2024, FilterOperator.LTE),
            MetadataFilters(
                filters=[
                    f("lang", ["fr", "de"], FilterOperator.NIN),
                    ExactMatchFilter(key="team", value="solar"),
                ],
                condition=FilterCondition.OR,
            ),
        ]
    )
    assert to_where(filters) == {
        "$and": [
            {"year": {"$gt": 2020}},
            {"year": {"$lte": 2024}},
            {"$or": [{"lang": {"$nin": ["fr", "de"]}}, {"team": {"$eq": "solar"}}]},
        ]
    }


def test_mmembed_dicts_pass_through() -> None:
    where = {"title": {"$exists": True}}
    assert to_where(where) is where
    assert to_where(None) is None


@pytest.mark.parametrize(
    "operator",
    [
        FilterOperator.ANY,
        FilterOperator.ALL,
        FilterOperator.CONTAINS,
        FilterOperator.TEXT_MATCH,
        FilterOperator.TEXT_MATCH_INSENSITIVE,
        FilterOperator.IS_EMPTY,
    ],
)
def test_unsupported_operators_are_clear_errors(operator: FilterOperator) -> None:
    value: object = ["x"] if operator in (FilterOperator.ANY, FilterOperator.ALL) else "x"
    with pytest.raises(
        UnsupportedFilterError, match=rf"{operator.name}.*'tags'.*supported operators: EQ, NE"
    ):
        to_where(MetadataFilters(filters=[f("tags", value, operator)]))


def test_unsupported_condition_and_keys() -> None:
    with pytest.raises(UnsupportedFilterError, match="'not'"):
        to_where(MetadataFilters(filters=[f("a", 1)], condition=FilterCondition.NOT))
    with pytest.raises(UnsupportedFilterError, match="file_path"):
        to_where(MetadataFilters(filters=[f("file_name", "a.pdf")]))
    with pytest.raises(UnsupportedFilterError, match="page numbers"):
        to_where(MetadataFilters(filters=[f("page_label", "ii")]))
