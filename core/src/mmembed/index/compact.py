"""Reclaim the space of deleted / replaced pages by rewriting live vectors into new segments.

Crash safety: the new segment files are written and fsynced first, then one SQLite
transaction points every page at its new place and drops the old segments, then the old
files are unlinked. A crash before the commit leaves unreferenced new files; a crash after
it leaves unreferenced old files; the next writer deletes unreferenced files either way.
Every file is created, mapped and unlinked through :mod:`.safe_files` (no link followed).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import safe_files
from .codecs import Codec
from .format import fsync_dir
from .integrity import segment_path
from .segments import map_rows, segment_name, write_at

COPY_BYTES = 64 << 20
"""Bytes copied per write while rewriting segments."""


@dataclass(frozen=True)
class Plan:
    """Where each live page goes: ``moves`` are ``(new_seg_id, new_offset, row)``."""

    new_segments: list[tuple[int, str, int]]  # (seg_id, file, rows)
    moves: list[tuple[int, int, int]]
    old_segments: list[tuple[int, str]]
    reclaimed_bytes: int


def compact_segments(
    conn: sqlite3.Connection, folder: Path, dim: int, dtype: Codec, segment_bytes: int
) -> int:
    """Rewrite live vectors of ``folder/segments``; caller holds the writer lock. Returns
    the bytes of segment data reclaimed (0 when there was nothing to reclaim)."""
    seg_dir = folder / "segments"
    row_bytes = dtype.row_bytes(dim)  # rows are copied as raw bytes: any codec, scales included
    segments = {  # names read from SQLite are checked: compaction unlinks them afterwards
        int(s): (segment_path(folder, f, dtype).name, int(r))
        for s, f, r in conn.execute("SELECT seg_id, file, committed_rows FROM segments")
    }
    pages = conn.execute(  # pages stored without vectors have no segment and stay as they are
        "SELECT row, seg_id, vec_offset, n_vectors FROM pages WHERE n_vectors > 0 ORDER BY seg_id, vec_offset"
    ).fetchall()
    committed = sum(r for _, r in segments.values())
    live = sum(int(p[3]) for p in pages)
    empty_segments = any(r == 0 for _, r in segments.values())
    if live == committed and not empty_segments:
        return 0
    next_id = int(conn.execute("SELECT value FROM meta WHERE key = 'next_seg_id'").fetchone()[0])
    plan_segments: list[tuple[int, str, int]] = []
    moves: list[tuple[int, int, int]] = []
    sources = {
        s: map_rows(folder, f"segments/{f}", dtype.numpy, (r, dtype.width(dim)))
        for s, (f, r) in segments.items()
        if r
    }
    fd = -1
    try:
        rows_in_current = 0
        for row, seg_id, off, n in pages:
            if fd < 0 or (rows_in_current > 0 and rows_in_current * row_bytes >= segment_bytes):
                if fd >= 0:
                    _finish(fd)
                    fd = -1
                    plan_segments[-1] = (*plan_segments[-1][:2], rows_in_current)
                name = segment_name(next_id, dtype)
                fd = safe_files.create_new(folder, f"segments/{name}")
                plan_segments.append((next_id, name, 0))
                next_id += 1
                rows_in_current = 0
            _copy(sources[int(seg_id)], int(off), int(n), fd, rows_in_current * row_bytes, row_bytes)
            moves.append((plan_segments[-1][0], rows_in_current, int(row)))
            rows_in_current += int(n)
        if fd >= 0:
            _finish(fd)
            fd = -1
            plan_segments[-1] = (*plan_segments[-1][:2], rows_in_current)
        fsync_dir(seg_dir)
        _swap(conn, plan_segments, moves, list(segments), next_id)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        for _, name, _ in plan_segments:
            with contextlib.suppress(OSError):
                safe_files.remove(folder, f"segments/{name}")
        raise
    finally:
        sources.clear()
    for _seg_id, (name, _) in segments.items():
        for stale in (name, name.rsplit(".", 1)[0] + ".bits"):  # the segment and its binary codes
            safe_files.remove(folder, f"segments/{stale}", missing_ok=True)
    fsync_dir(seg_dir)
    return (committed - live) * row_bytes


def _copy(source: np.ndarray, off: int, n: int, fd: int, dest: int, row_bytes: int) -> None:
    step = max(1, COPY_BYTES // row_bytes)
    for a in range(0, n, step):
        chunk = np.ascontiguousarray(source[off + a : off + min(n, a + step)])
        write_at(fd, dest + a * row_bytes, chunk.data.cast("B"))


def _finish(fd: int) -> None:
    os.fsync(fd)
    os.close(fd)


def _swap(
    conn: sqlite3.Connection,
    new_segments: list[tuple[int, str, int]],
    moves: list[tuple[int, int, int]],
    old_ids: list[int],
    next_id: int,
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("INSERT INTO segments(seg_id, file, committed_rows) VALUES (?, ?, ?)", new_segments)
        conn.executemany("UPDATE pages SET seg_id = ?, vec_offset = ? WHERE row = ?", moves)
        conn.executemany("DELETE FROM segments WHERE seg_id = ?", [(s,) for s in old_ids])
        conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seg_id'", (next_id,))
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
