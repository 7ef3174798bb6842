"""What a new writer repairs before its first write: a killed writer's leftovers.

Runs once per writer, right after it takes the writer lock (:meth:`LocalIndex.lock_for_writing`),
and only after :func:`~mmembed.index.integrity.check_segments` found manifest, SQLite and
file sizes in agreement: the uncommitted tail of the last segment (and of its codes) is cut,
files no committed state refers to are deleted, missing sign-bit codes are written and a
killed graph build's file is removed.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

from ..types import EncoderInfo
from . import ann, files, integrity, plaid
from . import format as fmt
from .codecs import Codec
from .first_stage import (
    codes_name,
    cut_codes_tail,
    forget_checksums,
    is_codes_name,
    record_checksum,
    recorded_checksums,
    write_codes,
)
from .lock import WriterLock
from .segments import SegmentViews, cut_uncommitted_tail


def stores_codes(first_stage: str | None) -> bool:
    """Sign-bit codes on disk: the binary first stage's scan, the HNSW stage's refinement."""
    return first_stage in ("binary", "hnsw")


def recover(
    path: Path, conn: sqlite3.Connection, encoder: EncoderInfo, codec: Codec, first_stage: str | None
) -> None:
    """Cut the uncommitted tail of the last segment and delete segment files no
    committed state refers to, once manifest, SQLite and file sizes agree."""
    seg_dir = path / fmt.SEGMENTS_DIR
    if seg_dir.is_symlink() or not seg_dir.is_dir():
        raise integrity.damaged(path, f"{seg_dir} is not a folder inside the index")
    with integrity.sqlite_errors(path):
        states = integrity.check_segments(conn, path, encoder, codec)
        if states:
            last = states[-1]
            cut_uncommitted_tail(path, files.in_segments(last.path.name), last.committed_bytes)
            cut_codes_tail(
                seg_dir, last.path.name, last.committed_bytes // codec.row_bytes(encoder.dim), encoder.dim
            )
        integrity.record_shape(conn, encoder, codec)
    referenced = {state.path.name for state in states}
    referenced |= {codes_name(name) for name in referenced}
    removed = False
    for name in files.listdir(path, fmt.SEGMENTS_DIR):
        if name not in referenced and (integrity.is_segment_name(name) or is_codes_name(name)):
            files.remove(path, files.in_segments(name))
            removed = True
    if removed:
        fmt.fsync_dir(seg_dir)
    complete_codes(path, conn, encoder, codec, first_stage)
    if first_stage == "hnsw":
        ann.remove_unreferenced(path)  # a killed graph build's file
    if first_stage == "plaid":
        plaid.remove_unreferenced(path)  # a killed PLAID build's file


def complete_codes(
    path: Path, conn: sqlite3.Connection, encoder: EncoderInfo, codec: Codec, first_stage: str | None
) -> None:
    """Binary and HNSW first stages: write the codes segments lack (an index written by an older
    mmembed, segments rewritten by compaction). Caller holds the writer lock."""
    if not stores_codes(first_stage):
        return
    seg_dir = path / fmt.SEGMENTS_DIR
    views = SegmentViews(seg_dir, encoder.dim, codec)
    with integrity.sqlite_errors(path):
        segments = conn.execute("SELECT seg_id, file, committed_rows FROM segments").fetchall()
        recorded = recorded_checksums(conn)
    names = []
    for seg_id, file, rows in segments:
        name = integrity.segment_path(path, file, codec).name
        names.append(codes_name(name))
        vectors = functools.partial(views.view, int(seg_id), name, int(rows))
        known = recorded.get(codes_name(name))
        crc = write_codes(seg_dir, name, encoder.dim, int(rows), vectors, recorded=known)
        if known != (int(rows), crc):
            record_checksum(conn, name, int(rows), crc)  # (autocommit: the rows are committed)
    forget_checksums(conn, set(names))


def lock_and_recover(
    lock: WriterLock,
    path: Path,
    conn: sqlite3.Connection,
    encoder: EncoderInfo,
    codec: Codec,
    first_stage: str | None,
) -> None:
    """Take the writer ``lock`` and repair what a killed writer left behind; the lock is let
    go again if the repair fails (the next write retries it)."""
    lock.acquire()
    try:
        recover(path, conn, encoder, codec, first_stage)
    except BaseException:
        lock.release()
        raise
