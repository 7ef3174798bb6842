"""Exact scoring of stored pages straight from the segment memory maps.

Pages are scored in storage order, one segment at a time. When the pages to score cover
most of a segment range, that range is handed to the scorer as it lies on disk (no copy):
gaps left by deleted pages become extra documents whose scores are dropped. When they are
sparse (a selective filter, many deletions) only their rows are gathered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..scoring import Ragged, maxsim, score
from ..types import Similarity
from .codecs import Int8Rows, Rows

CHUNK_VECTORS = 1 << 18
"""Vectors per scorer call: bounds the temporary (query tokens x doc tokens) products."""
DENSE_ENOUGH = 0.5
"""Score a contiguous range when at least this fraction of its rows are wanted."""


@dataclass(frozen=True)
class Locations:
    """Where pages' vectors are: parallel int64 arrays sorted by ``(seg, off)``."""

    rows: np.ndarray  # (n_pages,) SQLite row of each page
    seg: np.ndarray  # (n_pages,) segment id
    off: np.ndarray  # (n_pages,) first vector row inside the segment
    n: np.ndarray  # (n_pages,) number of vectors

    @classmethod
    def from_rows(cls, rows: list[tuple[int, int, int, int]]) -> Locations:
        """From ``(row, seg_id, vec_offset, n_vectors)`` tuples (sorted here). Pages without
        vectors are dropped: a zero-length document would share its bounds with its
        neighbour in a contiguous range and take that page's score."""
        arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
        arr = arr[arr[:, 3] > 0]
        arr = arr[np.lexsort((arr[:, 2], arr[:, 1]))]
        return cls(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), arr[:, 3].copy())

    def __len__(self) -> int:
        return int(self.rows.shape[0])


# view(seg_id, rows) -> that segment's first rows; indexing them yields (n, dim) float vectors
ViewFn = Callable[[int, int], Rows]


def score_locations(
    queries: Ragged, locs: Locations, view: ViewFn, similarity: Similarity, *, single: bool
) -> torch.Tensor:
    """``(n_queries, len(locs))`` float32 scores, columns in ``locs`` order."""
    out = torch.empty(len(queries), len(locs), dtype=torch.float32)
    for a, b in _chunks(locs):
        seg_id = int(locs.seg[a])
        values, offsets, cols, scales = _chunk_ragged(locs.off[a:b], locs.n[a:b], view, seg_id, single)
        if scales is not None:  # int8 multi-vector rows: scaled inside the scorer
            scores = maxsim(queries, Ragged(values, offsets), row_scales=scales)  # (n_queries, n_docs)
        else:
            scores = score(queries, Ragged(values, offsets), similarity)  # (n_queries, n_docs)
        out[:, a:b] = scores[:, torch.from_numpy(cols)]
    return out


def _chunks(locs: Locations) -> list[tuple[int, int]]:
    """Index ranges of ``locs`` inside one segment holding at most ~CHUNK_VECTORS vectors."""
    chunks: list[tuple[int, int]] = []
    if len(locs) == 0:
        return chunks
    seg_breaks = np.flatnonzero(np.diff(locs.seg)) + 1
    starts = np.concatenate([[0], seg_breaks])
    ends = np.concatenate([seg_breaks, [len(locs)]])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        total = np.cumsum(locs.n[s:e])
        a = s
        while a < e:
            base = int(total[a - s - 1]) if a > s else 0
            b = s + int(np.searchsorted(total, base + CHUNK_VECTORS, side="right"))
            b = min(max(b, a + 1), e)
            chunks.append((a, b))
            a = b
    return chunks


def _chunk_ragged(
    off: np.ndarray, n: np.ndarray, view: ViewFn, seg_id: int, single: bool
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor | None]:
    """``(values, offsets, cols, scales)``: the docs to score, which doc is each wanted page,
    and the per-row scales of int8 multi-vector rows (``None``: values are floats)."""
    lo, hi = int(off[0]), int(off[-1] + n[-1])
    live = int(n.sum())
    segment = view(seg_id, hi)  # (hi, dim) once indexed
    quantized = isinstance(segment, Int8Rows) and not single

    def rows(key: slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if quantized:
            assert isinstance(segment, Int8Rows)
            return segment.quantized(key)  # int8 values, no float copy
        return segment[key], None

    if live >= DENSE_ENOUGH * (hi - lo):
        values, scales = rows(slice(lo, hi))  # float codecs and int8: no copy, a slice of the map
        starts, ends = off - lo, off - lo + n
        if single:  # every row is its own document, so dense scoring sees one vector each
            bounds = np.arange(hi - lo + 1, dtype=np.int64)
        else:
            bounds = np.unique(np.concatenate([[0, hi - lo], starts, ends]))
        cols = np.searchsorted(bounds, starts)
        return values, torch.from_numpy(bounds), cols, scales
    # Sparse: gather just the wanted rows (a copy of only those rows).
    first = np.repeat(off - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    idx = first + np.arange(live, dtype=np.int64)  # (live,) row of each wanted vector
    values, scales = rows(torch.from_numpy(idx))
    offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    return values, torch.from_numpy(offsets), np.arange(len(n)), scales


def top_k(scores: torch.Tensor, k: int) -> list[list[tuple[int, float]]]:
    """Best ``k`` columns of each row as ``(column, score)``, best first.

    Equal scores keep column order (storage order: the page stored first wins), so results
    are deterministic; ``torch.topk`` alone does not promise an order among ties.
    """
    results: list[list[tuple[int, float]]] = []
    n_docs = scores.shape[1]
    for row in scores:
        kk = min(k, n_docs)
        if kk <= 0:
            results.append([])
            continue
        threshold = torch.topk(row, kk).values[-1]
        candidates = torch.nonzero(row >= threshold).flatten()  # ascending column order
        order = torch.sort(row[candidates], descending=True, stable=True).indices[:kk]
        picked = candidates[order]
        results.append(list(zip(picked.tolist(), row[picked].tolist(), strict=True)))
    return results
