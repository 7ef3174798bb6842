"""Append-only raw vector files and the read-only memory maps over their committed rows.

A segment file is rows of ``dim`` little-endian values, nothing else. SQLite records how
many rows of each segment are committed; bytes past that are a crashed writer's leftovers
that readers never look at and the next writer truncates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import IndexFormatError
from .format import StorageDtype


def segment_name(seg_id: int, dtype: StorageDtype) -> str:
    return f"{seg_id:08d}.{dtype.extension}"


def write_at(fd: int, offset: int, data: memoryview) -> None:
    """``pwrite`` all of ``data`` at ``offset`` (loops over short writes)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


def append_rows(path: Path, committed_bytes: int, data: memoryview) -> None:
    """Write ``data`` right after the committed bytes of ``path`` and make it durable.

    Any tail past ``committed_bytes`` (from a batch that failed earlier) is cut first, so
    the new rows land exactly where the next commit will say they are.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != committed_bytes:
            os.ftruncate(fd, committed_bytes)
        write_at(fd, committed_bytes, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_uncommitted_tail(path: Path, committed_bytes: int) -> int:
    """Truncate ``path`` to its committed length; returns how many bytes were cut."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = -1
    if size < committed_bytes:
        raise IndexFormatError(
            f"segment file {path} holds {max(size, 0)} bytes but the index committed {committed_bytes}: "
            "vectors were lost outside mmembed (file deleted or truncated). Rebuild the index."
        )
    if size > committed_bytes:
        fd = os.open(path, os.O_RDWR)
        try:
            os.ftruncate(fd, committed_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
    return size - committed_bytes


@dataclass
class _Mapped:
    file: str
    rows: int
    tensor: torch.Tensor  # (rows, dim) in the logical storage dtype, backed by the file


class SegmentViews:
    """Memory maps over segments, kept between searches and grown when a segment grows.

    Maps are copy-on-write (``mode="c"``) so torch gets a writable array without copying;
    nothing ever writes through them.
    """

    def __init__(self, folder: Path, dim: int, dtype: StorageDtype) -> None:
        self.folder = folder
        self.dim = dim
        self.dtype = dtype
        self._maps: dict[int, _Mapped] = {}

    def view(self, seg_id: int, file: str, rows: int) -> torch.Tensor:
        """Rows ``[0, rows)`` of a segment, ``(rows, dim)``; raises FileNotFoundError if the
        file was removed by a compaction since the caller's snapshot."""
        cached = self._maps.get(seg_id)
        if cached is not None and cached.file == file and cached.rows >= rows:
            return cached.tensor[:rows]
        if rows == 0:
            return torch.empty(0, self.dim, dtype=self.dtype.torch)
        array = np.memmap(self.folder / file, dtype=self.dtype.numpy, mode="c", shape=(rows, self.dim))
        tensor = torch.from_numpy(array)
        if self.dtype.torch == torch.bfloat16:
            tensor = tensor.view(torch.bfloat16)  # raw uint16 bits -> bfloat16
        self._maps[seg_id] = _Mapped(file, rows, tensor)
        return tensor

    def forget_except(self, seg_ids: set[int]) -> None:
        for seg_id in list(self._maps):
            if seg_id not in seg_ids:
                del self._maps[seg_id]

    def clear(self) -> None:
        self._maps.clear()
