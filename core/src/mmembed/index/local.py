"""The embedded on-disk index: one folder, one writer, many readers, crash-safe batches.

Write protocol (one batch): append the vectors to the active segment file and fsync it,
then commit the SQLite transaction that inserts the page records and advances the
segment's committed length. A kill before the commit leaves bytes past the committed
length, which readers never look at and the next writer truncates; a kill after it leaves
the whole batch. Deletes only touch SQLite; :meth:`LocalIndex.compact` reclaims the space.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np
import torch

from ..scoring import EmbeddingsLike, Ragged, as_ragged
from ..types import EncoderInfo, MMEmbedError, PageRecord, SearchHit
from . import ann, integrity
from . import format as fmt
from .codecs import Rows
from .compact import compact_segments
from .errors import (
    DuplicatePageError,
    IndexClosedError,
    IndexFormatError,
    IndexNotFoundError,
    IndexOptionError,
    IndexReadOnlyError,
    IndexWriteError,
)
from .filters import Filter, compile_filter
from .first_stage import (
    DEFAULT_CANDIDATES,
    BinaryCodes,
    binary_codes,
    codes_name,
    cut_codes_tail,
    hamming_maxsim,
    is_codes_name,
    shortlist,
    subset,
    write_codes,
)
from .fusion import search_options
from .hybrid import check_texts, search_modes, text_search
from .lock import WriterLock
from .pages import EncodedBatch, encode_batch
from .protocol import PageInput
from .search import Locations, score_locations, top_k
from .segments import SegmentViews, append_rows, cut_uncommitted_tail, segment_name
from .text import DEFAULT_TOKENIZER, check_tokenizer, count_with_text, has_text_tables, write_texts

if TYPE_CHECKING:
    from .backfill import BackfillReport
    from .shared import SharedIndex

_T = TypeVar("_T")
logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 1 << 30
"""A new segment file is started once the active one holds this many bytes."""

_RECORD_COLUMNS = "p.row, p.id, p.source, p.page, p.content_hash, p.metadata, p.n_vectors, t.data"
_RECORD_FROM = "pages AS p LEFT JOIN thumbnails AS t ON t.row = p.row"


@dataclass
class _Snapshot:
    """What a reader caches between searches; valid while ``generation`` is unchanged."""

    generation: int
    segments: dict[int, tuple[str, int]]  # seg_id -> (file, committed_rows)
    pages: Locations | None = None  # every live page, loaded on the first unfiltered search


class LocalIndex:
    """Folder-based index implementing :class:`~mmembed.index.protocol.IndexBackend`.

    Opening never takes the writer lock: the first ``add``/``upsert``/``delete``/``compact``
    (or :meth:`lock_for_writing`) does, and keeps it until :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoder: EncoderInfo | None = None,
        *,
        create: bool = True,
        readonly: bool = False,
        storage: str | None = None,
        pooling: int | None = None,
        dtype: str | None = None,
        keep_thumbnails: bool = True,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        first_stage: str | None = None,
        text_tokenizer: str | None = DEFAULT_TOKENIZER,
    ) -> None:
        create_storage = _storage_option(storage, dtype)
        _check_pooling(pooling, encoder)
        self.path = Path(path).expanduser().absolute()
        self.readonly = readonly
        self.segment_bytes = int(segment_bytes)
        self._mutex = threading.RLock()
        self._closed = True
        self.created_now = False  # this open made the folder an index (a reader's typo shows here)
        if self.path.exists() and not self.path.is_dir():
            raise IndexFormatError(
                f"{self.path} is a file, not an index folder; give the folder the index lives in."
            )
        if not (self.path / fmt.MANIFEST).is_file():
            if readonly or not create:
                raise IndexNotFoundError(
                    f"no mmembed index at {self.path} (no {fmt.MANIFEST}); check the path, or build one "
                    "first (e.g. `mmembed index <files> --index <folder>`)."
                )
            if encoder is None:
                raise IndexNotFoundError(
                    f"no mmembed index at {self.path}; to create one there, pass the EncoderInfo of the "
                    "encoder that embeds the pages."
                )
            self._create(
                encoder,
                create_storage or "float16",
                pooling or 1,
                keep_thumbnails,
                first_stage,
                text_tokenizer,
            )
            self.created_now = True
        self.manifest = fmt.Manifest.read(self.path)
        if encoder is not None:
            self.manifest.encoder.check_compatible(encoder, index_path=str(self.path))
        self.check_options(storage=storage, pooling=pooling)
        self._dtype = fmt.codec(self.manifest.dtype)
        self._row_bytes = self._dtype.row_bytes(self.manifest.encoder.dim)
        db_path = self.path / fmt.DATABASE
        if not db_path.is_file():
            raise IndexFormatError(
                f"the index at {self.path} has no {fmt.DATABASE}; it is damaged, rebuild it."
            )
        # A folder this process cannot write (a mounted snapshot, a shared volume) is opened
        # read-only: it can be searched, and writes are refused with a clear error.
        self._folder_readonly = not readonly and not (
            os.access(self.path, os.W_OK) and os.access(db_path, os.W_OK)
        )
        with integrity.sqlite_errors(self.path):
            self._conn = fmt.connect(db_path, readonly=readonly or self._folder_readonly)
        try:
            fmt.check_database(self._conn, db_path)
            with integrity.sqlite_errors(self.path):
                integrity.check_recorded_shape(self._conn, self.path, self.manifest.encoder, self._dtype)
        except BaseException:
            self._conn.close()
            raise
        self._lock = WriterLock(self.path / fmt.LOCK_FILE, self.path)
        self._codes = BinaryCodes(self.path / fmt.SEGMENTS_DIR, self.manifest.encoder.dim)
        self._graph = ann.GraphReader(self.path)
        self.graph_extend_pages = ann.EXTEND_PAGES
        self._views = SegmentViews(self.path / fmt.SEGMENTS_DIR, self.manifest.encoder.dim, self._dtype)
        self._snapshot: _Snapshot | None = None
        self._warned_no_text = False
        self._closed = False

    # ------------------------------------------------------------------ properties

    @property
    def encoder(self) -> EncoderInfo:
        return self.manifest.encoder

    @property
    def storage(self) -> str:
        """The storage codec: ``float16``, ``bfloat16``, ``float32`` or ``int8``."""
        return self.manifest.dtype

    @property
    def dtype(self) -> str:
        """Older name of :attr:`storage`."""
        return self.manifest.dtype

    @property
    def pooling(self) -> int:
        """Token pooling factor applied when pages are written (1 = none)."""
        return self.manifest.pooling

    @property
    def keep_thumbnails(self) -> bool:
        return self.manifest.keep_thumbnails

    def check_options(self, *, storage: str | None = None, pooling: int | None = None) -> None:
        """Raise :class:`IndexOptionError` when a given option differs from the stored one."""
        _storage_option(storage, None)
        _check_pooling(pooling, self.encoder)
        _check_options(self.manifest, self.path, storage=storage, pooling=pooling)

    @property
    def first_stage(self) -> str | None:
        """``"binary"`` (codes on disk, shortlist then exact rerank by default) or ``None``."""
        return self.manifest.first_stage

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "writer" if not self._closed and self._lock.held else "reader"
        pooled = f", pooling={self.pooling}" if self.pooling > 1 else ""
        return f"LocalIndex({str(self.path)!r}, encoder={self.encoder.name!r}, storage={self.storage}{pooled}, {mode})"

    # ------------------------------------------------------------------ lifecycle

    def _create(
        self,
        encoder: EncoderInfo,
        dtype: str,
        pooling: int,
        keep_thumbnails: bool,
        first_stage: str | None,
        text_tokenizer: str | None,
    ) -> None:
        _check_encoder(encoder)
        if text_tokenizer is not None:
            check_tokenizer(text_tokenizer)
        fmt.codec(dtype)
        try:
            fmt.check_first_stage(first_stage)
        except ValueError as exc:
            raise MMEmbedError(str(exc)) from None
        if first_stage is not None and encoder.kind == "single":
            raise MMEmbedError(
                f"first_stage={first_stage!r} shortlists multi-vector pages; encoder {encoder.name!r} is "
                "single-vector (its exact scan is already one matrix product): leave first_stage=None."
            )
        if self.path.is_dir():
            foreign = sorted(
                n
                for n in os.listdir(self.path)
                if n not in fmt.OWN_NAMES and not n.startswith(f".{fmt.MANIFEST}.")
            )
            if foreign:
                raise IndexFormatError(
                    f"cannot create an index in {self.path}: the folder already holds other files "
                    f"({', '.join(foreign[:5])}). Choose a new or empty folder."
                )
        self.path.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(self.path / fmt.LOCK_FILE, self.path)
        lock.acquire()
        try:
            if (self.path / fmt.MANIFEST).is_file():  # another process finished creating it
                return
            # Leftovers of an interrupted creation (no manifest yet) are discarded.
            for name in (
                fmt.DATABASE,
                fmt.DATABASE + "-wal",
                fmt.DATABASE + "-shm",
                fmt.DATABASE + "-journal",
            ):
                with contextlib.suppress(FileNotFoundError):
                    (self.path / name).unlink()
            seg_dir = self.path / fmt.SEGMENTS_DIR
            seg_dir.mkdir(exist_ok=True)
            for leftover in seg_dir.iterdir():
                leftover.unlink()
            fmt.create_database(
                self.path / fmt.DATABASE,
                dim=encoder.dim,
                dtype=dtype,
                kind=encoder.kind,
                text_tokenizer=text_tokenizer,  # hybrid (issue 25)
            )
            fmt.fsync_dir(self.path)
            manifest = fmt.Manifest(
                encoder=encoder,
                dtype=dtype,
                keep_thumbnails=keep_thumbnails,
                pooling=pooling,
                first_stage=first_stage,
                text_tokenizer=text_tokenizer,
            )
            manifest.write(self.path)
        finally:
            lock.release()

    def close(self) -> None:
        """Release the writer lock (if held), the database and the memory maps."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._snapshot = None
            self._views.clear()
            self._codes.clear()
            self._graph.clear()
            try:
                self._conn.close()
            finally:
                self._lock.release()

    def __enter__(self) -> LocalIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError(f"the index at {self.path} was closed; open it again with open_index().")

    # ------------------------------------------------------------------ writing

    def lock_for_writing(self) -> None:
        """Take the writer lock now (fail fast with :class:`IndexLockedError`) and repair
        what a killed writer left behind. Writes call this themselves."""
        with self._mutex:
            self._check_open()
            if self.readonly:
                raise IndexReadOnlyError(
                    f"the index at {self.path} was opened with readonly=True; open it without "
                    "readonly to add, delete or compact pages."
                )
            if self._lock.held:
                return
            if self._folder_readonly:
                raise IndexReadOnlyError(
                    f"the index folder {self.path} is not writable (read-only mount or missing "
                    "permission), so it can only be searched; to change it, copy it to a writable "
                    "folder or fix its permissions."
                )
            self._lock.acquire()
            try:
                self._recover()
            except BaseException:
                self._lock.release()
                raise

    def _recover(self) -> None:
        """Cut the uncommitted tail of the last segment and delete segment files no
        committed state refers to, once manifest, SQLite and file sizes agree."""
        seg_dir = self.path / fmt.SEGMENTS_DIR
        if seg_dir.is_symlink() or not seg_dir.is_dir():
            raise integrity.damaged(self.path, f"{seg_dir} is not a folder inside the index")
        with integrity.sqlite_errors(self.path):
            states = integrity.check_segments(self._conn, self.path, self.encoder, self._dtype)
            if states:
                last = states[-1]
                cut_uncommitted_tail(last.path, last.committed_bytes)
                cut_codes_tail(
                    seg_dir, last.path.name, last.committed_bytes // self._row_bytes, self.encoder.dim
                )
            integrity.record_shape(self._conn, self.encoder, self._dtype)
        referenced = {state.path.name for state in states}
        referenced |= {codes_name(name) for name in referenced}
        removed = False
        for entry in seg_dir.iterdir():
            if entry.name not in referenced and (
                integrity.is_segment_name(entry.name) or is_codes_name(entry.name)
            ):
                entry.unlink()
                removed = True
        if removed:
            fmt.fsync_dir(seg_dir)
        self._complete_codes()
        if self.first_stage == "hnsw":
            ann.remove_unreferenced(self.path)  # a killed graph build's file

    @property
    def _stores_codes(self) -> bool:
        """Sign-bit codes on disk: the binary first stage's scan, the HNSW stage's refinement."""
        return self.first_stage in ("binary", "hnsw")

    def _complete_codes(self) -> None:
        """Binary and HNSW first stages: write the codes segments lack (an index written by an older
        mmembed, segments rewritten by compaction). Caller holds the writer lock."""
        if not self._stores_codes:
            return
        seg_dir = self.path / fmt.SEGMENTS_DIR
        views = SegmentViews(seg_dir, self.encoder.dim, self._dtype)
        with integrity.sqlite_errors(self.path):
            segments = self._conn.execute("SELECT seg_id, file, committed_rows FROM segments").fetchall()
        for seg_id, file, rows in segments:
            name = integrity.segment_path(self.path, file, self._dtype).name
            vectors = functools.partial(views.view, int(seg_id), name, int(rows))
            write_codes(seg_dir, name, self.encoder.dim, int(rows), vectors)

    def add(self, pages: Sequence[PageInput]) -> list[str]:
        """Store ``pages`` as one atomic batch; an id already stored is an error."""
        return self._write(pages, replace=False)

    def upsert(self, pages: Sequence[PageInput], *, pooled: bool = False) -> list[str]:
        """Store ``pages`` as one atomic batch, replacing stored pages with the same ids.

        ``pooled=True`` says the vectors were already pooled by this index's factor (copied
        from an index with the same ``pooling``, as ``mmembed migrate`` does): stored as given."""
        return self._write(pages, replace=True, pooled=pooled)

    def _write(self, pages: Sequence[PageInput], *, replace: bool, pooled: bool = False) -> list[str]:
        with self._mutex:
            self.lock_for_writing()
            batch = encode_batch(
                pages,
                encoder=self.encoder,
                dtype=self._dtype,
                keep_thumbnails=self.keep_thumbnails,
                index_path=self.path,
                pooling=1 if pooled else self.pooling,
            )
            if not batch.rows:
                return []
            self._commit_batch(batch, replace=replace)
            if self.first_stage == "hnsw":
                self.extend_graph(force=False)
            return batch.ids

    def extend_graph(self, *, force: bool = True) -> int:
        """HNSW first stage: add the pages stored since the graph was last built to it;
        returns how many were added. Writes do this themselves once
        ``graph_extend_pages`` pages (or a quarter of the graph) are waiting (searches scan
        those exactly meanwhile); call it after bulk indexing to cover everything."""
        if self.first_stage != "hnsw":
            raise MMEmbedError(
                f"the index at {self.path} has no HNSW first stage (first_stage={self.first_stage!r})"
            )
        with self._mutex:
            self.lock_for_writing()
            covers = ann.read_state(self.path).covers_row
            with integrity.sqlite_errors(self.path):
                waiting = self._conn.execute(
                    "SELECT row, seg_id, vec_offset, n_vectors FROM pages WHERE row > ? AND n_vectors > 0 ORDER BY row",
                    (covers,),
                ).fetchall()
                covered = int(
                    self._conn.execute(
                        "SELECT COUNT(*) FROM pages WHERE row <= ? AND n_vectors > 0", (covers,)
                    ).fetchone()[0]
                )
            if not waiting or (not force and len(waiting) < max(self.graph_extend_pages, covered // 4)):
                return 0
            views = SegmentViews(self.path / fmt.SEGMENTS_DIR, self.encoder.dim, self._dtype)
            files = dict(self._conn.execute("SELECT seg_id, file FROM segments").fetchall())
            pages = []
            for row, seg_id, off, n in waiting:
                name = integrity.segment_path(self.path, files[seg_id], self._dtype).name
                pages.append((int(row), views.view(int(seg_id), name, int(off) + int(n))[int(off) :]))
            try:
                ann.extend(self.path, self.encoder.dim, pages)
            except OSError as exc:
                raise self._write_error("extend the HNSW graph", exc) from exc
            return len(pages)

    def _commit_batch(self, batch: EncodedBatch, *, replace: bool) -> None:
        conn = self._conn
        seg_dir = self.path / fmt.SEGMENTS_DIR
        has_vectors = batch.vectors.shape[0] > 0  # a batch of vector-less pages touches no segment
        ids_json = json.dumps(batch.ids)
        conn.execute("BEGIN IMMEDIATE")
        seg_path: Path | None = None
        committed_bytes = 0
        created = committing = False
        try:
            if replace:
                conn.execute("DELETE FROM pages WHERE id IN (SELECT value FROM json_each(?))", (ids_json,))
            else:
                taken = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM pages WHERE id IN (SELECT value FROM json_each(?)) LIMIT 5",
                        (ids_json,),
                    )
                ]
                if taken:
                    raise DuplicatePageError(
                        f"the index at {self.path} already holds page id(s) {', '.join(map(repr, taken))}; "
                        "use upsert() to replace pages, or delete them first."
                    )
            seg_id, committed_rows = fmt.NO_SEGMENT, 0
            if has_vectors:
                seg_id, file, committed_rows, created = self._active_segment()
                seg_path = seg_dir / file
                committed_bytes = committed_rows * self._row_bytes
            first_row = int(conn.execute("SELECT COALESCE(MAX(row), 0) + 1 FROM pages").fetchone()[0])
            records, thumbs, offset = [], [], committed_rows
            for i, r in enumerate(batch.rows):
                # A page without vectors points nowhere: (NO_SEGMENT, 0, 0).
                where = (seg_id, offset) if r.n_vectors else (fmt.NO_SEGMENT, 0)
                records.append(
                    (
                        first_row + i,
                        r.id,
                        r.source,
                        r.page,
                        r.content_hash,
                        r.metadata_json,
                        *where,
                        r.n_vectors,
                    )
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
            self._write_texts(conn, batch, first_row)  # hybrid (issue 25): same transaction
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            if seg_path is not None:
                conn.execute("UPDATE segments SET committed_rows = ? WHERE seg_id = ?", (offset, seg_id))
                # The vectors must be durable before the commit that makes them reachable.
                append_rows(seg_path, committed_bytes, batch.vectors.data.cast("B"))  # raw row bytes
                if self._stores_codes:  # and so must their codes
                    self._append_codes(seg_id, seg_path, committed_rows, batch.vectors)
            committing = True
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if not committing:  # a failed COMMIT may still surface on recovery: keep its vectors
                self._undo_segment_write(seg_path, committed_bytes, created)
            if isinstance(exc, OSError | sqlite3.Error):
                raise self._write_error("add the batch", exc) from exc
            raise

    def _write_texts(self, conn: sqlite3.Connection, batch: EncodedBatch, first_row: int) -> None:
        """Hybrid (issue 25): the batch's page texts, inside the batch's transaction."""
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
        write_texts(conn, texts)

    def backfill_text(
        self, *, tokenizer: str | None = None, password: str | dict[str, str] | None = None
    ) -> BackfillReport:
        """Hybrid (issue 25): create / repair the text store and fill the text of pages that have
        none from their recorded source files whose hash still matches (others are named in
        the report and skipped). ``mmembed index --backfill-text`` runs this."""
        from .backfill import backfill_text

        with self._mutex:
            self.lock_for_writing()
            try:
                report = backfill_text(self, tokenizer=tokenizer, password=password)
            except (OSError, sqlite3.OperationalError) as exc:
                raise self._write_error("fill in the page text", exc) from exc
            self._snapshot = None
            return report

    def _append_codes(self, seg_id: int, seg_path: Path, committed_rows: int, vectors: np.ndarray) -> None:
        # Codes of the stored rows as the codec decodes them (int8: scaled), like every reader's.
        values = self._dtype.rows(self._dtype.raw(vectors))[:]  # (batch rows, dim)
        views = SegmentViews(seg_path.parent, self.encoder.dim, self._dtype)
        write_codes(
            seg_path.parent,
            seg_path.name,
            self.encoder.dim,
            committed_rows,
            lambda: views.view(seg_id, seg_path.name, committed_rows),
            values,
        )

    def _active_segment(self) -> tuple[int, str, int, bool]:
        """``(seg_id, file, committed_rows, created)`` of the segment to append to; starts
        a new one (inside the caller's transaction) when the last one is full."""
        conn = self._conn
        last = conn.execute(
            "SELECT seg_id, file, committed_rows FROM segments ORDER BY seg_id DESC LIMIT 1"
        ).fetchone()
        if last is not None and int(last[2]) * self._row_bytes < self.segment_bytes:
            integrity.segment_path(self.path, last[1], self._dtype)
            return int(last[0]), str(last[1]), int(last[2]), False
        seg_id = int(conn.execute("SELECT value FROM meta WHERE key = 'next_seg_id'").fetchone()[0])
        file = segment_name(seg_id, self._dtype)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seg_id'", (seg_id + 1,))
        conn.execute("INSERT INTO segments(seg_id, file, committed_rows) VALUES (?, ?, 0)", (seg_id, file))
        seg_dir = self.path / fmt.SEGMENTS_DIR
        os.close(os.open(seg_dir / file, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644))
        fmt.fsync_dir(seg_dir)
        return seg_id, file, 0, True

    def _undo_segment_write(self, seg_path: Path | None, committed_bytes: int, created: bool) -> None:
        """Best effort; the next writer's recovery does the same if this fails."""
        if seg_path is None:
            return
        with contextlib.suppress(OSError):
            if created:
                seg_path.unlink()
            elif seg_path.stat().st_size > committed_bytes:
                os.truncate(seg_path, committed_bytes)

    def _write_error(self, action: str, exc: BaseException) -> IndexWriteError:
        full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
            isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()
        )
        advice = (
            "the disk is full: free some space (or compact() the index) and retry"
            if full
            else "check that the folder is writable and the disk healthy, then retry"
        )
        return IndexWriteError(
            f"could not {action} (index at {self.path}): {exc}. Nothing was changed: the index "
            f"is still at its last committed state. {advice[0].upper()}{advice[1:]}."
        )

    def delete(self, ids: Sequence[str] | None = None, *, where: Filter | None = None) -> int:
        """Delete pages whose id is in ``ids`` and (if given) that match ``where``, in one
        transaction; returns how many were deleted. ``where={}`` matches every page."""
        if ids is None and where is None:
            raise MMEmbedError("delete() needs ids and/or where; to delete every page pass where={}.")
        if isinstance(ids, str):
            raise MMEmbedError(f"delete() takes a list of ids, got the string {ids!r}; wrap it in a list.")
        sql, params = compile_filter(where)
        if ids is not None:
            sql = f"({sql}) AND id IN (SELECT value FROM json_each(?))"
            params = [*params, json.dumps(list(ids))]
        with self._mutex:
            self.lock_for_writing()
            conn = self._conn
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
                    raise self._write_error("delete pages", exc) from exc
                raise
            return int(deleted)

    def compact(self) -> int:
        """Rewrite live vectors into fresh segments, dropping the space of deleted and
        replaced pages. Readers keep working meanwhile. Returns the bytes reclaimed."""
        with self._mutex:
            self.lock_for_writing()
            try:
                reclaimed = compact_segments(
                    self._conn, self.path, self.encoder.dim, self._dtype, self.segment_bytes
                )
                self._complete_codes()  # the rewritten segments' codes (none if killed before: next writer)
            except (OSError, sqlite3.Error) as exc:
                raise self._write_error("compact the segments", exc) from exc
            self._snapshot = None
            self._views.clear()
            self._codes.clear()
            return reclaimed

    # ------------------------------------------------------------------ reading

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One consistent snapshot (a read transaction) for a read operation."""
        with self._mutex, integrity.sqlite_errors(self.path):
            self._check_open()
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                if self._conn.in_transaction:  # (an error may already have ended it)
                    self._conn.execute("COMMIT")

    def _current(self, conn: sqlite3.Connection) -> _Snapshot:
        """The cached snapshot, reloaded if any process committed since it was taken."""
        generation = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        snap = self._snapshot
        if snap is None or snap.generation != generation:
            segments = {
                int(s): (integrity.segment_path(self.path, f, self._dtype).name, int(r))
                for s, f, r in conn.execute("SELECT seg_id, file, committed_rows FROM segments")
            }
            snap = _Snapshot(generation, segments)
            self._snapshot = snap
            self._views.forget_except(set(segments))
            self._codes.forget_except(set(segments))
        return snap

    def _view(self, snap: _Snapshot, seg_id: int, rows: int) -> Rows:
        if seg_id not in snap.segments:
            raise integrity.damaged(
                self.path, f"a page refers to segment {seg_id}, which index.sqlite does not list"
            )
        file, committed = snap.segments[seg_id]
        if rows > committed:
            raise IndexFormatError(
                f"the index at {self.path} refers to rows past the committed end of segment {file}; it is damaged, rebuild it."
            )
        try:
            return self._views.view(seg_id, file, committed, rows)
        except ValueError as exc:  # file shorter than its committed length
            raise IndexFormatError(
                f"segment {file} of the index at {self.path} is shorter than its committed length ({exc}); "
                "the file was damaged outside mmembed. Rebuild the index."
            ) from exc

    def _retrying(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run a read; a compaction may unlink segment files after our snapshot was taken,
        in which case we retry on a fresh snapshot."""
        attempts = 5
        for _ in range(attempts):
            try:
                with self._read() as conn:
                    return op(conn)
            except FileNotFoundError as exc:
                if isinstance(exc, MMEmbedError):
                    raise
                missing = exc.filename
                self._snapshot = None
                self._views.clear()
        raise IndexFormatError(
            f"segment file {missing} of the index at {self.path} is missing although the index refers "
            "to it; it was deleted outside mmembed. Rebuild the index."
        )

    def count(self, where: Filter | None = None) -> int:
        sql, params = compile_filter(where)
        with self._read() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM pages WHERE {sql}", params).fetchone()[0])

    def get(self, ids: Sequence[str]) -> list[PageRecord | None]:
        """Records for ``ids`` in order (``None`` for an unknown id)."""
        with self._read() as conn:
            found = {
                r[1]: _record(r)
                for r in conn.execute(
                    f"SELECT {_RECORD_COLUMNS} FROM {_RECORD_FROM} WHERE p.id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(ids)),),
                )
            }
        return [found.get(i) for i in ids]

    def get_embeddings(self, ids: Sequence[str]) -> list[torch.Tensor | None]:
        """Stored vectors ``(n_vectors, dim)`` as float32 for ``ids`` (``None`` if unknown,
        ``(0, dim)`` for a page stored without vectors)."""
        ids_json = json.dumps(list(ids))

        def read(conn: sqlite3.Connection) -> dict[str, torch.Tensor]:
            snap = self._current(conn)
            out: dict[str, torch.Tensor] = {}
            for pid, seg_id, off, n in conn.execute(
                "SELECT id, seg_id, vec_offset, n_vectors FROM pages WHERE id IN (SELECT value FROM json_each(?))",
                (ids_json,),
            ):
                if int(n) == 0:  # stored without vectors: it has no segment
                    out[pid] = torch.empty(0, self.encoder.dim)  # (0, dim)
                    continue
                seg, first, count = np.array([[seg_id], [off], [n]], dtype=np.int64)  # 3 x (1,)
                integrity.check_locations(self.path, seg, first, count, snap.segments)
                segment = self._view(snap, int(seg_id), int(off) + int(n))
                out[pid] = segment[int(off) : int(off) + int(n)].float()  # (n_vectors, dim), a copy
            return out

        found = self._retrying(read)
        return [found.get(i) for i in ids]

    def records(self, where: Filter | None = None) -> Iterator[PageRecord]:
        """Every matching record in insertion order, fetched in pages of 256."""
        sql, params = compile_filter(where)
        last = 0
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    f"SELECT {_RECORD_COLUMNS} FROM {_RECORD_FROM} WHERE p.row > ? AND ({sql}) ORDER BY p.row LIMIT 256",
                    [last, *params],
                ).fetchall()
                found = [_record(r) for r in rows]  # (inside _read: bad metadata is reported as damage)
            if not rows:
                return
            yield from found
            last = int(rows[-1][0])

    def sources(self) -> dict[str, str]:
        """Map of every stored source to its content hash (of its most recently stored page)."""
        with self._read() as conn:
            return {
                s: h
                for s, h in conn.execute(
                    "SELECT source, content_hash FROM pages WHERE row IN (SELECT MAX(row) FROM pages GROUP BY source)"
                )
            }

    def search(
        self,
        queries: EmbeddingsLike | None,
        k: int = 10,
        where: Filter | None = None,
        *,
        candidates: int | None = None,
        exact: bool = False,
        mode: str = "visual",
        texts: Sequence[str] | str | None = None,
        alpha: float | None = None,
        rrf_k: int | None = None,
    ) -> list[list[SearchHit]]:
        """Top-``k`` pages for each query, best first, among pages matching ``where``
        (a pre-filter: ``k`` results whenever ``k`` pages match). Pages stored without
        vectors are never results.

        An index created with ``first_stage="binary"`` (Hamming MaxSim over its sign-bit
        codes) or ``"hnsw"`` (a graph over pooled page vectors; pages it does not cover yet
        are all kept) first shortlists the ``candidates`` (default
        :data:`~mmembed.index.first_stage.DEFAULT_CANDIDATES`) most promising pages per query
        and scores only those exactly; other indexes score every page exactly unless
        ``candidates=C`` is given (multi-vector indexes; codes are then made in memory).
        Returned scores are always exact; ``exact=True`` forces the full scan.

        ``mode="text"`` ranks pages by their own text (FTS5 ``bm25()``) for ``texts`` (one query
        string per query; ``queries`` may then be ``None``); ``mode="hybrid"`` fuses both ranked
        lists by reciprocal rank fusion (``rrf_k``, 60 by default) or, given ``alpha``, by the
        weighted sum ``alpha * visual + (1 - alpha) * text`` of min-max normalised scores. Hits of
        these modes say which side(s) found them (:attr:`SearchHit.matches`)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise MMEmbedError(f"k must be a non-negative integer, got {k!r}")
        options = search_options(mode, alpha, rrf_k)
        if options.mode != "visual":  # hybrid (issue 25)
            n_queries = None if queries is None else len(as_ragged(queries))
            query_texts = check_texts(texts, n_queries, options.mode)
            visual = None
            if options.mode == "hybrid":
                if queries is None:
                    raise MMEmbedError("mode='hybrid' needs the query embeddings as well as texts")

                def visual(depth: int) -> list[list[SearchHit]]:
                    return self.search(queries, depth, where, candidates=candidates, exact=exact)

            return search_modes(options, k, query_texts, visual, lambda t, n: self.search_text(t, n, where))
        if candidates is not None and (
            isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1
        ):
            raise MMEmbedError(f"candidates must be a positive integer or None, got {candidates!r}")
        if candidates is None and self.first_stage is not None:
            candidates = DEFAULT_CANDIDATES
        first_stage = candidates is not None and not exact and self.encoder.kind != "single"
        if queries is None:
            raise MMEmbedError("search() needs query embeddings (only mode='text' searches with texts alone)")
        q = self._queries(queries)
        sql, params = compile_filter(where)

        def run(conn: sqlite3.Connection) -> list[list[SearchHit]]:
            snap = self._current(conn)
            # Pages stored without vectors are never candidates (Locations drops them too).
            if where is None:
                if snap.pages is None:
                    snap.pages = Locations.from_rows(
                        conn.execute(
                            "SELECT row, seg_id, vec_offset, n_vectors FROM pages WHERE n_vectors > 0"
                        ).fetchall()
                    )
                locs = snap.pages
            else:
                locs = Locations.from_rows(
                    conn.execute(
                        f"SELECT row, seg_id, vec_offset, n_vectors FROM pages WHERE n_vectors > 0 AND ({sql})",
                        params,
                    ).fetchall()
                )
            integrity.check_locations(self.path, locs.seg, locs.off, locs.n, snap.segments)

            def view(seg_id: int, rows: int) -> Rows:
                return self._view(snap, seg_id, rows)

            if first_stage and self.first_stage == "hnsw":
                assert candidates is not None
                picks = self._graph_shortlisted(q, locs, view, max(candidates, k), k, snap)
            elif first_stage:
                assert candidates is not None
                picks = self._shortlisted(q, locs, view, max(candidates, k), k, snap)
            else:
                scores = score_locations(
                    q, locs, view, self.encoder.similarity, single=self.encoder.kind == "single"
                )  # (n_queries, n_pages)
                integrity.rank_damaged_last(scores, locs.rows, conn, self.path)
                picks = top_k(scores, k)
            wanted = sorted({int(locs.rows[c]) for hits in picks for c, _ in hits})
            by_row = {
                int(r[0]): _record(r)
                for r in conn.execute(
                    f"SELECT {_RECORD_COLUMNS} FROM {_RECORD_FROM} WHERE p.row IN (SELECT value FROM json_each(?))",
                    (json.dumps(wanted),),
                )
            }
            return [
                [SearchHit(by_row[int(locs.rows[c])].id, s, by_row[int(locs.rows[c])]) for c, s in hits]
                for hits in picks
            ]

        return self._retrying(run)

    def search_text(
        self, texts: Sequence[str] | str, k: int = 10, where: Filter | None = None
    ) -> list[list[SearchHit]]:
        """Top-``k`` pages by their own text (FTS5 ``bm25()``) for each query string, among
        pages matching ``where``. Query text is always taken as plain words."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise MMEmbedError(f"k must be a non-negative integer, got {k!r}")
        query_texts = check_texts(texts, None, "text")
        with self._read() as conn:
            return text_search(
                conn, self.path, self.manifest.text_tokenizer, query_texts, k, where, self._records_by_row
            )

    def _records_by_row(self, conn: sqlite3.Connection, rows: Sequence[int]) -> dict[int, PageRecord]:
        return {
            int(r[0]): _record(r)
            for r in conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM {_RECORD_FROM} WHERE p.row IN (SELECT value FROM json_each(?))",
                (json.dumps(list(rows)),),
            )
        }

    def _shortlisted(
        self,
        q: Ragged,
        locs: Locations,
        view: Callable[[int, int], Rows],
        candidates: int,
        k: int,
        snap: _Snapshot,
    ) -> list[list[tuple[int, float]]]:
        """Per query: binary first stage over ``locs``, exact MaxSim of its shortlist;
        ``(column in locs, exact score)`` pairs like :func:`top_k`."""
        picks: list[list[tuple[int, float]]] = []
        for i in range(len(q)):
            one = Ragged.from_list([q[i]])  # (tokens, dim) of query i
            cols = self._hamming_shortlist(one, locs, view, candidates, snap)  # (C,) ascending
            exact = score_locations(one, subset(locs, cols), view, self.encoder.similarity, single=False)
            picks.append([(int(cols[c]), s) for c, s in top_k(exact, k)[0]])
        return picks

    def _hamming_shortlist(
        self, one: Ragged, locs: Locations, view: Callable[[int, int], Rows], candidates: int, snap: _Snapshot
    ) -> np.ndarray:
        """Columns of ``locs`` (ascending) of the ``candidates`` best Hamming MaxSim scores of
        one query's sign-bit codes against the pages' codes."""
        rough = hamming_maxsim(
            binary_codes(one.values),
            locs,
            self._codes,
            view,
            self.encoder.dim,
            lambda s: snap.segments[s][0],
        )  # (len(locs),)
        return shortlist(rough, candidates)

    def _graph_shortlisted(
        self,
        q: Ragged,
        locs: Locations,
        view: Callable[[int, int], Rows],
        candidates: int,
        k: int,
        snap: _Snapshot,
    ) -> list[list[tuple[int, float]]]:
        """Per query: the graph's best pages, narrowed to ``candidates`` by Hamming MaxSim
        over their sign-bit codes, plus every page the graph does not cover yet, scored
        exactly; the full exact scan when that leaves fewer than ``k`` pages (a selective filter)."""
        state, graph = self._graph.state_and_graph()
        uncovered = np.flatnonzero(locs.rows > state.covers_row)  # (n,) columns scanned exactly
        picks: list[list[tuple[int, float]]] = []
        for i in range(len(q)):
            one = Ragged.from_list([q[i]])  # (tokens, dim) of query i
            cols = uncovered
            if graph is not None:
                rows = ann.candidate_rows(graph, one.values, candidates * ann.REFINE)
                found = np.flatnonzero(np.isin(locs.rows, rows))  # (<= C * REFINE,) ascending
                if found.shape[0] > candidates:
                    found = found[self._hamming_shortlist(one, subset(locs, found), view, candidates, snap)]
                cols = np.union1d(cols, found)
            if cols.shape[0] < min(k, len(locs)):
                cols = np.arange(len(locs))
            exact = score_locations(one, subset(locs, cols), view, self.encoder.similarity, single=False)
            picks.append([(int(cols[c]), s) for c, s in top_k(exact, k)[0]])
        return picks

    def _queries(self, queries: EmbeddingsLike) -> Ragged:
        q = as_ragged(queries)
        if q.dim != self.encoder.dim:
            raise MMEmbedError(
                f"query vectors have dim {q.dim} but the index at {self.path} stores dim {self.encoder.dim} "
                f"(encoder {self.encoder.name!r}); embed queries with the index's encoder."
            )
        values = q.values.detach().to("cpu")
        if not bool(torch.isfinite(values).all()):
            raise MMEmbedError("query embeddings contain NaN or infinite values")
        return Ragged(values, q.offsets.to("cpu"))

    def info(self) -> dict[str, Any]:
        """Summary for ``mmembed info``: sizes, encoder, storage format."""
        with self._read() as conn:
            pages, vectors, scored = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(n_vectors), 0), COUNT(NULLIF(n_vectors, 0)) FROM pages"
            ).fetchone()
            committed, segments = conn.execute(
                "SELECT COALESCE(SUM(committed_rows), 0), COUNT(*) FROM segments"
            ).fetchone()
            sources = conn.execute("SELECT COUNT(DISTINCT source) FROM pages").fetchone()[0]
            with_text = (  # hybrid (issue 25)
                count_with_text(conn)
                if self.manifest.text_tokenizer is not None and has_text_tables(conn)
                else 0
            )
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        enc = self.encoder
        return {
            "path": str(self.path),
            "format_version": self.manifest.format_version,
            "pages": int(pages),
            "sources": int(sources),
            "vectors": int(vectors),
            "reclaimable_vectors": int(committed) - int(vectors),
            "segments": int(segments),
            "encoder": enc.to_dict(),
            "encoder_name": enc.name,
            "encoder_revision": enc.revision,
            "family": enc.family,
            "kind": enc.kind,
            "similarity": enc.similarity,
            "dim": enc.dim,
            "dtype": self.dtype,
            "storage": self.storage,
            "pooling": self.pooling,
            # Vector bytes as stored by the codec (int8: values and scale), per live page with vectors.
            "bytes_per_token": self._row_bytes,
            "bytes_per_page": round(int(vectors) * self._row_bytes / int(scored)) if scored else 0,
            "keep_thumbnails": self.keep_thumbnails,
            "first_stage": self.first_stage,
            "text_tokenizer": self.manifest.text_tokenizer,
            "pages_with_text": int(with_text),
            "bytes": int(size),
        }


def _record(r: tuple[Any, ...]) -> PageRecord:
    row, pid, source, page, content_hash, metadata, n_vectors, thumb = r
    try:
        meta = json.loads(metadata)
        if not isinstance(meta, dict):
            raise TypeError(f"metadata is a JSON {type(meta).__name__}, not an object")
        return PageRecord(
            id=str(pid),
            source=str(source),
            page=int(page),
            content_hash=str(content_hash),
            metadata=meta,
            thumbnail=bytes(thumb) if thumb is not None else None,
            n_vectors=int(n_vectors),
        )
    except (ValueError, TypeError) as exc:
        raise integrity.BadRow(f"page row {row} ({pid!r}) is malformed: {exc}") from exc


def _storage_option(storage: str | None, dtype: str | None) -> str | None:
    """The storage to create an index with: ``storage``, or its older name ``dtype`` (which,
    as it always did, only applies at creation: an existing index is not checked against it)."""
    if storage is not None and dtype is not None and storage != dtype:
        raise MMEmbedError(
            f"storage={storage!r} and dtype={dtype!r} disagree; dtype is the older name of "
            "storage, pass only storage"
        )
    chosen = storage if storage is not None else dtype
    if chosen is not None:
        fmt.codec(chosen)
    return chosen


def _check_pooling(pooling: int | None, encoder: EncoderInfo | None) -> None:
    if pooling is None:
        return
    if isinstance(pooling, bool) or not isinstance(pooling, int) or pooling not in fmt.POOLING_FACTORS:
        raise MMEmbedError(
            f"pooling must be 2, 3 or 4 (tokens per pooled vector; 1 or None: no pooling), got {pooling!r}"
        )
    if pooling > 1 and encoder is not None and encoder.kind != "multi":
        raise MMEmbedError(
            f"pooling={pooling} applies to multi-vector indexes only, but encoder {encoder.name!r} "
            f"makes one {encoder.kind} vector per page; leave pooling unset"
        )


def _check_options(manifest: fmt.Manifest, path: Path, *, storage: str | None, pooling: int | None) -> None:
    """Options given when opening an existing index must equal the stored ones."""
    for option, wanted, stored in (
        ("storage", storage, manifest.dtype),
        ("pooling", pooling, manifest.pooling),
    ):
        if wanted is not None and wanted != stored:
            raise IndexOptionError(
                f"the index at {path} was created with {option}={stored!r}, not {option}={wanted!r}; "
                f"open it without {option}= (or with {option}={stored!r}), or copy it into a new "
                f"index with `mmembed migrate --from {path} --to NEW_FOLDER` to change it"
            )


def _check_encoder(encoder: EncoderInfo) -> None:
    if not isinstance(encoder, EncoderInfo):
        raise MMEmbedError(f"encoder must be an EncoderInfo, got {type(encoder).__name__}")
    if encoder.dim <= 0:
        raise MMEmbedError(f"encoder {encoder.name!r} declares dim {encoder.dim}; it must be positive")
    if encoder.kind not in ("multi", "single"):
        raise MMEmbedError(
            f"encoder {encoder.name!r} has kind {encoder.kind!r}; expected 'multi' or 'single'"
        )
    if encoder.similarity not in ("maxsim", "dot", "cosine"):
        raise MMEmbedError(
            f"encoder {encoder.name!r} has similarity {encoder.similarity!r}; expected maxsim, dot or cosine"
        )
    if encoder.kind == "multi" and encoder.similarity != "maxsim":
        raise MMEmbedError(f"encoder {encoder.name!r} is multi-vector, so its similarity must be 'maxsim'")


@overload
def open_index(
    path: str | os.PathLike[str],
    encoder: EncoderInfo | None = ...,
    *,
    create: bool = ...,
    readonly: bool = ...,
    storage: str | None = ...,
    pooling: int | None = ...,
    dtype: str | None = ...,
    keep_thumbnails: bool = ...,
    first_stage: str | None = ...,
    text_tokenizer: str | None = ...,
    shared: Literal[False] = ...,
) -> LocalIndex: ...
@overload
def open_index(
    path: str | os.PathLike[str],
    encoder: EncoderInfo | None = ...,
    *,
    create: bool = ...,
    readonly: bool = ...,
    storage: str | None = ...,
    pooling: int | None = ...,
    dtype: str | None = ...,
    keep_thumbnails: bool = ...,
    first_stage: str | None = ...,
    text_tokenizer: str | None = ...,
    shared: Literal[True],
) -> SharedIndex: ...
@overload
def open_index(
    path: str | os.PathLike[str],
    encoder: EncoderInfo | None = ...,
    *,
    create: bool = ...,
    readonly: bool = ...,
    storage: str | None = ...,
    pooling: int | None = ...,
    dtype: str | None = ...,
    keep_thumbnails: bool = ...,
    first_stage: str | None = ...,
    text_tokenizer: str | None = ...,
    shared: bool,
) -> LocalIndex | SharedIndex: ...


def open_index(
    path: str | os.PathLike[str],
    encoder: EncoderInfo | None = None,
    *,
    create: bool = True,
    readonly: bool = False,
    storage: str | None = None,
    pooling: int | None = None,
    dtype: str | None = None,
    keep_thumbnails: bool = True,
    first_stage: str | None = None,
    text_tokenizer: str | None = DEFAULT_TOKENIZER,
    shared: bool = False,
) -> LocalIndex | SharedIndex:
    """Open the index in folder ``path``, creating it when missing (needs ``encoder``).

    To read an index that must already exist, pass ``create=False`` (or ``readonly=True``): a
    mistyped path then raises :class:`IndexNotFoundError` instead of becoming a new empty index.
    A :class:`~mmembed.Retriever` also refuses to search an index this very open created empty.

    ``encoder=None`` opens with the stored encoder (for readers such as ``mmembed info``);
    otherwise the stored one must match it (:class:`EncoderMismatchError`).

    Storage options, recorded in the manifest when the index is created:
    ``storage`` (``float16`` by default, ``bfloat16``, ``float32``, or ``int8``: per-token
    scaled, about half of float16's bytes) and ``pooling`` (2-4: hierarchical token pooling
    of each page at write time, multi-vector indexes only; needs scipy). Left at ``None`` an
    existing index keeps its own; given, they must equal the stored ones
    (:class:`IndexOptionError` names the option). ``dtype`` is the older name of ``storage``
    and, like ``keep_thumbnails``, only applies at creation.
    ``first_stage`` also applies at creation only: ``"binary"`` stores sign-bit codes beside
    the vectors (1/16 of float16) and ``"hnsw"`` those codes plus a graph over pooled page
    vectors, and ``search`` then shortlists pages before scoring the shortlist exactly;
    ``None`` (default) scans every page exactly.
    ``text_tokenizer`` also applies at creation only: the FTS5 tokenizer of the pages' text
    store (``"unicode61"``, diacritics removed, by default; ``"trigram"`` for CJK or code-like
    text; ``None``: no text store).

    ``shared=True`` returns a :class:`~mmembed.index.shared.SharedIndex` handle on the one
    ``LocalIndex`` this process keeps for the folder (keyed by its real path): every
    component of an application (indexer, retriever, reranker, ...) can open the folder
    this way and write through the same writer lock. Each handle's ``close()`` only lets
    go of that handle; the index closes with the last one. A ``readonly=True`` shared
    handle refuses writes but shares the same index. Don't mix shared and unshared
    writers of one folder in one process: they conflict on the writer lock.
    """
    if shared:
        from .shared import open_shared

        return open_shared(
            path,
            encoder,
            create=create,
            readonly=readonly,
            storage=storage,
            pooling=pooling,
            dtype=dtype,
            keep_thumbnails=keep_thumbnails,
            first_stage=first_stage,
            text_tokenizer=text_tokenizer,
        )
    return LocalIndex(
        path,
        encoder,
        create=create,
        readonly=readonly,
        storage=storage,
        pooling=pooling,
        dtype=dtype,
        keep_thumbnails=keep_thumbnails,
        first_stage=first_stage,
        text_tokenizer=text_tokenizer,
    )
