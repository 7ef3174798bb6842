"""Append-only raw vector files and the read-only memory maps over their committed rows.

A segment file is fixed-size rows, one per vector, in the index's storage codec (see
``codecs.py``), nothing else. SQLite records how
many rows of each segment are committed; bytes past that are a crashed writer's leftovers
that readers never look at and the next writer truncates. Files are written, cut and
mapped through :mod:`.safe_files` (relative to the index folder, no link followed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import safe_files
from .codecs import Codec, Rows
from .errors import IndexFormatError


def segment_name(seg_id: int, codec: Codec) -> str:
    return f"{seg_id:08d}.{codec.extension}"


def write_at(fd: int, offset: int, data: memoryview) -> None:
    """``pwrite`` all of ``data`` at ``offset`` (loops over short writes)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


def append_rows(root: Path, rel: str, committed_bytes: int, data: memoryview) -> None:
    """Write ``data`` right after the committed bytes of ``root/rel`` and make it durable.

    Any tail past ``committed_bytes`` (from a batch that failed earlier) is cut first, so
    the new rows land exactly where the next commit will say they are. A link at ``rel``
    (or on the way to it) is refused: see :mod:`.safe_files`.
    """
    fd = safe_files.open_file(root, rel, write=True, create=True)
    try:
        if os.fstat(fd).st_size != committed_bytes:
            os.ftruncate(fd, committed_bytes)
        write_at(fd, committed_bytes, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_uncommitted_tail(root: Path, rel: str, committed_bytes: int) -> int:
    """Truncate ``root/rel`` to its committed length; returns how many bytes were cut."""
    try:
        fd = safe_files.open_file(root, rel, write=True)
    except FileNotFoundError:
        fd = -1
    try:
        size = os.fstat(fd).st_size if fd >= 0 else -1
        if size < committed_bytes:
            raise IndexFormatError(
                f"segment file {root / rel} holds {max(size, 0)} bytes but the index committed "
                f"{committed_bytes}: vectors were lost outside mmembed (file deleted or truncated). "
                "Rebuild the index."
            )
        if size > committed_bytes:
            os.ftruncate(fd, committed_bytes)
            os.fsync(fd)
    finally:
        if fd >= 0:
            os.close(fd)
    return size - committed_bytes


def map_rows(root: Path, rel: str, dtype: np.dtype | type, shape: tuple[int, ...]) -> np.memmap:
    """A copy-on-write map of the first ``shape`` rows of ``root/rel``, opened without following
    a link (a segment or codes file linked to one outside the folder is refused, not read)."""
    fd = safe_files.open_file(root, rel)
    with open(fd, "rb", closefd=True) as fh:
        return np.memmap(fh, dtype=dtype, mode="c", shape=shape)


@dataclass
class _Mapped:
    file: str
    rows: int
    tensor: torch.Tensor  # (rows, width) raw rows of the codec, backed by the file


class SegmentViews:
    """Memory maps over segments, kept between searches and grown when a segment grows.

    Maps are copy-on-write (``mode="c"``) so torch gets a writable array without copying;
    nothing ever writes through them.
    """

    def __init__(self, folder: Path, dim: int, codec: Codec) -> None:
        self.folder = folder
        self.dim = dim
        self.codec = codec
        self._maps: dict[int, _Mapped] = {}

    def view(self, seg_id: int, file: str, mapped: int, rows: int | None = None) -> Rows:
        """Rows ``[0, rows)`` (default: all) of a segment mapped over its first ``mapped``
        rows, as the codec's :class:`Rows`; raises FileNotFoundError if the file was removed
        by a compaction since the caller's snapshot."""
        raw = self._raw(seg_id, file, mapped)
        return self.codec.rows(raw if rows is None else raw[:rows])

    def _raw(self, seg_id: int, file: str, rows: int) -> torch.Tensor:
        cached = self._maps.get(seg_id)
        if cached is not None and cached.file == file and cached.rows >= rows:
            return cached.tensor[:rows]
        width = self.codec.width(self.dim)
        if rows == 0:
            return self.codec.raw(np.empty((0, width), dtype=self.codec.numpy))
        array = map_rows(self.folder.parent, f"{self.folder.name}/{file}", self.codec.numpy, (rows, width))
        tensor = self.codec.raw(array)
        self._maps[seg_id] = _Mapped(file, rows, tensor)
        return tensor

    def forget_except(self, seg_ids: set[int]) -> None:
        for seg_id in list(self._maps):
            if seg_id not in seg_ids:
                del self._maps[seg_id]

    def clear(self) -> None:
        self._maps.clear()
