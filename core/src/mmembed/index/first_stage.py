"""Binary first stage: a Hamming MaxSim scan that shortlists pages for exact rescoring.

Each stored token is reduced to its sign bits (1 bit per dimension, packed in uint64
words). A page's first-stage score for one query is the sum over query tokens of the best
bit agreement with any of the page's tokens — MaxSim with agreement in place of the dot
product. The codes are derived data: they are built from the memory-mapped segments on the
first search and extended as segments grow (segments are append-only), so they need no
on-disk format, no recovery and cost ``dim / 8`` bytes per token in memory (1/16 of
float16). The final top-k is always scored exactly by the caller.
"""

from __future__ import annotations

import numpy as np
import torch

from .search import Locations, ViewFn, _chunks

SCAN_TOKENS = 1 << 15
"""Page tokens per XOR block: bounds the (query tokens, page tokens, words) temporary."""


def binary_codes(values: torch.Tensor) -> np.ndarray:
    """``(n, words)`` uint64 sign bits of ``(n, dim)`` vectors, zero-padded to 64 bits."""
    bits = (values > 0).numpy()  # (n, dim) bool
    packed = np.packbits(bits, axis=1)  # (n, ceil(dim / 8)) uint8
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)  # (n, words)


class BinaryCodes:
    """Per-segment sign-bit codes of committed rows, kept in memory and grown on demand."""

    def __init__(self) -> None:
        self._codes: dict[int, np.ndarray] = {}

    def segment(self, seg_id: int, rows: int, view: ViewFn) -> np.ndarray:
        """Codes of the first ``rows`` rows of segment ``seg_id``."""
        have = self._codes.get(seg_id)
        done = 0 if have is None else have.shape[0]
        if done < rows:
            fresh = binary_codes(view(seg_id, rows)[done:rows])  # (rows - done, words)
            have = fresh if have is None else np.concatenate([have, fresh])
            self._codes[seg_id] = have
        assert have is not None
        return have[:rows]

    def forget_except(self, keep: set[int]) -> None:
        """Drop codes of segments that no longer exist (after a compaction)."""
        for seg_id in set(self._codes) - keep:
            del self._codes[seg_id]

    def clear(self) -> None:
        self._codes.clear()


def hamming_maxsim(
    query_codes: np.ndarray, locs: Locations, codes: BinaryCodes, view: ViewFn, bits: int
) -> np.ndarray:
    """``(len(locs),)`` first-stage scores of one query's ``(tokens, words)`` codes."""
    out = np.empty(len(locs), dtype=np.int64)
    for a, b in _chunks(locs):
        seg_id = int(locs.seg[a])
        off, n = locs.off[a:b], locs.n[a:b]
        lo, hi = int(off[0]), int(off[-1] + n[-1])
        seg_codes = codes.segment(seg_id, hi, view)[lo:hi]  # (hi - lo, words)
        best = np.empty((query_codes.shape[0], hi - lo), dtype=np.int16)  # (q_tokens, page tokens)
        for s in range(0, hi - lo, SCAN_TOKENS):
            block = seg_codes[s : s + SCAN_TOKENS]  # (block, words)
            differing = np.bitwise_count(query_codes[:, None, :] ^ block[None, :, :]).sum(axis=2)
            best[:, s : s + block.shape[0]] = bits - differing
        starts, ends = off - lo, off - lo + n
        bounds = np.unique(np.concatenate([[0, hi - lo], starts, ends]))
        per_doc = np.maximum.reduceat(best, bounds[:-1], axis=1)  # (q_tokens, docs incl. gaps)
        out[a:b] = per_doc[:, np.searchsorted(bounds, starts)].sum(axis=0, dtype=np.int64)
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
