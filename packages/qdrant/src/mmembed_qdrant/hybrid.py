"""Text and hybrid search on the Qdrant backends, and ``--backfill-text`` for their stores.

The text side is the ``text`` sparse vector (:mod:`.text`: BM25 term weights written with
each page, the engine's ``Modifier.IDF`` at query time). A hybrid search runs both sides in
one batched request, each ``max(k, 50)`` deep; for reciprocal rank fusion a second request
runs the engine's own fusion query (``FusionQuery(RRF)`` in qdrant-client, ``Fusion.Rrf`` in
qdrant-edge) over two prefetches restricted to the pages each side found and rescored exactly
(same scores, so same ranks): the engine fuses exactly those two lists, at the cost of a few
dozen points instead of a second search of every page. It sets the scores and the order (ties
broken by core's rule: visual order, then text order). The two side lists say which side(s)
found each hit, at which rank and score (``SearchHit.matches``, as on the embedded index). The
``alpha`` weighted sum is not a Qdrant fusion: it is computed here, by core's
:func:`~mmembed.index.fusion.fuse`, from the two side lists.

Qdrant's RRF adds ``1 / (k' + position)`` with 0-based positions; core's adds
``1 / (rrf_k + rank)`` with 1-based ranks, so the engine gets ``k' = rrf_k + 1`` and both
give the same scores (in float32 on qdrant-edge).

Metadata filters are the backends' usual pre-filter (:meth:`~.layout.QdrantPages._matching`):
both sides and the fusion search only the matching points.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mmembed.index import Filter, IndexOptionError
from mmembed.index.fusion import SearchOptions, fuse, with_side
from mmembed.index.hybrid import check_texts
from mmembed.index.plan import query_vectors
from mmembed.scoring import EmbeddingsLike, as_ragged
from mmembed.types import MMEmbedError, SearchHit, SideMatch

from .text import TEXT, TOKENIZER, document_vector, query_vector

if TYPE_CHECKING:
    from .layout import QdrantPages

REPAIR = "mmembed index --backfill-text --index"


def missing_text_vector(index: QdrantPages) -> MMEmbedError:
    return MMEmbedError(
        f"the Qdrant index at {index.location} was created before text search existed, so it has no "
        f"'{TEXT}' sparse vector; add it and fill it with `{REPAIR} URI` (uses the page text stored "
        "since, then the recorded source files), or search with mode='visual'"
    )


def search_modes(
    index: QdrantPages,
    options: SearchOptions,
    k: int,
    queries: EmbeddingsLike | None,
    texts: object,
    where: Filter | None,
) -> list[list[SearchHit]]:
    """``search(..., mode="text" | "hybrid")`` on a Qdrant store (``k`` already checked)."""
    from .layout import _record, point_id

    n_queries = None if queries is None else len(as_ragged(queries))
    query_texts = check_texts(texts, n_queries, options.mode)
    if options.mode == "hybrid" and queries is None:
        raise MMEmbedError("mode='hybrid' needs the query embeddings as well as texts")
    if not index.text_vector:
        raise missing_text_vector(index)
    vectors = None
    if options.mode == "hybrid" and queries is not None:
        vectors = query_vectors(queries, index.encoder, index.location)
    matching = index._matching(where)
    if k == 0 or (matching is not None and not matching):
        return [[] for _ in query_texts]
    only = None if matching is None else [point_id(i) for i in matching]
    engine_k = None if options.alpha is not None else options.rrf_k + 1  # (see the module's docstring)
    depth = options.depth(k)
    out: list[list[SearchHit]] = []
    for i, text in enumerate(query_texts):
        sparse = query_vector(text)
        if options.mode == "text":
            if not sparse[0]:
                out.append([])  # no word to look for
                continue
            found = index._call("search text", lambda s=sparse: index._query_text(s, k, only))  # type: ignore[misc]
            found = sorted(found, key=lambda p: (-float(p.score), _id(p)))  # equal scores: a fixed order
            out.append(with_side([SearchHit(_id(p), float(p.score), _record(p)) for p in found], "text"))
            continue
        assert vectors is not None
        offsets = vectors.offsets.tolist()
        rows = vectors.values[offsets[i] : offsets[i + 1]]  # (query_tokens, dim)
        visual, read, fused = index._call(
            "search",
            lambda r=rows, s=sparse: index._query_hybrid(r, s, depth, only, engine_k),  # type: ignore[misc]
        )
        if fused is None:  # alpha: core's weighted sum over the two side lists
            sides = [[SearchHit(_id(p), float(p.score), _record(p)) for p in side] for side in (visual, read)]
            out.append(fuse(sides[0], sides[1], k, alpha=options.alpha, rrf_k=options.rrf_k))
        else:
            matches = _side_matches(visual, read)
            # Ties in the engine's order vary from call to call (qdrant-edge): core's rule breaks
            # them (visual order, then text order), over ``depth`` fused points so a tie at
            # the k-th place is broken the same way too.
            order = {pid: n for n, pid in enumerate(dict.fromkeys(_id(p) for p in (*visual, *read)))}
            ranked = sorted(fused, key=lambda p: (-float(p.score), order.get(_id(p), len(order))))[:k]
            out.append(
                [
                    SearchHit(_id(p), float(p.score), _record(p), matches=matches.get(_id(p), ()))
                    for p in ranked
                ]
            )
    return out


def _id(point: Any) -> str:
    return str((point.payload or {})["id"])


def _side_matches(visual: list[Any], text: list[Any]) -> dict[str, tuple[SideMatch, ...]]:
    """Page id -> its rank and score on each side that found it (visual first)."""
    found: dict[str, list[SideMatch]] = {}
    for side, points in (("visual", visual), ("text", text)):
        for rank, p in enumerate(points, start=1):
            found.setdefault(_id(p), []).append(SideMatch(side, rank, float(p.score)))  # type: ignore[arg-type]
    return {i: tuple(m) for i, m in found.items()}


# -- --backfill-text (mmembed.text_backfill drives these three) -------------------------------


def prepare_text_store(index: QdrantPages, tokenizer: str | None) -> dict[str, bool]:
    """Add the ``text`` sparse vector when the store has none, then give it to every page
    whose text is stored in its payload (indexed since, or left half-done by a killed run)."""
    if tokenizer is not None and tokenizer != TOKENIZER:
        raise IndexOptionError(
            f"the Qdrant backends store text with the {TOKENIZER!r} tokenizer only, not {tokenizer!r}; "
            "use an index folder (the embedded index) for another tokenizer"
        )
    index._writable()
    created = False
    with index._mutex:
        if not index.text_vector:
            index._call("add the text vector", index._add_text_vector)
            index.text_vector = created = True
        batch: list[tuple[str, str]] = []
        for point in _without_vector(index, ["id", "text"]):
            text = (point.payload or {}).get("text")
            if isinstance(text, str):
                batch.append((str(point.payload["id"]), text))
        _store(index, batch)
    return {"created": created, "rebuilt": False}


def pages_without_text(index: QdrantPages) -> list[tuple[str, str, int, str]]:
    """``(id, source, page, content_hash)`` of the pages without a text vector."""
    rows = [
        (str(p["id"]), str(p["source"]), int(p["page"]), str(p["content_hash"]))
        for p in (q.payload or {} for q in _without_vector(index, ["id", "source", "page", "content_hash"]))
    ]
    return sorted(rows, key=lambda r: (r[1], r[2]))


def store_texts(index: QdrantPages, texts: Sequence[tuple[str, str]]) -> int:
    """Give pages (by id) their text and text vector; ids no longer stored are skipped."""
    from mmembed.index.text import check_page_text

    index._writable()
    cleaned = [(i, c) for i, c in ((i, check_page_text(t, f"page {i!r}")) for i, t in texts) if c]
    with index._mutex:
        present = set(index._present([i for i, _ in cleaned]))
        return _store(index, [(i, t) for i, t in cleaned if i in present])


def _store(index: QdrantPages, pairs: list[tuple[str, str]]) -> int:
    from .layout import SCROLL_PAGE, point_id

    stored = 0
    for start in range(0, len(pairs), SCROLL_PAGE):
        items = []
        for page, text in pairs[start : start + SCROLL_PAGE]:
            sparse = document_vector(text)
            items.append((point_id(page), text, None if sparse is None else index._sparse(sparse)))
        index._call("store page text", lambda items=items: index._set_text(items))  # type: ignore[misc]
        stored += sum(1 for _, _, v in items if v is not None)
    return stored


def _without_vector(index: QdrantPages, keys: list[str]) -> Iterator[Any]:
    if not index.text_vector:
        yield from index._scroll([], keys)
    else:
        yield from index._scroll([("no_vector", TEXT, None)], keys)


def get_texts(index: QdrantPages, ids: Sequence[str]) -> list[str | None]:
    """The stored page text of ``ids`` in order (``None``: unknown id, or no text)."""
    found = {
        str(p.payload["id"]): p.payload.get("text")
        for p in index._retrieve(list(ids), with_payload=["id", "text"])
    }
    return [t if isinstance(t := found.get(i), str) else None for i in ids]


__all__ = [
    "get_texts",
    "missing_text_vector",
    "pages_without_text",
    "prepare_text_store",
    "search_modes",
    "store_texts",
]
