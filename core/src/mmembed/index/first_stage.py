"""Binary first stage: a Hamming MaxSim scan that shortlists pages for exact rescoring.

Each stored token is reduced to its sign bits (1 bit per dimension, packed in uint64
words, ``dim / 8`` bytes: 1/16 of float16). A page's first-stage score for one query is the
sum over query tokens of the best bit agreement with any of the page's tokens (see
:mod:`.hamming`). The final top-k is always scored exactly by the caller.

On disk (index created with ``first_stage="binary"``): ``segments/<id>.bits`` beside each
segment holds the codes of its rows, written with the vectors before the SQLite commit
that makes them reachable, so the segment's ``committed_rows`` bounds both files; bytes
past it are a crashed writer's leftovers that readers ignore and the next writer cuts.
Searches memory-map the codes, so their RSS does not grow with the index. Rows the file
does not cover (an index written before codes existed, or one created without the binary
first stage and searched with ``candidates=``) are coded in memory from the vectors; the
next writer (``add``/``compact``) of a binary index writes the missing codes to disk.
"""

from __future__ import annotations

import os
import re
import sqlite3
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import hamming, safe_files
from .codecs import Rows
from .integrity import IndexDamageWarning
from .search import Locations, ViewFn, _chunks
from .segments import append_rows, map_rows

DEFAULT_CANDIDATES = 200
"""Pages per query scored exactly after the first stage when ``candidates`` is not given,
chosen on the scale benchmark (README; 10k pages of 2,000 distinct MiniLM pages x5): the
binary stage's recall@10 vs exact is 0.993 with 200 at 8.7x the exact scan's speed, 0.980
with 100 at 10x. Raise ``candidates`` where near-duplicate pages must be ordered exactly."""

_CODES_FILE = re.compile(r"[0-9]{8}\.bits")


def codes_name(segment_file: str) -> str:
    """``00000001.f16`` -> ``00000001.bits``."""
    return segment_file.rsplit(".", 1)[0] + ".bits"


def is_codes_name(name: str) -> bool:
    return _CODES_FILE.fullmatch(name) is not None


def code_words(dim: int) -> int:
    return (dim + 63) // 64


def binary_codes(values: torch.Tensor) -> np.ndarray:
    """``(n, words)`` uint64 sign bits of ``(n, dim)`` vectors, zero-padded to 64 bits."""
    bits = (values > 0).numpy()  # (n, dim) bool
    packed = np.packbits(bits, axis=1)  # (n, ceil(dim / 8)) uint8
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)  # (n, words)


# ---------------------------------------------------------------------------- writing


CODES_CHECKSUM = "codes_crc32:"
"""Prefix of the ``meta`` keys in ``index.sqlite`` that hold ``"<rows>:<crc32>"`` of a codes
file's committed rows, written in the transaction that commits them."""


def checksum_key(segment_file: str) -> str:
    return CODES_CHECKSUM + codes_name(segment_file)


def parse_checksum(value: object) -> tuple[int, int] | None:
    """``(rows, crc32)`` of a recorded checksum, ``None`` when it is not one."""
    try:
        rows, crc = str(value).split(":")
        return int(rows), int(crc)
    except ValueError:
        return None


def file_checksum(root: Path, rel: str, nbytes: int) -> int:
    """CRC-32 of the first ``nbytes`` of ``root/rel`` (no link followed)."""
    crc, done = 0, 0
    with safe_files.opened(root, rel) as fd:
        while done < nbytes:
            chunk = os.pread(fd, min(1 << 22, nbytes - done), done)
            if not chunk:
                break
            crc, done = zlib.crc32(chunk, crc), done + len(chunk)
    return crc


def write_codes(
    seg_dir: Path,
    segment_file: str,
    dim: int,
    committed_rows: int,
    committed: Callable[[], Rows],
    new_vectors: torch.Tensor | None = None,
    recorded: tuple[int, int] | None = None,
) -> int:
    """Make ``<id>.bits`` hold the codes of the segment's first ``committed_rows`` rows
    followed by those of ``new_vectors`` (the batch about to be committed), durably.

    Rows the file misses (an older index, a segment rewritten by compaction) are coded
    from the committed vectors first; a longer file (a crashed batch) is cut. Caller holds
    the writer lock; like the vectors, the codes become reachable only with the commit.
    ``committed()`` gives the segment's committed vectors, ``(committed_rows, dim)``.

    Returns the CRC-32 of the file's rows after the write (``committed_rows`` plus the new
    ones), for the caller to record with the commit; ``recorded`` is the ``(rows, crc32)``
    recorded for the committed rows (it saves reading them back).
    """
    root, rel = seg_dir.parent, f"{seg_dir.name}/{codes_name(segment_file)}"
    row_bytes = code_words(dim) * 8
    try:
        size: int | None = safe_files.size(root, rel)
    except FileNotFoundError:
        size = None
    have = (size or 0) // row_bytes
    start = min(have, committed_rows)
    parts = []
    if start < committed_rows:
        parts.append(binary_codes(committed()[start:committed_rows]))  # (missing, words)
    if new_vectors is not None and new_vectors.shape[0]:
        parts.append(binary_codes(new_vectors))  # (batch rows, words)
    if recorded is not None and recorded[0] == start:
        crc = recorded[1]
    else:
        crc = file_checksum(root, rel, start * row_bytes) if start else 0
    if not parts:
        if size is not None and size != committed_rows * row_bytes:
            safe_files.truncate(root, rel, committed_rows * row_bytes)
        return crc
    data = np.ascontiguousarray(np.concatenate(parts))
    append_rows(root, rel, start * row_bytes, data.data.cast("B"))
    return zlib.crc32(data.data.cast("B"), crc)


def cut_codes_tail(seg_dir: Path, segment_file: str, committed_rows: int, dim: int) -> None:
    """Drop codes past the committed rows (a crashed batch); a shorter file is allowed."""
    root, rel = seg_dir.parent, f"{seg_dir.name}/{codes_name(segment_file)}"
    committed_bytes = committed_rows * code_words(dim) * 8
    try:
        if safe_files.size(root, rel) > committed_bytes:
            safe_files.truncate(root, rel, committed_bytes)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------- reading


class BinaryCodes:
    """Per-segment codes of committed rows: memory-mapped from ``<id>.bits`` when it covers
    them, otherwise coded in memory (and grown on demand: segments are append-only)."""

    def __init__(self, seg_dir: Path | None = None, dim: int = 0) -> None:
        self.seg_dir = seg_dir
        self.words = code_words(dim)
        self._mapped: dict[int, tuple[str, int, np.ndarray]] = {}  # seg_id -> (file, rows, codes)
        self._memory: dict[int, np.ndarray] = {}
        self.checksums: dict[str, tuple[int, int]] = {}  # codes file -> recorded (rows, crc32)
        self._verified: set[tuple[str, int]] = set()
        self._bad: set[str] = set()

    def segment(self, seg_id: int, rows: int, view: ViewFn, file: str | None = None) -> np.ndarray:
        """``(rows, words)`` codes of the first ``rows`` rows of segment ``seg_id``."""
        mapped = self._mapped.get(seg_id)
        if mapped is not None and mapped[0] == file and mapped[1] >= rows:
            return mapped[2][:rows]
        if file is not None and self.seg_dir is not None:
            on_disk = self._map(seg_id, file, rows)
            if on_disk is not None:
                return on_disk
        have = self._memory.get(seg_id)
        done = 0 if have is None else have.shape[0]
        if done < rows:
            fresh = binary_codes(view(seg_id, rows)[done:rows])  # (rows - done, words)
            have = fresh if have is None else np.concatenate([have, fresh])
            self._memory[seg_id] = have
        assert have is not None
        return have[:rows]

    def _map(self, seg_id: int, file: str, rows: int) -> np.ndarray | None:
        assert self.seg_dir is not None
        root, rel = self.seg_dir.parent, f"{self.seg_dir.name}/{codes_name(file)}"
        words = self.words
        try:
            covered = safe_files.size(root, rel) // (words * 8)
        except FileNotFoundError:
            return None
        if covered < rows:
            return None
        if not self._trusted(codes_name(file), rows, covered):
            return None
        # Only the rows asked for (committed in the caller's snapshot) are mapped: a longer
        # file may end in a crashed batch's codes.
        # Copy-on-write like the segment maps: a writable array (nothing writes through it),
        # so the compiled scan sees one array type, mapped or in memory.
        codes = map_rows(root, rel, np.uint64, (rows, words))
        self._mapped[seg_id] = (file, rows, codes)
        self._memory.pop(seg_id, None)
        return codes

    def _trusted(self, name: str, rows: int, covered: int) -> bool:
        """Whether the codes file ``name`` matches the checksum recorded with its committed rows
        (checked once per committed length; a file written before checksums is trusted).
        Damaged codes are recomputed from the vectors instead: correct results, slower."""
        recorded = self.checksums.get(name)
        if recorded is None or not rows <= recorded[0] <= covered:
            return True
        if name in self._bad:
            return False
        if (name, recorded[0]) in self._verified:
            return True
        assert self.seg_dir is not None
        root, rel = self.seg_dir.parent, f"{self.seg_dir.name}/{name}"
        if file_checksum(root, rel, recorded[0] * self.words * 8) == recorded[1]:
            self._verified.add((name, recorded[0]))
            return True
        self._bad.add(name)
        warnings.warn(
            f"the sign-bit codes {self.seg_dir / name} of the index at {root} do not match the "
            "checksum recorded when they were committed (they were changed outside mmembed): they "
            "are recomputed from the stored vectors for searches (correct, slower). `mmembed index "
            "--repair --index FOLDER` rewrites them.",
            IndexDamageWarning,
            stacklevel=6,
        )
        return False

    def forget_except(self, keep: set[int]) -> None:
        """Drop codes of segments that no longer exist (after a compaction)."""
        for store in (self._mapped, self._memory):
            for seg_id in set(store) - keep:
                del store[seg_id]

    def clear(self) -> None:
        self._mapped.clear()
        self._memory.clear()
        self._verified.clear()
        self._bad.clear()

    def in_memory_bytes(self) -> int:
        """Bytes of codes held in memory rather than mapped (0 when every segment has its file)."""
        return sum(int(c.nbytes) for c in self._memory.values())


def hamming_maxsim(
    query_codes: np.ndarray,
    locs: Locations,
    codes: BinaryCodes,
    view: ViewFn,
    bits: int,
    files: Callable[[int], str | None] | None = None,
) -> np.ndarray:
    """``(len(locs),)`` first-stage scores of one query's ``(tokens, words)`` codes."""
    out = np.empty(len(locs), dtype=np.int64)
    for a, b in _chunks(locs):
        seg_id = int(locs.seg[a])
        off, n = locs.off[a:b], locs.n[a:b]
        hi = int(off[-1] + n[-1])
        seg_codes = codes.segment(seg_id, hi, view, files(seg_id) if files else None)  # (hi, words)
        out[a:b] = hamming.scan(query_codes, seg_codes, off, off + n, bits)
    return out


def shortlist(scores: np.ndarray, candidates: int) -> np.ndarray:
    """Columns of the ``candidates`` best first-stage scores, ascending (storage order)."""
    if candidates >= scores.shape[0]:
        return np.arange(scores.shape[0])
    picked = np.argpartition(-scores, candidates - 1)[:candidates]
    return np.sort(picked)


def subset(locs: Locations, cols: np.ndarray) -> Locations:
    """The pages at ``cols`` (ascending), still sorted by ``(seg, off)``."""
    return Locations(locs.rows[cols], locs.seg[cols], locs.off[cols], locs.n[cols])


# ---------------------------------------------------------------------------- checksums in SQLite


def recorded_checksums(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """codes file -> ``(rows, crc32)`` recorded in ``index.sqlite`` (unparsable entries skipped)."""
    out = {}
    for key, value in conn.execute(
        "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (CODES_CHECKSUM, CODES_CHECKSUM + "\uffff")
    ):
        parsed = parse_checksum(value)
        if parsed is not None:
            out[str(key)[len(CODES_CHECKSUM) :]] = parsed
    return out


def record_checksum(conn: sqlite3.Connection, segment_file: str, rows: int, crc: int) -> None:
    """Record the codes file's checksum; in the caller's transaction when it has one."""
    conn.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (checksum_key(segment_file), f"{rows}:{crc}")
    )


def forget_checksums(conn: sqlite3.Connection, keep: set[str]) -> None:
    """Drop the checksums of codes files other than ``keep`` (segments compacted away)."""
    for name in set(recorded_checksums(conn)) - keep:
        conn.execute("DELETE FROM meta WHERE key = ?", (CODES_CHECKSUM + name,))
