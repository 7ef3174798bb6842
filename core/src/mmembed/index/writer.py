"""The write side of an open index: the commit protocol, deletes, compaction, graph extension.

Write protocol (one batch, :meth:`IndexWriter.commit_batch`): append the vectors to the
active segment file (and their sign-bit codes beside it) and fsync them, then commit the
SQLite transaction that inserts the page records and advances the segment's committed
length. A kill before the commit leaves bytes past the committed length, which readers
never look at and the next writer truncates (:mod:`.recovery`); a kill after it leaves the
whole batch. Deletes only touch SQLite; :meth:`IndexWriter.compact` reclaims the space.

Every method runs with the writer lock held (the owning :class:`~mmembed.index.LocalIndex`
takes it) and under its mutex.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..types import EncoderInfo, MMEmbedError
from . import ann, files, integrity, plaid
from . import format as fmt
from .codecs import Codec
from .compact import compact_segments
from .errors import DuplicatePageError, IndexWriteError
from .filters import Filter, Sql, compile_filter
from .first_stage import (
    checksum_key,
    code_words,
    codes_name,
    file_checksum,
    record_checksum,
    recorded_checksums,
    write_codes,
)
from .pages import EncodedBatch, encode_batch
from .protocol import PageInput
from .recovery import complete_codes, stores_codes
from .segments import SegmentViews, append_rows, segment_name
from .snapshot import IndexSnapshots
from .text import write_texts

logger = logging.getLogger(__name__)

AppendFn = Callable[[Path, str, int, memoryview], None]
"""Writes rows after a file's committed bytes durably (:func:`~.segments.append_rows`)."""

DEFAULT_SEGMENT_BYTES = 1 << 30
"""A new segment file is started once the active one holds this many bytes."""


class IndexWriter:
    """Writes of one open index folder, through the connection its snapshots read with."""

    def __init__(self, manifest: fmt.Manifest, snapshots: IndexSnapshots, segment_bytes: int) -> None:
        self.manifest = manifest
        self.snapshots = snapshots
        self.path: Path = snapshots.path
        self.conn: sqlite3.Connection = snapshots.conn
        self.codec: Codec = snapshots.codec
        self.encoder: EncoderInfo = manifest.encoder
        self.row_bytes = self.codec.row_bytes(self.encoder.dim)
        self.segment_bytes = int(segment_bytes)
        self.graph_extend_pages = ann.EXTEND_PAGES
        self._warned_no_text = False

    # ------------------------------------------------------------------ adding pages

    def write(
        self, pages: Sequence[PageInput], *, replace: bool, pooled: bool, append: AppendFn = append_rows
    ) -> list[str]:
        """Encode and commit ``pages`` as one batch (``replace``: upsert); extends the HNSW
        graph when enough pages wait for it. Returns the stored ids."""
        batch = encode_batch(
            pages,
            encoder=self.encoder,
            dtype=self.codec,
            keep_thumbnails=self.manifest.keep_thumbnails,
            index_path=self.path,
            pooling=1 if pooled else self.manifest.pooling,
        )
        if not batch.rows:
            return []
        self.commit_batch(batch, replace=replace, append=append)
        if self.manifest.first_stage in ("hnsw", "plaid"):
            self.extend_graph(force=False)
        return batch.ids

    def commit_batch(self, batch: EncodedBatch, *, replace: bool, append: AppendFn = append_rows) -> None:
        """The one place a batch becomes part of the index: records, thumbnails and the
        segment's new committed length in one SQLite transaction, committed only after the
        vectors (and codes) are durable. Nothing of the batch remains if it fails."""
        conn = self.conn
        seg_dir = self.path / fmt.SEGMENTS_DIR
        has_vectors = batch.vectors.shape[0] > 0  # a batch of vector-less pages touches no segment
        conn.execute("BEGIN IMMEDIATE")
        seg_path: Path | None = None
        committed_bytes = 0
        created = committing = False
        try:
            self._make_room(batch.ids, replace=replace)
            seg_id, committed_rows = fmt.NO_SEGMENT, 0
            if has_vectors:
                seg_id, file, committed_rows, created = self._active_segment()
                seg_path = seg_dir / file
                committed_bytes = committed_rows * self.row_bytes
            end = self._insert_records(batch, seg_id, committed_rows)
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            if seg_path is not None:
                conn.execute("UPDATE segments SET committed_rows = ? WHERE seg_id = ?", (end, seg_id))
                # The vectors must be durable before the commit that makes them reachable.
                # raw row bytes, through the no-follow file operations
                append(
                    self.path, files.in_segments(seg_path.name), committed_bytes, batch.vectors.data.cast("B")
                )
                if stores_codes(self.manifest.first_stage):  # and so must their codes
                    self._append_codes(seg_id, seg_path, committed_rows, batch.vectors)
            committing = True
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if not committing:  # a failed COMMIT may still surface on recovery: keep its vectors
                _undo_segment_write(self.path, seg_path, committed_bytes, created)
            if isinstance(exc, OSError | sqlite3.Error):
                raise write_error(self.path, "add the batch", exc) from exc
            raise

    def _make_room(self, ids: list[str], *, replace: bool) -> None:
        """Upsert: drop the stored pages with these ids; add: refuse ids already stored."""
        ids_json = json.dumps(ids)
        if replace:
            self.conn.execute("DELETE FROM pages WHERE id IN (SELECT value FROM json_each(?))", (ids_json,))
            return
        taken = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM pages WHERE id IN (SELECT value FROM json_each(?)) LIMIT 5", (ids_json,)
            )
        ]
        if taken:
            raise DuplicatePageError(
                f"the index at {self.path} already holds page id(s) {', '.join(map(repr, taken))}; "
                "use upsert() to replace pages, or delete them first."
            )

    def _insert_records(self, batch: EncodedBatch, seg_id: int, offset: int) -> int:
        """Insert the batch's page rows (vectors from ``offset`` of ``seg_id`` on) and
        thumbnails; returns the segment's row count after the batch."""
        conn = self.conn
        first_row = int(conn.execute("SELECT COALESCE(MAX(row), 0) + 1 FROM pages").fetchone()[0])
        records, thumbs = [], []
        for i, r in enumerate(batch.rows):
            # A page without vectors points nowhere: (NO_SEGMENT, 0, 0).
            where = (seg_id, offset) if r.n_vectors else (fmt.NO_SEGMENT, 0)
            records.append(
                (first_row + i, r.id, r.source, r.page, r.content_hash, r.metadata_json, *where, r.n_vectors)
            )
            if r.thumbnail is not None:
                thumbs.append((first_row + i, r.thumbnail))
            offset += r.n_vectors
        conn.executemany(
            "INSERT INTO pages(row, id, source, page, content_hash, metadata, seg_id, vec_offset, n_vectors) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            records,
        )
        conn.executemany("INSERT INTO thumbnails(row, data) VALUES (?, ?)", thumbs)
        self._insert_texts(batch, first_row)  # hybrid (issue 25): in the batch's transaction
        return offset

    def _insert_texts(self, batch: EncodedBatch, first_row: int) -> None:
        """The batch's page texts (rows ``first_row`` on), for the full-text index."""
        texts = [(first_row + i, r.text) for i, r in enumerate(batch.rows) if r.text]
        if not texts:
            return
        if self.manifest.text_tokenizer is None:
            if not self._warned_no_text:
                self._warned_no_text = True
                logger.warning(
                    "the index at %s has no text store (built before text search); page text is not "
                    "stored. Run `mmembed index --backfill-text --index %s` to add it.",
                    self.path,
                    self.path,
                )
            return
        write_texts(self.conn, texts)

    def _append_codes(self, seg_id: int, seg_path: Path, committed_rows: int, vectors: np.ndarray) -> None:
        # Codes of the stored rows as the codec decodes them (int8: scaled), like every reader's.
        values = self.codec.rows(self.codec.raw(vectors))[:]  # (batch rows, dim)
        views = SegmentViews(seg_path.parent, self.encoder.dim, self.codec)
        crc = write_codes(
            seg_path.parent,
            seg_path.name,
            self.encoder.dim,
            committed_rows,
            lambda: views.view(seg_id, seg_path.name, committed_rows),
            values,
            recorded=recorded_checksums(self.conn).get(codes_name(seg_path.name)),
        )
        # In the batch's transaction: the checksum covers exactly the rows it commits.
        record_checksum(self.conn, seg_path.name, committed_rows + int(values.shape[0]), crc)

    def _active_segment(self) -> tuple[int, str, int, bool]:
        """``(seg_id, file, committed_rows, created)`` of the segment to append to; starts
        a new one (inside the caller's transaction) when the last one is full."""
        conn = self.conn
        last = conn.execute(
            "SELECT seg_id, file, committed_rows FROM segments ORDER BY seg_id DESC LIMIT 1"
        ).fetchone()
        if last is not None and int(last[2]) * self.row_bytes < self.segment_bytes:
            integrity.segment_path(self.path, last[1], self.codec)
            return int(last[0]), str(last[1]), int(last[2]), False
        seg_id = int(conn.execute("SELECT value FROM meta WHERE key = 'next_seg_id'").fetchone()[0])
        file = segment_name(seg_id, self.codec)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seg_id'", (seg_id + 1,))
        conn.execute("INSERT INTO segments(seg_id, file, committed_rows) VALUES (?, ?, 0)", (seg_id, file))
        seg_dir = self.path / fmt.SEGMENTS_DIR
        os.close(files.create_new(self.path, files.in_segments(file)))
        fmt.fsync_dir(seg_dir)
        return seg_id, file, 0, True

    # ------------------------------------------------------------------ graph, deletes, compaction

    def extend_graph(self, *, force: bool = True) -> int:
        """HNSW (PLAID) first stage: add the pages stored since the graph (file) was last built
        to it (once ``graph_extend_pages`` pages, or a quarter of it, wait unless ``force``)."""
        if self.manifest.first_stage == "plaid":
            # Cheap here (a write calls this after every batch); plaid.extend checks the file.
            try:
                covers = plaid.read_state(self.path).covers_row
            except MMEmbedError:  # unreadable: rebuilt from every page on the next write
                covers, force = 0, True
        else:
            state_ = ann.usable_state(self.path)
            # A damaged or missing graph file is rebuilt from every page on the next write.
            force = force or state_.file != ann.read_state(self.path).file
            covers = state_.covers_row
        conn = self.conn
        with integrity.sqlite_errors(self.path):
            waiting = conn.execute(
                "SELECT row, seg_id, vec_offset, n_vectors FROM pages WHERE row > ? AND n_vectors > 0 ORDER BY row",
                (covers,),
            ).fetchall()
            covered = int(
                conn.execute(
                    "SELECT COUNT(*) FROM pages WHERE row <= ? AND n_vectors > 0", (covers,)
                ).fetchone()[0]
            )
        if not waiting or (not force and len(waiting) < max(self.graph_extend_pages, covered // 4)):
            return 0
        pages = self._page_vectors(waiting)
        if self.manifest.first_stage == "plaid":
            return self._extend_plaid(pages)
        try:
            ann.extend(self.path, self.encoder.dim, pages)
        except OSError as exc:
            raise write_error(self.path, "extend the HNSW graph", exc) from exc
        return len(pages)

    def _page_vectors(self, located: list[tuple[int, int, int, int]]) -> list[tuple[int, Any]]:
        """``(row, (n, dim) vectors)`` of ``(row, seg_id, vec_offset, n_vectors)`` pages (mapped, lazily read)."""
        views = SegmentViews(self.path / fmt.SEGMENTS_DIR, self.encoder.dim, self.codec)
        segments = {
            int(s): (f, int(r))
            for s, f, r in self.conn.execute("SELECT seg_id, file, committed_rows FROM segments")
        }
        pages = []
        for row, seg_id, off, n in located:
            file, committed = segments[int(seg_id)]
            name = integrity.segment_path(self.path, file, self.codec).name
            # One map per segment (its committed rows), sliced per page: a map per page holds a
            # file descriptor each (10k pages ran out of them).
            whole = views.view(int(seg_id), name, committed)
            pages.append((int(row), whole[int(off) : int(off) + int(n)]))
        return pages

    def _extend_plaid(self, waiting: list[tuple[int, Any]]) -> int:
        """PLAID (issue 27): code the waiting pages (re-training on every live page when due)."""

        def everything() -> list[tuple[int, Any]]:
            with integrity.sqlite_errors(self.path):
                live = self.conn.execute(
                    "SELECT row, seg_id, vec_offset, n_vectors FROM pages WHERE n_vectors > 0 ORDER BY row"
                ).fetchall()
            return self._page_vectors(live)

        try:
            return plaid.extend(self.path, self.encoder.dim, waiting, everything)
        except OSError as exc:
            raise write_error(self.path, "extend the PLAID file", exc) from exc

    def repair(self) -> dict[str, Any]:
        """Rewrite first-stage side data that no longer matches what was committed: codes
        whose checksum fails (or that are missing) from the vectors, a damaged or missing
        HNSW graph from every page. Vectors and page records are never touched."""
        rewritten = []
        if stores_codes(self.manifest.first_stage):
            with integrity.sqlite_errors(self.path):
                recorded = recorded_checksums(self.conn)
                segments = self.conn.execute("SELECT file, committed_rows FROM segments").fetchall()
            for file, rows in segments:
                name = codes_name(integrity.segment_path(self.path, file, self.codec).name)
                rel, nbytes = files.in_segments(name), int(rows) * code_words(self.encoder.dim) * 8
                known = recorded.get(name)
                try:
                    ok = (
                        known is not None
                        and known[0] == int(rows)
                        and files.size(self.path, rel) >= nbytes
                        and file_checksum(self.path, rel, nbytes) == known[1]
                    )
                except FileNotFoundError:
                    ok = False
                if not ok:
                    files.remove(self.path, rel, missing_ok=True)
                    self.conn.execute("DELETE FROM meta WHERE key = ?", (checksum_key(name),))
                    rewritten.append(name)
            if rewritten:
                fmt.fsync_dir(self.path / fmt.SEGMENTS_DIR)
                complete_codes(self.path, self.conn, self.encoder, self.codec, self.manifest.first_stage)
        rebuilt = False
        if self.manifest.first_stage == "hnsw" and ann.usable_state(self.path).file is None:
            rebuilt = self.extend_graph(force=True) > 0
        if self.manifest.first_stage == "plaid" and plaid.damaged(self.path):
            rebuilt = self._extend_plaid([]) > 0  # a damaged file: every page coded anew
        self.snapshots.forget()
        self.snapshots.graph.clear()
        self.snapshots.plaid.clear()
        return {"codes_rewritten": rewritten, "graph_rebuilt": rebuilt}

    def delete(self, where: Sql) -> int:
        """Delete the pages matching the compiled filter in one transaction; returns how many."""
        sql, params = where
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = conn.execute(f"DELETE FROM pages WHERE {sql}", params).rowcount
            if deleted:
                conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise write_error(self.path, "delete pages", exc) from exc
            raise
        return int(deleted)

    def compact(self) -> int:
        """Rewrite live vectors into fresh segments; returns the bytes reclaimed."""
        try:
            reclaimed = compact_segments(
                self.conn, self.path, self.encoder.dim, self.codec, self.segment_bytes
            )
            # The rewritten segments' codes (none if killed before: the next writer's recovery).
            complete_codes(self.path, self.conn, self.encoder, self.codec, self.manifest.first_stage)
        except (OSError, sqlite3.Error) as exc:
            raise write_error(self.path, "compact the segments", exc) from exc
        self.snapshots.forget()
        return reclaimed


def _undo_segment_write(root: Path, seg_path: Path | None, committed_bytes: int, created: bool) -> None:
    """Best effort; the next writer's recovery does the same if this fails."""
    if seg_path is None:
        return
    rel = files.in_segments(seg_path.name)
    with contextlib.suppress(OSError, MMEmbedError):
        if created:
            files.remove(root, rel)
        elif files.size(root, rel) > committed_bytes:
            files.truncate(root, rel, committed_bytes)


def write_error(path: Path, action: str, exc: BaseException) -> IndexWriteError:
    """The error of a failed write: says nothing changed, and what to do (disk full or not)."""
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()
    )
    advice = (
        "the disk is full: free some space (or compact() the index) and retry"
        if full
        else "check that the folder is writable and the disk healthy, then retry"
    )
    return IndexWriteError(
        f"could not {action} (index at {path}): {exc}. Nothing was changed: the index "
        f"is still at its last committed state. {advice[0].upper()}{advice[1:]}."
    )


def pages_to_delete(ids: Sequence[str] | None, where: Filter | None) -> Sql:
    """The SQL condition of ``delete(ids, where=...)``: ids in ``ids`` and (if given) matching ``where``."""
    if ids is None and where is None:
        raise MMEmbedError("delete() needs ids and/or where; to delete every page pass where={}.")
    if isinstance(ids, str):
        raise MMEmbedError(f"delete() takes a list of ids, got the string {ids!r}; wrap it in a list.")
    sql, params = compile_filter(where)
    if ids is not None:
        sql = f"({sql}) AND id IN (SELECT value FROM json_each(?))"
        params = [*params, json.dumps(list(ids))]
    return sql, params
