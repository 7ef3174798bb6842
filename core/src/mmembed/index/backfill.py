"""``mmembed index --backfill-text``: give an existing index its page text.

For an index built before text search it creates the text tables (and records the tokenizer
in the manifest); for a damaged full-text index it rebuilds FTS5 from the stored text; then
it reads the text layer of every page still without text from its recorded source file,
when that file's bytes still hash to what was indexed. Other sources are named and skipped.
Each source's text is one transaction, so a killed backfill keeps what it committed and a
re-run continues.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import text as text_store

if TYPE_CHECKING:
    from .local import LocalIndex

logger = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    """What one backfill did."""

    pages_filled: int = 0
    """Pages that now have text (their text layer was not empty)."""
    sources_read: list[str] = field(default_factory=list)
    sources_skipped: dict[str, str] = field(default_factory=dict)
    """Source -> why its pages got no text (file gone, changed since indexing, unreadable)."""
    created_text_store: bool = False
    rebuilt_fts: bool = False

    def summary(self) -> str:
        lines = [
            f"text backfill: {self.pages_filled} page(s) got text from {len(self.sources_read)} source(s); "
            f"{len(self.sources_skipped)} source(s) skipped"
            + ("; created the text store" if self.created_text_store else "")
            + ("; rebuilt the damaged full-text index" if self.rebuilt_fts else "")
        ]
        lines += [f"  skipped: {s}: {why}" for s, why in self.sources_skipped.items()]
        return "\n".join(lines)


def backfill_text(
    index: LocalIndex, *, tokenizer: str | None = None, password: str | dict[str, str] | None = None
) -> BackfillReport:
    """Caller holds the writer lock (``LocalIndex.backfill_text`` does)."""
    report = BackfillReport()
    conn = index._conn
    chosen = index.manifest.text_tokenizer or text_store.check_tokenizer(
        tokenizer or text_store.DEFAULT_TOKENIZER
    )
    if tokenizer is not None and tokenizer != chosen:
        from .errors import IndexOptionError

        raise IndexOptionError(
            f"the index at {index.path} stores text with the {chosen!r} tokenizer, not {tokenizer!r}; "
            "the tokenizer is fixed once the text store exists (re-index into a new folder to change it)"
        )
    if index.manifest.text_tokenizer is None or not text_store.has_text_tables(conn):
        _in_transaction(conn, lambda: text_store.create_tables(conn, chosen))
        if index.manifest.text_tokenizer is None:
            # Tables first, then the manifest: a kill between leaves unused tables the next run reuses.
            index.manifest = dataclasses.replace(index.manifest, text_tokenizer=chosen)
            index.manifest.write(index.path)
        report.created_text_store = True
    try:
        text_store.check_fts(conn, index.path)
    except text_store.IndexDamagedError:
        logger.warning("the full-text index of %s is damaged; rebuilding it from the stored text", index.path)
        _in_transaction(conn, lambda: text_store.rebuild_fts(conn, chosen))
        text_store.check_fts(conn, index.path)
        report.rebuilt_fts = True
    _fill_from_sources(index, conn, report, password)
    return report


def _in_transaction(conn: sqlite3.Connection, work: object) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        work()  # type: ignore[operator]
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _fill_from_sources(
    index: LocalIndex, conn: sqlite3.Connection, report: BackfillReport, password: str | dict[str, str] | None
) -> None:
    from ..loaders import LoadError, load_pages
    from ..loaders.sources import kind_of

    missing = conn.execute(
        f"SELECT p.row, p.source, p.page, p.content_hash FROM pages AS p LEFT JOIN {text_store.TEXT_TABLE} "
        "AS t ON t.row = p.row WHERE t.row IS NULL ORDER BY p.source, p.page"
    ).fetchall()
    by_source: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for row, source, page, content_hash in missing:
        by_source[str(source)].append((int(row), int(page), str(content_hash)))
    for source, pages in by_source.items():
        path = Path(source)
        if not path.is_file():
            report.sources_skipped[source] = "the file is gone (re-index it from where it is now)"
            continue
        if kind_of(path.suffix.lower()) in ("image", "media"):
            continue  # images and recordings have no text layer: nothing to fill
        wanted = {page: (row, content_hash) for row, page, content_hash in pages}
        texts: list[tuple[int, str]] = []
        try:
            stream = load_pages(source, page_range=sorted(wanted), password=password, prefetch=0)
            for item in stream:
                row, recorded = wanted[item.page]
                if item.content_hash != recorded:
                    report.sources_skipped[source] = (
                        f"changed since it was indexed (sha256 now {item.content_hash[:12]}…, recorded "
                        f"{recorded[:12]}…); re-index it to search its new text"
                    )
                    texts = []
                    break
                text = item.text
                if text:
                    texts.append((row, text))
            issues = list(stream.issues)
        except LoadError as exc:
            report.sources_skipped[source] = str(exc)
            continue
        if source in report.sources_skipped:
            continue
        if issues and not texts:
            report.sources_skipped[source] = "; ".join(str(i) for i in issues[:3])
            continue
        _in_transaction(conn, lambda t=texts: text_store.write_texts(conn, t))  # type: ignore[misc]
        report.sources_read.append(source)
        report.pages_filled += len(texts)
