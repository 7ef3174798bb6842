"""A page's own text, stored beside its record and searched with SQLite's FTS5 (``bm25()``).

Layout inside ``index.sqlite`` (created with the index, or by ``--backfill-text`` for an
index built before text existed)::

    page_texts(row INTEGER PRIMARY KEY, text TEXT)    one row per page that has text
    page_fts                                          FTS5 over page_texts.text (external content)

``page_texts.row`` is ``pages.row``: triggers keep both tables in step with ``pages``, so
the text of a page is inserted, replaced and deleted inside the very transaction that writes
its record and vectors (all or nothing under a crash). Because the FTS index holds no copy
of the text, a damaged FTS index is rebuilt from ``page_texts`` alone (``--backfill-text``).

User queries are never FTS5 syntax: :func:`match_expression` keeps the words of a query and
quotes each one, so ``"``, ``*``, ``NEAR``, ``OR``, ``AND``, ``NOT``, ``(`` or an unbalanced quote
are plain words or nothing, never an error or an injection.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..types import MAX_TEXT_CHARS, MMEmbedError, clean_text
from .errors import IndexDamagedError
from .filters import TRUE, Sql

TOKENIZERS = {
    "unicode61": "unicode61 remove_diacritics 2",
    "trigram": "trigram",
}
"""Text tokenizer name (recorded in the manifest) -> FTS5 ``tokenize`` argument.
``unicode61`` (default): words, case and diacritics folded. ``trigram``: substrings of 3+
characters, for CJK text and code-like identifiers."""
DEFAULT_TOKENIZER = "unicode61"

MAX_QUERY_TERMS = 64
"""Most words of one query sent to FTS5 (the rest are ignored)."""

TEXT_TABLE = "page_texts"
FTS_TABLE = "page_fts"
REPAIR = "--backfill-text"

_WORD = re.compile(r"\w+")


def check_tokenizer(name: object) -> str:
    """``name`` when it is a known tokenizer, else an error listing them."""
    if isinstance(name, str) and name in TOKENIZERS:
        return name
    raise MMEmbedError(f"unknown text tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")


def schema(tokenizer: str) -> str:
    """SQL creating the text tables and the triggers that keep them in step with ``pages``."""
    tokenize = TOKENIZERS[check_tokenizer(tokenizer)]  # a fixed string from TOKENIZERS
    return f"""
CREATE TABLE IF NOT EXISTS {TEXT_TABLE} (
    row INTEGER PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(
    text, content='{TEXT_TABLE}', content_rowid='row', tokenize='{tokenize}'
);
{_TRIGGERS}
"""


_TRIGGERS = f"""
CREATE TRIGGER IF NOT EXISTS page_texts_insert AFTER INSERT ON {TEXT_TABLE} BEGIN
    INSERT INTO {FTS_TABLE}(rowid, text) VALUES (NEW.row, NEW.text);
END;
CREATE TRIGGER IF NOT EXISTS page_texts_delete AFTER DELETE ON {TEXT_TABLE} BEGIN
    INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', OLD.row, OLD.text);
END;
CREATE TRIGGER IF NOT EXISTS pages_drop_text AFTER DELETE ON pages BEGIN
    DELETE FROM {TEXT_TABLE} WHERE row = OLD.row;
END;
"""


def has_text_tables(conn: sqlite3.Connection) -> bool:
    names = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE name IN (?, ?)", (TEXT_TABLE, FTS_TABLE)
        ).fetchall()
    }
    return TEXT_TABLE in names and FTS_TABLE in names


def create_tables(conn: sqlite3.Connection, tokenizer: str) -> None:
    """Create the text tables inside the caller's open transaction (idempotent)."""
    for statement in _statements(schema(tokenizer)):
        conn.execute(statement)


def _statements(script: str) -> Iterator[str]:
    """The statements of ``script`` one by one (``execute`` runs inside the caller's
    transaction, ``executescript`` would commit it)."""
    buffer = ""
    for line in script.strip().splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""


def check_page_text(text: object, where: str) -> str | None:
    """A :class:`PageInput`'s ``text`` as stored: ``None`` (no text) or a cleaned string.
    Raises :class:`InvalidPageError` for a non-string or an over-long text."""
    from .errors import InvalidPageError

    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidPageError(f"{where}: text must be a string or None, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidPageError(
            f"{where}: text has {len(text):_} characters, more than the {MAX_TEXT_CHARS:_} stored per page; "
            "cut it (mmembed.index.text.clean_text does) or leave it out"
        )
    cleaned = clean_text(text, where=where)
    return cleaned or None


def write_texts(conn: sqlite3.Connection, rows: Sequence[tuple[int, str]]) -> None:
    """Insert ``(pages.row, text)`` pairs inside the caller's transaction (the triggers
    index them; a replaced page's old text went with its old ``pages`` row)."""
    if rows:
        conn.executemany(f"INSERT OR REPLACE INTO {TEXT_TABLE}(row, text) VALUES (?, ?)", rows)


def query_terms(query: str, tokenizer: str = DEFAULT_TOKENIZER) -> list[str]:
    """The words of ``query`` a search looks for (each once, at most :data:`MAX_QUERY_TERMS`)."""
    words = _WORD.findall(query)
    if tokenizer == "trigram":
        # Trigrams match substrings of 3+ characters: shorter words cannot match anything.
        words = [w for w in words if len(w) >= 3]
    return list(dict.fromkeys(words))[:MAX_QUERY_TERMS]


def match_expression(query: str | Sequence[str], tokenizer: str = DEFAULT_TOKENIZER) -> str | None:
    """An FTS5 ``MATCH`` expression that finds pages holding any word of ``query`` (a string,
    or its terms), or ``None`` when there is no searchable word. Each word is a quoted FTS5
    string, so operators and punctuation in the query are only ever words.

    >>> match_expression('part "X-200* NEAR(a b) OR')
    '"part" OR "X" OR "200" OR "NEAR" OR "a" OR "b" OR "OR"'
    """
    terms = query_terms(query, tokenizer) if isinstance(query, str) else list(query)
    if not terms:
        return None
    return " OR ".join(_quoted(w) for w in terms)


def _quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def informative_terms(
    conn: sqlite3.Connection, terms: list[str], page_count: Callable[[], int] | None = None
) -> list[str]:
    """``terms`` without those found in half the pages or more. FTS5's ``bm25()`` gives such a
    term an idf of 1e-6 (``log((N - n + 0.5) / (n + 0.5)) <= 0`` is clamped), so it cannot
    change the order of pages that hold another term (by more than 1e-6); matching it would only make bm25 score
    (nearly) every page and fill the list's tail with pages that hold nothing but ``the`` or
    ``of`` — which a rank fusion would credit as text matches. All terms are kept when every
    one is that common. ``page_count`` gives :func:`count_texts` from a cache (it reads the
    whole text table: ~10 ms at 10k pages)."""
    if len(terms) < 2:
        return terms
    pages = count_texts(conn) if page_count is None else page_count()
    kept = [
        t
        for t in terms
        if 2 * int(conn.execute(f"SELECT COUNT(*) FROM {FTS_TABLE}(?)", (_quoted(t),)).fetchone()[0]) < pages
    ]
    return kept or terms


@dataclass(frozen=True)
class TextMatch:
    row: int
    score: float
    """``-bm25()``: higher is better."""


def search_rows(
    conn: sqlite3.Connection,
    query: str,
    k: int,
    where: Sql,
    *,
    tokenizer: str,
    folder: Path,
    page_count: Callable[[], int] | None = None,
) -> list[TextMatch]:
    """Best ``k`` pages (by bm25) holding words of ``query`` among those matching the
    compiled filter ``where`` (applied before the top-k, like the visual side's).
    ``page_count``: see :func:`informative_terms`."""
    terms = query_terms(query, tokenizer)
    if not terms or k <= 0:
        return []
    sql, params = where
    with fts_errors(folder):
        expression = match_expression(informative_terms(conn, terms, page_count), tokenizer)
        rows = _unfiltered_rows(conn, expression, k) if where == TRUE else None
        if rows is None:
            rows = conn.execute(
                f"SELECT s.r, s.score FROM (SELECT rowid AS r, bm25({FTS_TABLE}) AS score FROM {FTS_TABLE} "
                f"WHERE {FTS_TABLE} MATCH ?) AS s JOIN pages ON pages.row = s.r WHERE ({sql}) "
                "ORDER BY s.score, s.r LIMIT ?",
                [expression, *params, k],
            ).fetchall()
    return [TextMatch(int(r), -float(s)) for r, s in rows]


def _unfiltered_rows(conn: sqlite3.Connection, expression: str | None, k: int) -> list[Any] | None:
    """Without a filter: the best ``k`` FTS rows without the join to ``pages`` (a lookup per
    matching page, ~30 % of the query), when every one of them is a stored page — the
    triggers keep it so; otherwise ``None`` and the caller joins (same rows either way)."""
    rows = conn.execute(
        f"SELECT rowid, bm25({FTS_TABLE}) AS score FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ? "
        "ORDER BY score, rowid LIMIT ?",
        [expression, k],
    ).fetchall()
    stored = conn.execute(
        "SELECT COUNT(*) FROM pages WHERE row IN (SELECT value FROM json_each(?))",
        (json.dumps([int(r) for r, _ in rows]),),
    ).fetchone()[0]
    return rows if int(stored) == len(rows) else None


def page_texts(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, str]:
    """Stored text of the pages ``ids`` (pages without text are absent)."""
    return {
        str(i): str(t)
        for i, t in conn.execute(
            f"SELECT p.id, t.text FROM pages AS p JOIN {TEXT_TABLE} AS t ON t.row = p.row "
            "WHERE p.id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        )
    }


def count_texts(conn: sqlite3.Connection) -> int:
    """Rows of the text table (pages with text)."""
    return int(conn.execute(f"SELECT COUNT(*) FROM {TEXT_TABLE}").fetchone()[0])


def count_with_text(conn: sqlite3.Connection) -> int:
    return int(
        conn.execute(
            f"SELECT COUNT(*) FROM {TEXT_TABLE} JOIN pages ON pages.row = {TEXT_TABLE}.row"
        ).fetchone()[0]
    )


def damaged_text(folder: Path, what: str) -> IndexDamagedError:
    return IndexDamagedError(
        f"the text index of the index at {folder} is damaged ({what}); text and hybrid search cannot "
        f"trust it. Nothing was changed. Repair it with `mmembed index --backfill-text --index {folder}` "
        "(rebuilds the full-text index from the stored text), or search with mode='visual'."
    )


@contextlib.contextmanager
def fts_errors(folder: Path) -> Iterator[None]:
    """An unreadable FTS index becomes :class:`IndexDamagedError` naming the repair."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        message = str(exc).lower()
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
            raise MMEmbedError(f"could not read the index at {folder}: {exc}; retry.") from exc
        raise damaged_text(folder, str(exc)) from exc


def rebuild_fts(conn: sqlite3.Connection, tokenizer: str) -> None:
    """Drop and re-create the FTS index from ``page_texts`` inside the caller's transaction
    (the repair for a damaged FTS index; stored text is kept)."""
    try:
        conn.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    except sqlite3.DatabaseError:
        # A shadow table too damaged for FTS5's own DROP: remove the pieces one by one.
        for suffix in ("data", "idx", "docsize", "config", "content"):
            conn.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}_{suffix}")
        conn.execute("PRAGMA writable_schema=ON")
        try:
            conn.execute("DELETE FROM sqlite_master WHERE name = ?", (FTS_TABLE,))
        finally:
            conn.execute("PRAGMA writable_schema=OFF")
    create_tables(conn, tokenizer)
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")


def check_fts(conn: sqlite3.Connection, folder: Path) -> None:
    """FTS5's own integrity check (reads the whole index: for repairs and tests, not searches)."""
    with fts_errors(folder):
        conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('integrity-check', 1)")
