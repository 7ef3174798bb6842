"""The index side of ``mmembed index --backfill-text``: create or repair an index's text store,
list the pages without text, store text for pages by id. Reading the source files is the
pipeline's job (:func:`mmembed.pipeline.backfill_text`): the index never opens documents.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from . import format as fmt
from . import text as text_store
from .errors import IndexDamagedError, IndexOptionError

logger = logging.getLogger(__name__)


def prepare_text_store(
    conn: sqlite3.Connection, path: Path, manifest: fmt.Manifest, tokenizer: str | None
) -> tuple[fmt.Manifest, bool, bool]:
    """``(manifest, created, rebuilt)``: the text tables created when the index has none (the
    tokenizer then recorded in a rewritten manifest), the FTS index rebuilt from the stored
    text when FTS5's integrity check fails. Caller holds the writer lock."""
    chosen = manifest.text_tokenizer or text_store.check_tokenizer(tokenizer or text_store.DEFAULT_TOKENIZER)
    if tokenizer is not None and tokenizer != chosen:
        raise IndexOptionError(
            f"the index at {path} stores text with the {chosen!r} tokenizer, not {tokenizer!r}; the "
            "tokenizer is fixed once the text store exists (re-index into a new folder to change it)"
        )
    created = rebuilt = False
    if manifest.text_tokenizer is None or not text_store.has_text_tables(conn):
        in_transaction(conn, lambda: text_store.create_tables(conn, chosen))
        if manifest.text_tokenizer is None:
            # Tables first, then the manifest: a kill between leaves unused tables the next run reuses.
            manifest = dataclasses.replace(manifest, text_tokenizer=chosen)
            manifest.write(path)
        created = True
    try:
        text_store.check_fts(conn, path)
    except IndexDamagedError:
        logger.warning("the full-text index of %s is damaged; rebuilding it from the stored text", path)
        in_transaction(conn, lambda: text_store.rebuild_fts(conn, chosen))
        text_store.check_fts(conn, path)
        rebuilt = True
    return manifest, created, rebuilt


def pages_without_text(conn: sqlite3.Connection) -> list[tuple[str, str, int, str]]:
    """``(id, source, page, content_hash)`` of every page that has no stored text."""
    return [
        (str(i), str(s), int(p), str(h))
        for i, s, p, h in conn.execute(
            f"SELECT p.id, p.source, p.page, p.content_hash FROM pages AS p LEFT JOIN "
            f"{text_store.TEXT_TABLE} AS t ON t.row = p.row WHERE t.row IS NULL ORDER BY p.source, p.page"
        )
    ]


def store_texts(conn: sqlite3.Connection, texts: Sequence[tuple[str, str]]) -> int:
    """Store ``(page id, text)`` pairs in one transaction (text cleaned and bounded; ids no
    longer stored are skipped); returns how many pages got text."""
    import json

    cleaned = {i: t for i, t in ((i, text_store.check_page_text(t, f"page {i!r}")) for i, t in texts) if t}
    if not cleaned:
        return 0
    stored: list[tuple[int, str]] = []

    def write() -> None:
        rows = conn.execute(
            "SELECT row, id FROM pages WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(cleaned)),),
        ).fetchall()
        stored.extend((int(row), cleaned[str(pid)]) for row, pid in rows)
        text_store.write_texts(conn, stored)

    in_transaction(conn, write)
    return len(stored)


def in_transaction(conn: sqlite3.Connection, work: Callable[[], object]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        work()
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
