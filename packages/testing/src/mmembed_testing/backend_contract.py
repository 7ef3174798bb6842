"""The behaviour every :class:`mmembed.index.IndexBackend` must have, as a pytest suite.

The embedded index runs it, and so must any other backend (a Qdrant one, say): subclass
:class:`IndexBackendContract` in a test module and say how to make a fresh, empty backend::

    from mmembed_testing.backend_contract import IndexBackendContract

    class TestMyBackend(IndexBackendContract):
        def make_backend(self, path, encoder):
            return MyBackend.create(path, encoder)

Everything is checked against independent references written here: brute-force scoring
of the stored vectors for search, and a plain-Python reading of the filter syntax of
:mod:`mmembed.index.protocol` for filters. No model is involved (random vectors).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import torch

from mmembed.index import FilterError, IndexBackend, PageInput, page_id
from mmembed.index.filters import parse_iso_datetime
from mmembed.scoring import score
from mmembed.types import EncoderInfo, MMEmbedError

DIM = 16
MULTI = EncoderInfo(
    name="test/multi", family="test", kind="multi", dim=DIM, similarity="maxsim", revision="r1"
)
SINGLE = EncoderInfo(name="test/single", family="test", kind="single", dim=DIM, similarity="cosine")
HASHES = [c * 64 for c in "abc"]  # stand-ins for the sha256 of doc0.pdf, doc1.pdf, doc2.pdf
RECORD_FIELDS = ("id", "source", "page", "content_hash")


def make_pages(n: int, *, seed: int = 0, single: bool = False, start: int = 0) -> list[PageInput]:
    """``n`` pages of three sources with metadata of every JSON type the filters compare:
    ``i`` (int), ``even`` (bool), ``lang`` (str), ``score`` (float), plus ``opt`` (None,
    a str or absent), ``tag`` (str or absent) and one key with a dot and a space."""
    g = torch.Generator().manual_seed(seed)
    pages = []
    for i in range(start, start + n):
        rows = 1 if single else int(torch.randint(1, 6, (1,), generator=g))
        metadata: dict[str, Any] = {
            "i": i,
            "even": i % 2 == 0,
            "lang": ["en", "fr", "de"][i % 3],
            "score": i / 2,
        }
        if i % 4 == 0:
            metadata["opt"] = None
        elif i % 4 == 1:
            metadata["opt"] = "set"
        if i % 3 == 0:
            metadata["tag"] = "xyz"[i % 9 // 3]
        if i == 5:
            metadata["weird key.with dots"] = 1
        pages.append(
            PageInput(
                embedding=torch.randn(rows, DIM, generator=g),
                source=f"doc{i % 3}.pdf",
                page=i + 1,
                content_hash=HASHES[i % 3],
                metadata=metadata,
            )
        )
    return pages


def brute_force(
    backend: IndexBackend, query: torch.Tensor, where: dict[str, Any] | None = None
) -> list[tuple[str, float]]:
    """Reference ranking: every matching record's stored vectors scored one by one (pages
    stored without vectors are never results)."""
    records = [r for r in backend.records(where) if r.n_vectors > 0]
    vectors = backend.get_embeddings([r.id for r in records])
    if not records:
        return []
    scores = score([query], [v for v in vectors if v is not None], backend.encoder.similarity)[0]
    return sorted(((r.id, float(s)) for r, s in zip(records, scores, strict=True)), key=lambda t: -t[1])


# -- the filter syntax, read independently of any backend ----------------------------------


def matches(page: PageInput, flt: dict[str, Any]) -> bool:
    """Does ``page`` match ``flt`` (the semantics documented in mmembed.index.protocol)?"""
    fields = {
        "id": page.resolved_id(),
        "source": page.source,
        "page": page.page,
        "content_hash": page.content_hash,
    }
    for key, cond in flt.items():
        if key == "$and":
            ok = all(matches(page, f) for f in cond)
        elif key == "$or":
            ok = any(matches(page, f) for f in cond)
        else:
            name = key.removeprefix("metadata.")
            present = key in RECORD_FIELDS or name in page.metadata
            value = fields[key] if key in RECORD_FIELDS else page.metadata.get(name)
            ops = cond if isinstance(cond, dict) else {"$eq": cond}
            ok = all(_op(present, value, op, arg) for op, arg in ops.items())
        if not ok:
            return False
    return True


def _same_type(a: Any, b: Any) -> bool:  # comparisons are type-strict; int and float mix, bool does not
    return type(a) is type(b) or (
        isinstance(a, int | float) and isinstance(b, int | float) and bool not in (type(a), type(b))
    )


def _op(present: bool, value: Any, op: str, arg: Any) -> bool:
    equal = present and _same_type(value, arg) and value == arg
    if op == "$eq":
        return equal
    if op == "$ne":
        return not equal
    if op == "$in":
        return any(present and _same_type(value, a) and value == a for a in arg)
    if op == "$nin":
        return not any(present and _same_type(value, a) and value == a for a in arg)
    if op == "$exists":
        return present == arg
    if not present or not _same_type(value, arg) or value is None or isinstance(value, bool):
        return False
    return {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op]


FILTERS: list[dict[str, Any]] = [
    {},
    {"source": "doc1.pdf"},
    {"page": 4},
    {"page": {"$in": [1, 2, 30]}},
    {"page": {"$nin": [1, 2, 3]}},
    {"page": {"$gte": 5, "$lt": 9}},
    {"page": {"$gt": 5, "$lte": 9}},
    {"source": {"$ne": "doc0.pdf"}},
    {"source": {"$gt": "doc0.pdf"}},
    {"content_hash": HASHES[2]},
    {"lang": "fr"},
    {"metadata.lang": "fr"},
    {"lang": {"$in": ["fr", "de"]}},
    {"lang": {"$nin": ["fr"]}},
    {"lang": {"$ne": "fr"}},
    {"even": True},
    {"even": {"$ne": True}},
    {"i": 3},
    {"i": 3.0},
    {"i": "3"},
    {"score": {"$gte": 2.5}},
    {"score": {"$gt": 1, "$lt": 4}},
    {"i": {"$in": [1, 2.0, "3", True, None]}},
    {"opt": {"$exists": True}},
    {"opt": {"$exists": False}},
    {"opt": None},
    {"opt": {"$ne": None}},
    {"tag": {"$in": ["x", "y"]}},
    {"tag": {"$gte": "y"}},
    {"lang": "fr", "i": {"$lt": 10}},
    {"$and": [{"lang": "fr"}, {"i": {"$gt": 3}}]},
    {"$or": [{"lang": "fr"}, {"page": 1}]},
    {"$or": [{"$and": [{"even": True}, {"lang": "en"}]}, {"tag": "z"}]},
    {"$or": []},
    {"$and": []},
    {"weird key.with dots": 1},
    {"id": {"$in": [page_id(HASHES[0], 1), page_id(HASHES[1], 2), page_id(HASHES[1], 1)]}},
]

# ISO 8601 strings in several forms and offsets (and values that are not dates at all).
PUBLISHED: list[Any] = [
    "2024-01-01T10:00:00+02:00",  # 08:00 UTC
    "2024-01-01T09:00:00Z",
    "2024-01-01T08:30:00",  # no offset: UTC
    "2024-01-01",  # midnight UTC
    "2023-12-31T23:30:00-01:00",  # 2024-01-01 00:30 UTC
    "2024-01-01T08:00:00.250+00:00",
    "not a date",
    20240101,
    None,  # key absent
]
NOON = datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=3)))  # 09:00 UTC
DATE_FILTERS: list[dict[str, Any]] = [
    {"published": {"$gte": datetime(2024, 1, 1, 8, 0)}},
    {"published": {"$gt": datetime(2024, 1, 1, 8, 0, tzinfo=UTC)}},
    {"published": {"$lt": NOON}},
    {"published": {"$lte": NOON}},
    {"published": {"$gte": date(2024, 1, 1), "$lt": datetime(2024, 1, 1, 8, 30)}},
    {"published": NOON},
    {"published": {"$ne": NOON}},
    {"published": {"$in": [NOON, date(2024, 1, 1)]}},
]


def matches_time(stored: Any, condition: Any) -> bool:
    """Reference for a date filter: ``stored`` parsed as ISO 8601 (no offset: UTC)."""
    try:
        when = parse_iso_datetime(stored) if isinstance(stored, str) else None
    except ValueError:
        when = None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ops = condition if isinstance(condition, dict) else {"$eq": condition}
    return all(_time_op(when, op, arg) for op, arg in ops.items())


def _time_op(when: datetime | None, op: str, arg: Any) -> bool:
    if op == "$ne":
        return not _time_op(when, "$eq", arg)
    if op == "$in":
        return any(_time_op(when, "$eq", a) for a in arg)
    if when is None:
        return False
    point = arg if isinstance(arg, datetime) else datetime(arg.year, arg.month, arg.day)
    point = point if point.tzinfo is not None else point.replace(tzinfo=UTC)
    return {
        "$eq": when == point,
        "$gt": when > point,
        "$gte": when >= point,
        "$lt": when < point,
        "$lte": when <= point,
    }[op]


INVALID_FILTERS: list[Any] = [
    {"$not": {"a": 1}},
    {"a": {"$regex": "x"}},
    {"a": {"$in": "x"}},
    {"a": {"$exists": 1}},
    {"a": {"nested": 1}},
    {"a": [1, 2]},
    {"page": "3"},
    {"source": 3},
    {"a": {"$gt": True}},
    {"a": {"$gt": None}},
    {"a": float("nan")},
    {"$or": {"a": 1}},
    ["a"],
]


class IndexBackendContract:
    """Subclass with ``make_backend(path, encoder)``; pytest collects the tests below.

    A backend that stores a transformed page (token pooling) overrides :meth:`stored_form`;
    one that stores vectors lossily (int8) may widen ``vector_tolerance``."""

    vector_tolerance = 1e-2
    """Absolute and relative tolerance of stored vectors (storage may be half precision)."""

    def make_backend(self, path: Path, encoder: EncoderInfo) -> IndexBackend:
        """A new, empty backend for vectors of ``encoder``, stored under ``path`` if it
        stores anything locally."""
        raise NotImplementedError

    def stored_form(self, embedding: torch.Tensor) -> torch.Tensor:
        """The ``(n_vectors, dim)`` vectors the backend keeps for a multi-vector page given
        ``embedding`` (default: the embedding itself)."""
        return embedding

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[IndexBackend]:
        made = self.make_backend(tmp_path / "index", MULTI)
        yield made
        made.close()

    @pytest.fixture
    def single_backend(self, tmp_path: Path) -> Iterator[IndexBackend]:
        made = self.make_backend(tmp_path / "single", SINGLE)
        yield made
        made.close()

    # -- storing -------------------------------------------------------------------------

    def test_is_an_index_backend_for_its_encoder(self, backend: IndexBackend) -> None:
        assert isinstance(backend, IndexBackend)
        assert backend.encoder == MULTI
        assert backend.count() == 0 and list(backend.records()) == [] and backend.sources() == {}

    def test_added_pages_come_back_as_stored(self, backend: IndexBackend) -> None:
        pages = make_pages(7)
        ids = backend.add(pages)
        assert ids == [p.resolved_id() for p in pages] and ids[0] == page_id(HASHES[0], 1)
        assert backend.count() == 7
        records = backend.get([*ids[:3], "unknown"])
        assert records[3] is None
        for page, record in zip(pages, records[:3], strict=False):
            assert record is not None
            assert (record.id, record.source, record.page, record.content_hash) == (
                page.resolved_id(),
                page.source,
                page.page,
                page.content_hash,
            )
            expected = self.stored_form(page.embedding)
            assert record.metadata == page.metadata and record.n_vectors == expected.shape[0]
        vectors = backend.get_embeddings([ids[4], "unknown"])
        assert vectors[1] is None and vectors[0] is not None
        tol = self.vector_tolerance
        torch.testing.assert_close(vectors[0], self.stored_form(pages[4].embedding), atol=tol, rtol=tol)
        assert backend.sources() == {f"doc{i}.pdf": HASHES[i] for i in range(3)}

    def test_an_id_already_present_is_refused_and_the_batch_stores_nothing(
        self, backend: IndexBackend
    ) -> None:
        pages = make_pages(4)
        backend.add(pages[:2])
        with pytest.raises(MMEmbedError):
            backend.add(pages[2:] + pages[:1])  # the last page is already there
        assert backend.count() == 2
        with pytest.raises(MMEmbedError):
            backend.add([pages[2], pages[2]])  # twice in one batch
        assert backend.count() == 2

    def test_a_bad_page_fails_the_whole_batch(self, backend: IndexBackend) -> None:
        pages = make_pages(3)
        pages[1].embedding = torch.randn(2, DIM + 1)  # wrong dimension
        with pytest.raises(MMEmbedError, match=str(DIM)):
            backend.add(pages)
        assert backend.count() == 0

    def test_upsert_replaces_pages_with_the_same_id(self, backend: IndexBackend) -> None:
        pages = make_pages(3)
        backend.add(pages)
        replacement = PageInput(
            torch.randn(2, DIM), pages[1].source, pages[1].page, pages[1].content_hash, {"new": 1}
        )
        fresh = make_pages(1, start=10)[0]
        assert backend.upsert([replacement, fresh]) == [replacement.resolved_id(), fresh.resolved_id()]
        assert backend.count() == 4
        record = backend.get([replacement.resolved_id()])[0]
        stored = self.stored_form(replacement.embedding).shape[0]
        assert record is not None and record.metadata == {"new": 1} and record.n_vectors == stored

    def test_delete_by_ids_and_or_filter(self, backend: IndexBackend) -> None:
        pages = make_pages(12)
        backend.add(pages)
        assert backend.delete([pages[0].resolved_id(), "unknown"]) == 1
        assert backend.delete(where={"lang": "fr"}) == 4 and backend.count() == 7
        # ids and a filter: only the ids that also match it
        assert backend.delete([pages[3].resolved_id(), pages[2].resolved_id()], where={"lang": "en"}) == 1
        assert backend.get([pages[2].resolved_id()])[0] is not None
        assert backend.delete(where={}) == 6 and backend.count() == 0
        assert backend.search([torch.randn(2, DIM)], k=3) == [[]]

    # -- filters -------------------------------------------------------------------------

    @pytest.mark.parametrize("flt", FILTERS, ids=[json.dumps(f) for f in FILTERS])
    def test_filters_select_what_the_syntax_says(self, backend: IndexBackend, flt: dict[str, Any]) -> None:
        pages = make_pages(12)
        backend.add(pages)
        expected = {p.resolved_id() for p in pages if matches(p, flt)}
        assert {r.id for r in backend.records(flt)} == expected
        assert backend.count(flt) == len(expected)
        hits = backend.search([torch.randn(3, DIM)], k=50, where=flt)[0]
        assert {h.id for h in hits} == expected  # a pre-filter: every match is ranked
        assert backend.delete(where=flt) == len(expected)
        assert backend.count() == 12 - len(expected)

    @pytest.mark.parametrize("flt", DATE_FILTERS, ids=[repr(f) for f in DATE_FILTERS])
    def test_dates_compare_as_points_in_time(self, backend: IndexBackend, flt: dict[str, Any]) -> None:
        pages = make_pages(len(PUBLISHED))
        for page, published in zip(pages, PUBLISHED, strict=True):
            if published is not None:
                page.metadata["published"] = published
        backend.add(pages)
        expected = {
            p.resolved_id() for p in pages if matches_time(p.metadata.get("published"), flt["published"])
        }
        assert {r.id for r in backend.records(flt)} == expected
        assert {h.id for h in backend.search([torch.randn(2, DIM)], k=50, where=flt)[0]} == expected

    @pytest.mark.parametrize("flt", INVALID_FILTERS, ids=[repr(f) for f in INVALID_FILTERS])
    def test_invalid_filters_are_refused(self, backend: IndexBackend, flt: Any) -> None:
        with pytest.raises(FilterError, match="invalid filter"):
            backend.count(flt)

    # -- search --------------------------------------------------------------------------

    def test_search_is_exact(self, backend: IndexBackend) -> None:
        pages = make_pages(30)
        backend.add(pages)
        target = pages[11]
        query = target.embedding[:2] * 5 + 0.01 * torch.randn(2, DIM)
        hits = backend.search([query], k=5)[0]
        assert hits[0].id == target.resolved_id() and hits[0].record.page == 12
        expected = brute_force(backend, query)[:5]
        assert [h.id for h in hits] == [i for i, _ in expected]
        assert [h.score for h in hits] == pytest.approx([s for _, s in expected], rel=1e-3, abs=1e-3)

    def test_several_queries_and_k(self, backend: IndexBackend) -> None:
        backend.add(make_pages(10))
        queries = [torch.randn(3, DIM), torch.randn(1, DIM), torch.randn(7, DIM)]
        results = backend.search(queries, k=4)
        assert [len(r) for r in results] == [4, 4, 4]
        for query, hits in zip(queries, results, strict=True):
            assert [h.id for h in hits] == [i for i, _ in brute_force(backend, query)[:4]]
        assert len(backend.search(queries, k=100)[0]) == 10
        assert backend.search(queries, k=0) == [[], [], []]
        with pytest.raises(MMEmbedError):
            backend.search([torch.randn(2, DIM + 1)], k=1)  # wrong dimension

    def test_pages_without_vectors_are_stored_but_never_hits(self, backend: IndexBackend) -> None:
        pages = make_pages(4)
        empty = PageInput(torch.zeros(0, DIM), "notes.txt", 1, HASHES[0] + "", {"kind": "note"}, id="note-1")
        backend.add([*pages, empty])
        assert backend.count() == 5 and backend.count({"kind": "note"}) == 1
        record = backend.get(["note-1"])[0]
        assert record is not None and record.n_vectors == 0
        stored = backend.get_embeddings(["note-1"])[0]
        assert stored is not None and tuple(stored.shape) == (0, DIM)
        hits = backend.search([torch.randn(2, DIM)], k=10)[0]
        assert "note-1" not in {h.id for h in hits} and len(hits) == 4

    def test_single_vector_pages_score_by_the_encoder_similarity(self, single_backend: IndexBackend) -> None:
        pages = make_pages(8, single=True)
        single_backend.add(pages)
        query = pages[5].embedding * 3  # cosine ignores the scale
        hits = single_backend.search([query], k=3)[0]
        assert hits[0].id == pages[5].resolved_id() and hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert [h.id for h in hits] == [i for i, _ in brute_force(single_backend, query)[:3]]
