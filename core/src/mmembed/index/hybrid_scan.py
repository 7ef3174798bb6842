"""Hybrid search over one snapshot of the embedded index: both sides in one read
transaction, the text side's SQL in a thread while the visual side scores (issue 25).

Run one after the other, the two sides add up: at 10k pages the text side (FTS5 ``bm25()``
over every page holding a query word) added 17-44 % to a visual search. They use different
resources — the visual scan is float work on the memory maps in torch's kernels, the text
side is SQLite, which runs with the GIL released — so here the text side runs in a thread,
on the read transaction's own connection, from the moment the visual side has read the
pages' locations. The visual stages reach that connection only through a :class:`_Gate`
that first waits for the thread: one connection, never two users at once, and both sides
see the same committed state. The two ranked lists are then fused by row
(:func:`~mmembed.index.fusion.fuse_ranked`, the rule of :func:`~mmembed.index.fusion.fuse`)
and only the fused hits' records are read, in one query.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, cast

from ..scoring import EmbeddingsLike, as_ragged
from ..types import MMEmbedError, SearchHit
from . import plan
from .codecs import Rows
from .filters import TRUE, Filter, compile_filter
from .fusion import SearchOptions, fuse_ranked
from .hybrid import check_text_store, check_texts, text_matches
from .snapshot import IndexSnapshots, Snapshot
from .text import TextMatch, count_texts


def search_hybrid(
    snapshots: IndexSnapshots,
    tokenizer: str | None,
    options: SearchOptions,
    k: int,
    queries: EmbeddingsLike | None,
    texts: object,
    where: Filter | None,
    *,
    index_stage: str | None,
    candidates: int | None,
    exact: bool,
    shortlist_fn: plan.ShortlistFn,
) -> list[list[SearchHit]]:
    """``search(..., mode="hybrid")`` of a :class:`~mmembed.index.local.LocalIndex`: each side
    ``options.depth(k)`` deep over the pages matching ``where``, fused per query, the best ``k``."""
    n_queries = None if queries is None else len(as_ragged(queries))
    query_texts = check_texts(texts, n_queries, options.mode)
    if queries is None:
        raise MMEmbedError("mode='hybrid' needs the query embeddings as well as texts")
    plan.check_candidates(candidates)
    depth = options.depth(k)
    stage = plan.choose_stage(index_stage, snapshots.encoder, candidates, exact)
    q = plan.query_vectors(queries, snapshots.encoder, snapshots.path)
    compiled = None if where is None else compile_filter(where)

    def run(conn: sqlite3.Connection) -> list[list[SearchHit]]:
        snap = snapshots.current(conn)
        locs = snapshots.locations(conn, snap, compiled)
        checked = check_text_store(conn, snapshots.path, tokenizer)
        text_side = _Side(
            lambda: text_matches(
                conn, snapshots.path, checked, query_texts, depth, compiled or TRUE, page_count(conn, snap)
            )
        )
        try:

            def view(seg_id: int, rows: int) -> Rows:
                return snapshots.view(snap, seg_id, rows)

            scan = plan.Scan(snapshots, snap, locs, view, shortlist_fn)
            gate = cast(sqlite3.Connection, _Gate(conn, text_side.result))
            picks = plan.first_stage_picks(scan, q, depth, stage, gate)
            read = text_side.result()
        finally:
            text_side.done.wait()  # (the visual side failed: the thread still leaves conn first)
        fused = [
            fuse_ranked(
                [(int(locs.rows[c]), score) for c, score in seen],
                [(m.row, m.score) for m in found],
                k,
                alpha=options.alpha,
                rrf_k=options.rrf_k,
            )
            for seen, found in zip(picks, read, strict=True)
        ]
        by_row = snapshots.records_by_row(conn, sorted({row for one in fused for row, _, _ in one}))
        return [
            [SearchHit(by_row[row].id, score, by_row[row], matches) for row, score, matches in one]
            for one in fused
        ]

    return snapshots.retrying(run)


def page_count(conn: sqlite3.Connection, snap: Snapshot) -> Callable[[], int]:
    """The number of pages with text, counted once per snapshot (a commit makes a new one)."""

    def count() -> int:
        if snap.text_pages is None:
            snap.text_pages = count_texts(conn)
        return snap.text_pages

    return count


class _Side:
    """``work()`` running in a thread from now on; :meth:`result` waits for it."""

    def __init__(self, work: Callable[[], list[list[TextMatch]]]) -> None:
        self._future: Future[list[list[TextMatch]]] = Future()
        self.done = threading.Event()

        def run() -> None:
            try:
                self._future.set_result(work())
            except BaseException as exc:  # handed to the caller of result()
                self._future.set_exception(exc)
            finally:
                self.done.set()

        threading.Thread(target=run, name="mmembed-text-side", daemon=True).start()

    def result(self) -> list[list[TextMatch]]:
        return self._future.result()


class _Gate:
    """The read transaction's connection as the visual stages see it: any use first waits
    for the text side's thread, which runs its SQL on the same connection meanwhile."""

    def __init__(self, conn: sqlite3.Connection, wait: Callable[[], object]) -> None:
        self._conn, self._wait = conn, wait

    def __getattr__(self, name: str) -> Any:
        self._wait()
        return getattr(self._conn, name)
