"""The read side of an open index: consistent snapshots of records, vectors, codes and graph.

Every read runs inside one SQLite read transaction (:meth:`IndexSnapshots.read`), so it
sees one committed state even while a writer (in this or another process) commits. What
a reader caches between reads — the segment list, every live page's location, the memory
maps of segments and codes — is a :class:`Snapshot`, valid while the database's
``generation`` counter is unchanged; any commit bumps it and the next read reloads.
Nothing here writes.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ..types import EncoderInfo, MMEmbedError, PageRecord
from . import ann, integrity, plaid
from . import format as fmt
from .codecs import Codec, Rows
from .errors import IndexClosedError, IndexFormatError
from .filters import Filter, Sql, compile_filter
from .first_stage import BinaryCodes, recorded_checksums
from .search import Locations
from .segments import SegmentViews
from .summary import summarize

_T = TypeVar("_T")

RECORD_COLUMNS = "p.row, p.id, p.source, p.page, p.content_hash, p.metadata, p.n_vectors, t.data"
RECORD_FROM = "pages AS p LEFT JOIN thumbnails AS t ON t.row = p.row"


@dataclass
class Snapshot:
    """What a reader caches between searches; valid while ``generation`` is unchanged."""

    generation: int
    segments: dict[int, tuple[str, int]]  # seg_id -> (file, committed_rows)
    pages: Locations | None = None  # every live page, loaded on the first unfiltered search
    text_pages: int | None = None  # pages with text, counted on the first text or hybrid search


class IndexSnapshots:
    """Read transactions, cached snapshots and the memory maps of one open index folder.

    Shares the connection and the mutex of the :class:`~mmembed.index.LocalIndex` that owns
    it; ``codes`` (sign-bit codes) and ``graph`` (the HNSW graph) are the first stages' maps.
    """

    def __init__(
        self,
        path: Path,
        encoder: EncoderInfo,
        codec: Codec,
        conn: sqlite3.Connection,
        mutex: threading.RLock,
    ) -> None:
        self.path = path
        self.encoder = encoder
        self.codec = codec
        self.conn = conn
        self.mutex = mutex
        self.closed = False
        self.views = SegmentViews(path / fmt.SEGMENTS_DIR, encoder.dim, codec)
        self.codes = BinaryCodes(path / fmt.SEGMENTS_DIR, encoder.dim)
        self.graph = ann.GraphReader(path)
        self.plaid = plaid.PlaidReader(path)  # first_stage="plaid" (issue 27)
        self._cached: Snapshot | None = None

    # ------------------------------------------------------------------ snapshots

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One consistent snapshot (a read transaction) for a read operation."""
        with self.mutex, integrity.sqlite_errors(self.path):
            if self.closed:
                raise IndexClosedError(
                    f"the index at {self.path} was closed; open it again with open_index()."
                )
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                if self.conn.in_transaction:  # (an error may already have ended it)
                    self.conn.execute("COMMIT")

    def current(self, conn: sqlite3.Connection) -> Snapshot:
        """The cached snapshot, reloaded if any process committed since it was taken."""
        generation = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        snap = self._cached
        if snap is None or snap.generation != generation:
            segments = {
                int(s): (integrity.segment_path(self.path, f, self.codec).name, int(r))
                for s, f, r in conn.execute("SELECT seg_id, file, committed_rows FROM segments")
            }
            snap = Snapshot(generation, segments)
            self.codes.checksums = recorded_checksums(conn)
            self._cached = snap
            self.views.forget_except(set(segments))
            self.codes.forget_except(set(segments))
        return snap

    def forget(self, *, codes: bool = True) -> None:
        """Drop the cached snapshot and maps (segment files were replaced or removed)."""
        self._cached = None
        self.views.clear()
        if codes:
            self.codes.clear()

    def close(self) -> None:
        self.closed = True
        self.forget()
        self.graph.clear()
        self.plaid.clear()

    def view(self, snap: Snapshot, seg_id: int, rows: int) -> Rows:
        """The first ``rows`` committed rows of segment ``seg_id`` in ``snap``, checked."""
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
            return self.views.view(seg_id, file, committed, rows)
        except ValueError as exc:  # file shorter than its committed length
            raise IndexFormatError(
                f"segment {file} of the index at {self.path} is shorter than its committed length ({exc}); "
                "the file was damaged outside mmembed. Rebuild the index."
            ) from exc

    def retrying(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run a read; a compaction may unlink segment files after our snapshot was taken,
        in which case we retry on a fresh snapshot."""
        attempts = 5
        for _ in range(attempts):
            try:
                with self.read() as conn:
                    return op(conn)
            except FileNotFoundError as exc:
                if isinstance(exc, MMEmbedError):
                    raise
                missing = exc.filename
                self.forget(codes=False)
        raise IndexFormatError(
            f"segment file {missing} of the index at {self.path} is missing although the index refers "
            "to it; it was deleted outside mmembed. Rebuild the index."
        )

    # ------------------------------------------------------------------ pages

    def locations(self, conn: sqlite3.Connection, snap: Snapshot, where: Sql | None) -> Locations:
        """Where the vectors of the live pages matching ``where`` (a compiled filter, ``None``:
        every page) are, pages stored without vectors left out, checked against the
        snapshot's committed rows."""
        if where is None:
            if snap.pages is None:
                snap.pages = Locations.from_rows(
                    conn.execute(
                        "SELECT row, seg_id, vec_offset, n_vectors FROM pages WHERE n_vectors > 0"
                    ).fetchall()
                )
            locs = snap.pages
        else:
            sql, params = where
            locs = Locations.from_rows(
                conn.execute(
                    f"SELECT row, seg_id, vec_offset, n_vectors FROM pages WHERE n_vectors > 0 AND ({sql})",
                    params,
                ).fetchall()
            )
        integrity.check_locations(self.path, locs.seg, locs.off, locs.n, snap.segments)
        return locs

    def records_by_row(self, conn: sqlite3.Connection, rows: Sequence[int]) -> dict[int, PageRecord]:
        return {
            int(r[0]): page_record(r)
            for r in conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM {RECORD_FROM} WHERE p.row IN (SELECT value FROM json_each(?))",
                (json.dumps(list(rows)),),
            )
        }

    def count(self, where: Filter | None = None) -> int:
        sql, params = compile_filter(where)
        with self.read() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM pages WHERE {sql}", params).fetchone()[0])

    def get(self, ids: Sequence[str]) -> list[PageRecord | None]:
        with self.read() as conn:
            found = {
                r[1]: page_record(r)
                for r in conn.execute(
                    f"SELECT {RECORD_COLUMNS} FROM {RECORD_FROM} WHERE p.id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(ids)),),
                )
            }
        return [found.get(i) for i in ids]

    def get_embeddings(self, ids: Sequence[str]) -> list[torch.Tensor | None]:
        ids_json = json.dumps(list(ids))
        dim = self.encoder.dim

        def read(conn: sqlite3.Connection) -> dict[str, torch.Tensor]:
            snap = self.current(conn)
            out: dict[str, torch.Tensor] = {}
            for pid, seg_id, off, n in conn.execute(
                "SELECT id, seg_id, vec_offset, n_vectors FROM pages WHERE id IN (SELECT value FROM json_each(?))",
                (ids_json,),
            ):
                if int(n) == 0:  # stored without vectors: it has no segment
                    out[pid] = torch.empty(0, dim)  # (0, dim)
                    continue
                seg, first, count = np.array([[seg_id], [off], [n]], dtype=np.int64)  # 3 x (1,)
                integrity.check_locations(self.path, seg, first, count, snap.segments)
                segment = self.view(snap, int(seg_id), int(off) + int(n))
                out[pid] = segment[int(off) : int(off) + int(n)].float()  # (n_vectors, dim), a copy
            return out

        found = self.retrying(read)
        return [found.get(i) for i in ids]

    def records(self, where: Filter | None = None) -> Iterator[PageRecord]:
        sql, params = compile_filter(where)
        last = 0
        while True:
            with self.read() as conn:
                rows = conn.execute(
                    f"SELECT {RECORD_COLUMNS} FROM {RECORD_FROM} WHERE p.row > ? AND ({sql}) ORDER BY p.row LIMIT 256",
                    [last, *params],
                ).fetchall()
                found = [page_record(r) for r in rows]  # (inside read: bad metadata is reported as damage)
            if not rows:
                return
            yield from found
            last = int(rows[-1][0])

    def sources(self) -> dict[str, str]:
        with self.read() as conn:
            return {
                s: h
                for s, h in conn.execute(
                    "SELECT source, content_hash FROM pages WHERE row IN (SELECT MAX(row) FROM pages GROUP BY source)"
                )
            }

    def info(self, manifest: fmt.Manifest) -> dict[str, Any]:
        """Summary for ``mmembed info``: sizes, encoder, storage format."""
        with self.read() as conn:
            return summarize(conn, self.path, manifest)


def page_record(r: tuple[Any, ...]) -> PageRecord:
    """A :class:`PageRecord` from a row of ``SELECT RECORD_COLUMNS FROM RECORD_FROM``."""
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
