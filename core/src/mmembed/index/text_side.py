"""The text side of :class:`~mmembed.index.local.LocalIndex` (hybrid search, issue 25): the
text store's upgrade, writes and reads over the index's snapshots. The facade takes the
writer lock and its mutex; these functions do the work and name the folder in errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..types import MMEmbedError, SearchHit
from . import backfill
from .filters import Filter
from .format import Manifest
from .hybrid import check_texts, text_search
from .hybrid_scan import page_count
from .snapshot import IndexSnapshots
from .text import has_text_tables, page_texts
from .writer import write_error


def check_k(k: object) -> int:
    """``k`` of a search: a non-negative integer."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise MMEmbedError(f"k must be a non-negative integer, got {k!r}")
    return k


def prepare_text_store(
    snapshots: IndexSnapshots, manifest: Manifest, tokenizer: str | None
) -> tuple[Manifest, dict[str, bool]]:
    """The manifest with a text store (created, or its FTS index rebuilt from the stored
    text) and ``{"created": ..., "rebuilt": ...}``; the caller holds the writer lock."""
    try:
        new, created, rebuilt = backfill.prepare_text_store(
            snapshots.conn, snapshots.path, manifest, tokenizer
        )
    except (OSError, sqlite3.OperationalError) as exc:
        raise write_error(snapshots.path, "prepare the text store", exc) from exc
    finally:
        snapshots.forget()
    return new, {"created": created, "rebuilt": rebuilt}


def pages_without_text(snapshots: IndexSnapshots, manifest: Manifest) -> list[tuple[str, str, int, str]]:
    """``(id, source, page, content_hash)`` of every page without stored text."""
    with snapshots.read() as conn:
        if manifest.text_tokenizer is None or not has_text_tables(conn):
            return [(r.id, r.source, r.page, r.content_hash) for r in snapshots.records()]
        return backfill.pages_without_text(conn)


def store_texts(snapshots: IndexSnapshots, texts: Sequence[tuple[str, str]]) -> int:
    """Store ``(page id, text)`` pairs in one transaction; the caller holds the writer lock
    and has checked that the index has a text store."""
    try:
        return backfill.store_texts(snapshots.conn, texts)
    except (OSError, sqlite3.OperationalError) as exc:
        raise write_error(snapshots.path, "store page text", exc) from exc
    finally:
        snapshots.forget()


def search_text(
    snapshots: IndexSnapshots, manifest: Manifest, texts: Sequence[str] | str, k: int, where: Filter | None
) -> list[list[SearchHit]]:
    """Top-``k`` pages by their own text (FTS5 ``bm25()``) per query string, among ``where``."""
    check_k(k)
    query_texts = check_texts(texts, None, "text")
    with snapshots.read() as conn:
        count = page_count(conn, snapshots.current(conn))
        return text_search(
            conn,
            snapshots.path,
            manifest.text_tokenizer,
            query_texts,
            k,
            where,
            snapshots.records_by_row,
            count,
        )


def get_texts(snapshots: IndexSnapshots, manifest: Manifest, ids: Sequence[str]) -> list[str | None]:
    """The stored page text of ``ids`` in order (``None``: unknown id, or a page without text)."""
    if manifest.text_tokenizer is None:
        return [None] * len(ids)
    with snapshots.read() as conn:
        found = page_texts(conn, ids)
    return [found.get(i) for i in ids]
