"""Hamming MaxSim over packed sign bits: a numba kernel, with a numpy path as fallback.

A page's score for one query is ``sum over query tokens of max over page tokens of equal
bits`` (MaxSim with bit agreement in place of the dot product), an exact integer. The numba
kernel runs the pages in parallel, four page tokens per step so each query word loaded
serves four pairs; LLVM emits ``popcnt`` (or vectorised popcounts) for the host CPU, so it
is correct on any x86-64 and fast where the CPU allows. Without numba
(``pip install 'mmembed-core[fast]'``) the numpy path gives the same integers, slower.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

SCAN_TOKENS = 1 << 15
"""numpy path: page tokens per XOR block, bounds the (query tokens, tokens, words) temporary."""

ScanFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def scan_numpy(
    query: np.ndarray, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray, bits: int
) -> np.ndarray:
    """``(n_pages,)`` int64 scores of pages ``codes[starts[i]:ends[i]]`` (ascending, non-overlapping,
    non-empty) for ``(q_tokens, words)`` uint64 ``query`` codes; the reference path."""
    out = np.zeros(starts.shape[0], dtype=np.int64)
    if starts.shape[0] == 0:
        return out
    lo, hi = int(starts[0]), int(ends[-1])
    best = np.empty((query.shape[0], hi - lo), dtype=np.int16)  # (q_tokens, tokens)
    for s in range(lo, hi, SCAN_TOKENS):
        block = codes[s : min(hi, s + SCAN_TOKENS)]  # (block, words)
        differing = np.bitwise_count(query[:, None, :] ^ block[None, :, :]).sum(axis=2, dtype=np.int16)
        best[:, s - lo : s - lo + block.shape[0]] = bits - differing
    # Gaps between pages (deleted rows) become extra reduceat segments whose results are dropped.
    bounds = np.unique(np.concatenate([[0, hi - lo], starts - lo, ends - lo]))
    per_segment = np.maximum.reduceat(best, bounds[:-1], axis=1)  # (q_tokens, segments)
    return per_segment[:, np.searchsorted(bounds, starts - lo)].sum(axis=0, dtype=np.int64)


def _numba_scan() -> ScanFn | None:
    """The compiled kernel, or None when numba is not installed (or disabled for tests)."""
    if os.environ.get("MMEMBED_NO_NUMBA"):
        return None
    try:
        from numba import njit, prange, types
        from numba.extending import intrinsic
    except ImportError:
        return None

    def ctpop(typingctx: Any, x: Any) -> Any:
        """LLVM's ctpop on one integer (numba has no popcount of its own)."""
        if not isinstance(x, types.Integer):
            return None

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.ctpop(args[0])

        return x(x), codegen

    popcount: Any = intrinsic(ctpop)

    # One explicit signature each: a single compiled (and cached) variant, whatever the caller.
    signature = "void(uint64[:, ::1], uint64[:, ::1], int64[::1], int64[::1], int64, int64[::1])"

    @njit(signature, parallel=True, cache=True, nogil=True)  # type: ignore[misc]
    def kernel(
        query_t: Any, codes: Any, starts: Any, ends: Any, bits: int, out: Any
    ) -> None:  # pragma: no cover
        words, q_tokens = query_t.shape  # query transposed: the inner loop runs over query tokens
        for p in prange(starts.shape[0]):
            fewest = np.full(q_tokens, bits + 1, np.int32)  # (q_tokens,) fewest differing bits
            d0 = np.empty(q_tokens, np.int32)
            d1 = np.empty(q_tokens, np.int32)
            d2 = np.empty(q_tokens, np.int32)
            d3 = np.empty(q_tokens, np.int32)
            t, end = starts[p], ends[p]
            while t < end:
                last = min(end - t, 4) - 1  # a short tail repeats its last token (min is idempotent)
                d0[:] = 0
                d1[:] = 0
                d2[:] = 0
                d3[:] = 0
                for w in range(words):
                    a0 = codes[t, w]
                    a1 = codes[t + min(1, last), w]
                    a2 = codes[t + min(2, last), w]
                    a3 = codes[t + min(3, last), w]
                    for q in range(q_tokens):
                        x = query_t[w, q]
                        d0[q] += np.int32(popcount(x ^ a0))
                        d1[q] += np.int32(popcount(x ^ a1))
                        d2[q] += np.int32(popcount(x ^ a2))
                        d3[q] += np.int32(popcount(x ^ a3))
                for q in range(q_tokens):
                    fewest[q] = min(fewest[q], min(min(d0[q], d1[q]), min(d2[q], d3[q])))
                t += last + 1
            total = 0
            for q in range(q_tokens):
                total += bits - fewest[q]
            out[p] = total

    @njit(signature, parallel=True, cache=True, nogil=True)  # type: ignore[misc]
    def kernel2(
        query_t: Any, codes: Any, starts: Any, ends: Any, bits: int, out: Any
    ) -> None:  # pragma: no cover
        # 128-bit codes (two words), the common multi-vector width: words held in registers.
        q_tokens = query_t.shape[1]
        for p in prange(starts.shape[0]):
            fewest = np.full(q_tokens, bits + 1, np.int32)
            t, end = starts[p], ends[p]
            while t < end:
                last = min(end - t, 4) - 1
                a0, b0 = codes[t, 0], codes[t, 1]
                a1, b1 = codes[t + min(1, last), 0], codes[t + min(1, last), 1]
                a2, b2 = codes[t + min(2, last), 0], codes[t + min(2, last), 1]
                a3, b3 = codes[t + min(3, last), 0], codes[t + min(3, last), 1]
                for q in range(q_tokens):
                    x, y = query_t[0, q], query_t[1, q]
                    e0 = np.int32(popcount(x ^ a0) + popcount(y ^ b0))
                    e1 = np.int32(popcount(x ^ a1) + popcount(y ^ b1))
                    e2 = np.int32(popcount(x ^ a2) + popcount(y ^ b2))
                    e3 = np.int32(popcount(x ^ a3) + popcount(y ^ b3))
                    fewest[q] = min(fewest[q], min(min(e0, e1), min(e2, e3)))
                t += last + 1
            total = 0
            for q in range(q_tokens):
                total += bits - fewest[q]
            out[p] = total

    def scan(
        query: np.ndarray, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray, bits: int
    ) -> np.ndarray:
        out = np.zeros(starts.shape[0], dtype=np.int64)
        if starts.shape[0]:
            query_t = np.ascontiguousarray(query.T, dtype=np.uint64)  # (words, q_tokens)
            run = kernel2 if codes.shape[1] == 2 else kernel
            run(
                query_t,
                np.ascontiguousarray(codes, dtype=np.uint64),  # (no copy for mapped or packed codes)
                np.ascontiguousarray(starts, dtype=np.int64),
                np.ascontiguousarray(ends, dtype=np.int64),
                int(bits),
                out,
            )
        return out

    return scan


@functools.cache
def _fast() -> ScanFn | None:
    return _numba_scan()  # imported on the first scan, not with mmembed


def scan(query: np.ndarray, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray, bits: int) -> np.ndarray:
    """``(n_pages,)`` int64 Hamming MaxSim scores (see :func:`scan_numpy`), on the fastest path."""
    fast = _fast()
    if fast is not None:
        return fast(query, codes, starts, ends, bits)
    return scan_numpy(query, codes, starts, ends, bits)


def backend() -> str:
    """Which path :func:`scan` takes: ``"numba"`` or ``"numpy"``."""
    return "numba" if _fast() is not None else "numpy"
