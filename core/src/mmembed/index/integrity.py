"""Checks on what an index folder says about itself: the folder is untrusted input.

A copied, tampered or half-restored folder must never make mmembed write outside it, cut
committed vectors, or return silently wrong scores. Readers run the cheap checks on every
search (locations inside committed rows); a writer runs :func:`check_segments` before its
recovery truncates anything. ``docs/index-format.md`` lists what is trusted and what is checked.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..types import EncoderInfo, MMEmbedError
from .codecs import CODECS, Codec
from .errors import IndexDamagedError
from .format import SEGMENTS_DIR

if TYPE_CHECKING:
    import torch

_SEGMENT_FILE = re.compile(r"[0-9]{8}\.(f16|bf16|f32|i8)")


def damaged(folder: Path, what: str) -> IndexDamagedError:
    """The one error for an inconsistent folder: names it, says nothing was changed and what to do."""
    return IndexDamagedError(
        f"the index at {folder} is damaged: {what}. Nothing was changed. Rebuild the index into a new "
        "folder (e.g. `mmembed index FILES... --index NEW_FOLDER`) or restore it from a backup."
    )


def segment_path(folder: Path, file: object, dtype: Codec) -> Path:
    """``folder/segments/file`` after checking that ``file`` (read from ``index.sqlite``) is a
    plain segment name of this index's dtype and resolves inside the segments folder."""
    if not isinstance(file, str) or not _SEGMENT_FILE.fullmatch(file):
        raise damaged(folder, f"index.sqlite names the segment file {file!r}, which is not a segment name")
    if not file.endswith("." + dtype.extension):
        stored = next(d.name for d in CODECS.values() if file.endswith("." + d.extension))
        raise damaged(
            folder,
            f"segment {file} holds {stored} vectors but manifest.json says dtype {dtype.name!r}",
        )
    seg_dir = folder / SEGMENTS_DIR
    path = seg_dir / file
    if seg_dir.is_symlink() or path.is_symlink() or path.resolve().parent != seg_dir.resolve():
        raise damaged(folder, f"segment {file} is a link that leads outside {seg_dir}")
    return path


@dataclass(frozen=True)
class SegmentState:
    seg_id: int
    path: Path
    committed_bytes: int
    size: int  # bytes on disk; more than committed_bytes = an uncommitted tail


def check_segments(
    conn: sqlite3.Connection, folder: Path, encoder: EncoderInfo, dtype: Codec
) -> list[SegmentState]:
    """Cross-check manifest, SQLite and segment sizes before a writer truncates anything.

    Refuses (naming what disagrees) when the dim/dtype recorded in SQLite differ from the
    manifest's, a page points outside its segment's committed rows, a file is shorter than
    its committed length, or a segment other than the last one has a tail (only the last
    segment is ever appended to, so only it can hold an interrupted batch).
    """
    legacy = not check_recorded_shape(conn, folder, encoder, dtype)
    row_bytes = dtype.row_bytes(encoder.dim)
    states: list[SegmentState] = []
    committed_rows: dict[int, int] = {}
    for seg_id, file, rows in conn.execute(
        "SELECT seg_id, file, committed_rows FROM segments ORDER BY seg_id"
    ):
        if not isinstance(seg_id, int) or not isinstance(rows, int) or seg_id < 1 or rows < 0:
            raise damaged(folder, f"segment row ({seg_id!r}, {file!r}, {rows!r}) in index.sqlite is invalid")
        path = segment_path(folder, file, dtype)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise damaged(folder, f"segment file {path} is missing") from None
        if size < rows * row_bytes:
            raise damaged(
                folder,
                f"segment file {path} holds {size} bytes but index.sqlite committed {rows} rows of "
                f"{row_bytes} bytes ({rows * row_bytes} bytes)",
            )
        states.append(SegmentState(seg_id, path, rows * row_bytes, size))
        committed_rows[seg_id] = rows
    for state in states[:-1]:
        if state.size != state.committed_bytes:
            raise damaged(
                folder,
                f"segment file {state.path} holds {state.size} bytes, not the {state.committed_bytes} "
                "committed, although only the last segment can hold an interrupted batch (is the "
                "manifest's dim or dtype wrong?)",
            )
    if legacy and states:
        check_legacy_tail(folder, states[-1])
    for seg_id, lo, hi, n_min in conn.execute(
        "SELECT seg_id, MIN(vec_offset), MAX(vec_offset + n_vectors), MIN(n_vectors) FROM pages "
        "WHERE n_vectors != 0 GROUP BY seg_id"
    ):
        if seg_id not in committed_rows:
            raise damaged(folder, f"pages refer to segment {seg_id!r}, which index.sqlite does not list")
        if lo < 0 or n_min < 0 or hi > committed_rows[seg_id]:
            raise damaged(
                folder,
                f"pages of segment {seg_id} point at rows [{lo}, {hi}) outside its "
                f"{committed_rows[seg_id]} committed rows",
            )
    return states


def record_shape(conn: sqlite3.Connection, encoder: EncoderInfo, dtype: Codec) -> None:
    """Store the row shape and kind in SQLite too (indexes created before it was recorded get
    it from their first writer), so a later edit of manifest.json is caught before it is trusted."""
    conn.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('dim', ?), ('dtype', ?), ('kind', ?)",
        (encoder.dim, dtype.name, encoder.kind),
    )


def check_legacy_tail(folder: Path, last: SegmentState) -> None:
    """An index made before SQLite recorded its row shape has only the manifest's dim and
    dtype to size its rows by. A wrong one (halved dim, a wider dtype) makes the last segment
    look like it ends in exactly one or more copies of its committed bytes: a tail an
    interrupted batch leaves only by coincidence. Refuse to cut (or read) such a tail."""
    tail = last.size - last.committed_bytes
    if last.committed_bytes and tail and tail % last.committed_bytes == 0:
        raise damaged(
            folder,
            f"segment file {last.path} holds {last.size} bytes, {last.size // last.committed_bytes} times "
            f"the {last.committed_bytes} committed: the manifest's dim or dtype is probably wrong (this "
            "index predates the row shape SQLite records, so it cannot be checked). If manifest.json is "
            f"right, cut the interrupted batch yourself (truncate -s {last.committed_bytes} {last.path})",
        )


def check_sizes(conn: sqlite3.Connection, folder: Path, encoder: EncoderInfo, dtype: Codec) -> None:
    """On open, for an index whose SQLite records no row shape: segment sizes must fit the
    manifest's row size (:func:`check_segments`' checks, without changing anything)."""
    recorded = conn.execute("SELECT COUNT(*) FROM meta WHERE key = 'dim'").fetchone()[0]
    if not recorded:
        check_segments(conn, folder, encoder, dtype)


def check_recorded_shape(conn: sqlite3.Connection, folder: Path, encoder: EncoderInfo, dtype: Codec) -> bool:
    """Manifest dim/dtype/kind must equal the ones SQLite recorded at creation (indexes created
    before they were recorded have none: nothing to compare, returns ``False``)."""
    recorded = dict(
        conn.execute("SELECT key, value FROM meta WHERE key IN ('dim', 'dtype', 'kind')").fetchall()
    )
    for key, value in (("dim", encoder.dim), ("dtype", dtype.name), ("kind", encoder.kind)):
        if key in recorded and recorded[key] != value:
            raise damaged(
                folder,
                f"manifest.json says {key} {value!r} but index.sqlite recorded {key} {recorded[key]!r}",
            )
    return "dim" in recorded


def check_locations(
    folder: Path, seg: np.ndarray, off: np.ndarray, n: np.ndarray, segments: dict[int, tuple[str, int]]
) -> None:
    """Each page's vectors ``[off, off + n)`` must lie inside its segment's committed rows
    (``segments``: seg_id -> (file, committed_rows)). A negative offset would silently slice
    from the end of a segment, a long count would read its neighbours' vectors."""
    if not len(off):
        return
    ids = np.array(sorted(segments), dtype=np.int64)
    rows = np.array([segments[int(s)][1] for s in ids], dtype=np.int64)
    where = np.searchsorted(ids, seg)  # (n_pages,) position of each page's segment
    known = (where < len(ids)) & (ids[np.minimum(where, len(ids) - 1)] == seg) if len(ids) else seg != seg
    if not bool(known.all()):
        raise damaged(
            folder, f"a page refers to segment {int(seg[~known][0])}, which index.sqlite does not list"
        )
    bad = (off < 0) | (n < 0) | (off + n > rows[where])
    if bool(bad.any()):
        i = int(np.flatnonzero(bad)[0])
        raise damaged(
            folder,
            f"a page record points at vectors [{int(off[i])}, {int(off[i] + n[i])}) of segment "
            f"{int(seg[i])}, outside its {int(rows[where[i]])} committed rows",
        )


def is_segment_name(name: str) -> bool:
    return _SEGMENT_FILE.fullmatch(name) is not None


# SQLite errors that say nothing about the folder's contents: reported as they are.
_TRANSIENT = ("locked", "busy", "readonly", "read-only", "disk i/o", "full", "unable to open", "interrupted")


@contextlib.contextmanager
def sqlite_errors(folder: Path) -> Iterator[None]:
    """Turn a damaged database (``file is not a database``, ``malformed``, a missing table,
    a metadata cell that is not JSON) into :class:`IndexDamagedError` naming the folder."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and any(t in message.lower() for t in _TRANSIENT):
            raise MMEmbedError(
                f"could not read the index at {folder}: {message}; check the folder and retry."
            ) from exc
        raise damaged(folder, f"index.sqlite cannot be read ({message})") from exc
    except BadRow as exc:
        raise damaged(folder, f"index.sqlite holds a bad page record: {exc}") from exc


class BadRow(ValueError):
    """A page record whose cells do not have the types the schema promises."""


def rank_damaged_last(scores: torch.Tensor, rows: np.ndarray, conn: sqlite3.Connection, folder: Path) -> None:
    """Non-finite scores (NaN / inf written into a segment outside mmembed) become ``-inf``
    in place, so damaged pages rank after every good one instead of hiding them (top-k
    treats NaN as a threshold nothing passes); a warning names them."""
    bad = ~scores.isfinite()  # (n_queries, n_pages); tensor methods: opening an index imports no torch
    if not bool(bad.any()):
        return
    scores[bad] = float("-inf")
    columns = bad.any(dim=0).nonzero().flatten().tolist()
    wanted = [int(rows[c]) for c in columns[:5]]
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM pages WHERE row IN (SELECT value FROM json_each(?))", (json.dumps(wanted),)
        )
    ]
    more = f" and {len(columns) - 5} more" if len(columns) > 5 else ""
    warnings.warn(
        f"the index at {folder} holds NaN or infinite vectors for page(s) {', '.join(map(repr, ids))}{more}: "
        "they are ranked last. Re-index their sources (mmembed delete --source ..., then index) or rebuild the index.",
        IndexDamageWarning,
        stacklevel=4,
    )


class IndexDamageWarning(UserWarning):
    """Search results are complete, but some stored pages are damaged and were ranked last."""
