"""Text and hybrid search over the embedded index: the text side (FTS5 ``bm25()``), the
visual side (the index's own vector search), fused by :mod:`mmembed.index.fusion`.

Both sides take the same compiled metadata filter, applied before each side's top-k, so a
filter means the same thing in every mode. :class:`~mmembed.index.local.LocalIndex` calls
in here from ``search(..., mode=...)`` and ``search_text``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from ..scoring import EmbeddingsLike, as_ragged
from ..types import MMEmbedError, PageRecord, SearchHit
from . import text as text_store
from .filters import Filter, Sql, compile_filter
from .fusion import SearchOptions, fuse, with_side

RecordsByRow = Callable[[sqlite3.Connection, Sequence[int]], dict[int, PageRecord]]


def check_texts(texts: object, n_queries: int | None, mode: str) -> list[str]:
    """The query strings a text or hybrid search needs: one per query vector set."""
    if texts is None:
        raise MMEmbedError(
            f"mode={mode!r} searches the pages' text, so it needs the query text: pass texts=[...] "
            "(mmembed.Retriever does this for you)"
        )
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise MMEmbedError(f"texts must be a list of query strings, got {type(texts).__name__}")
    if n_queries is not None and len(texts) != n_queries:
        raise MMEmbedError(
            f"mode={mode!r} got {len(texts)} query text(s) for {n_queries} query embedding(s); give one "
            "text per query"
        )
    return list(texts)


def missing_text_store(folder: Path) -> MMEmbedError:
    return MMEmbedError(
        f"the index at {folder} was built before text search existed, so it stores no page text; fill "
        f"it with `mmembed index --backfill-text --index {folder}` (reads the recorded source files), or "
        "search with mode='visual'"
    )


def text_search(
    conn: sqlite3.Connection,
    folder: Path,
    tokenizer: str | None,
    texts: Sequence[str],
    k: int,
    where: Filter | None,
    records: RecordsByRow,
    page_count: Callable[[], int] | None = None,
) -> list[list[SearchHit]]:
    """Top-``k`` pages by bm25 for each query text, in one read transaction ``conn``."""
    checked = check_text_store(conn, folder, tokenizer)
    per_query = text_matches(conn, folder, checked, texts, k, compile_filter(where), page_count)
    wanted = sorted({m.row for matches in per_query for m in matches})
    by_row = records(conn, wanted)
    return [
        with_side([SearchHit(by_row[m.row].id, m.score, by_row[m.row]) for m in matches], "text")
        for matches in per_query
    ]


def check_text_store(conn: sqlite3.Connection, folder: Path, tokenizer: str | None) -> str:
    """The index's text tokenizer, once its text tables are known to be there."""
    if tokenizer is None:
        raise missing_text_store(folder)
    if not text_store.has_text_tables(conn):
        raise text_store.damaged_text(folder, "its text tables are missing")
    return tokenizer


def text_matches(
    conn: sqlite3.Connection,
    folder: Path,
    tokenizer: str,
    texts: Sequence[str],
    k: int,
    compiled: Sql,
    page_count: Callable[[], int] | None = None,
) -> list[list[text_store.TextMatch]]:
    """The text side's ranked rows per query text (no records read) among the pages of the
    compiled filter, after :func:`check_text_store`. ``page_count`` caches the text table's
    size (see :func:`~mmembed.index.text.informative_terms`)."""
    return [
        text_store.search_rows(
            conn, t, k, compiled, tokenizer=tokenizer, folder=folder, page_count=page_count
        )
        for t in texts
    ]


def search_modes(
    options: SearchOptions,
    k: int,
    texts: Sequence[str],
    visual: Callable[[int], list[list[SearchHit]]] | None,
    text: Callable[[Sequence[str], int], list[list[SearchHit]]],
) -> list[list[SearchHit]]:
    """``mode="text"``: the text side alone; ``"hybrid"``: both sides ``options.depth(k)``
    deep, fused per query. ``visual(depth)`` runs the backend's own vector search."""
    if options.mode == "text":
        return text(texts, k)
    assert visual is not None
    depth = options.depth(k)
    seen = visual(depth)
    read = text(texts, depth)
    return [fuse(v, t, k, alpha=options.alpha, rrf_k=options.rrf_k) for v, t in zip(seen, read, strict=True)]


def search_by_mode(
    options: SearchOptions,
    k: int,
    queries: EmbeddingsLike | None,
    texts: object,
    visual: Callable[[EmbeddingsLike, int], list[list[SearchHit]]],
    text: Callable[[Sequence[str], int], list[list[SearchHit]]],
) -> list[list[SearchHit]]:
    """A ``search(..., mode="text" | "hybrid")``: checks the query texts (one per query
    embedding) and runs :func:`search_modes`; ``visual(queries, depth)`` is the backend's own
    vector search."""
    n_queries = None if queries is None else len(as_ragged(queries))
    query_texts = check_texts(texts, n_queries, options.mode)
    if options.mode != "hybrid":
        return search_modes(options, k, query_texts, None, text)
    if queries is None:
        raise MMEmbedError("mode='hybrid' needs the query embeddings as well as texts")
    vectors = queries
    return search_modes(options, k, query_texts, lambda depth: visual(vectors, depth), text)
