"""The numba code of :mod:`mmembed.half_maxsim` (imported only when numba is installed).

Module-level functions, so numba's on-disk cache (``cache=True``) is found again by the next
process: a kernel built inside a function closes over new objects each time and is compiled
again in every process (seconds).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

BLOCK_ROWS = 16
"""Page rows converted to float32 at a time (8 KB at 128 dims): they stay in L1 beside the
query tokens while every token is scored against them."""


def _half_to_float(typingctx: Any, bits: Any) -> Any:
    """float16 bits (uint16) -> float32: LLVM's ``fpext half``, ``vcvtph2ps`` with F16C."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(bits), codegen


to_float: Any = intrinsic(_half_to_float)


# Reassociation lets LLVM vectorise the dot products; no "nnan"/"ninf": NaN must survive.
FAST_MATH = {"reassoc", "contract", "nsz"}
_read_only = functools.partial(types.Array, layout="C", readonly=True)
# One explicit signature: one compiled (and cached) variant; inputs may be read-only maps.
SIGNATURE = types.void(
    _read_only(types.float32, 2), _read_only(types.int64, 1), _read_only(types.uint16, 2),
    _read_only(types.int64, 1), types.Array(types.float32, 2, "C"),
)  # fmt: skip


@njit(inline="always", fastmath=FAST_MATH)  # type: ignore[misc]
def keep_max(best: Any, s: Any) -> Any:  # pragma: no cover
    """max that keeps a NaN once seen (like torch.amax): damaged pages stay non-finite."""
    return s if (s > best or s != s) else best


@njit(SIGNATURE, fastmath=FAST_MATH, nogil=True, cache=True)  # type: ignore[misc]
def kernel(
    queries: Any, query_starts: Any, rows: Any, page_starts: Any, out: Any
) -> None:  # pragma: no cover
    m, dim = queries.shape
    buf = np.empty((BLOCK_ROWS, dim), np.float32)  # (block rows, dim) one block, as float32
    best = np.empty(m, np.float32)  # (tokens,) best match of each query token in the page
    for p in range(page_starts.shape[0] - 1):
        start, end = page_starts[p], page_starts[p + 1]
        if start == end:
            out[p, :] = 0.0
            continue
        best[:] = -np.inf
        for r0 in range(start, end, BLOCK_ROWS):
            n = min(BLOCK_ROWS, end - r0)
            for r in range(n):
                for d in range(dim):
                    buf[r, d] = to_float(rows[r0 + r, d])
            j = 0
            while j + 4 <= m:  # four tokens x two rows: eight dot products per pass over dim
                b0, b1, b2, b3 = best[j], best[j + 1], best[j + 2], best[j + 3]
                for r in range(0, n - 1, 2):
                    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.float32(0.0)
                    for d in range(dim):
                        x0, x1 = buf[r, d], buf[r + 1, d]
                        y0, y1, y2, y3 = (
                            queries[j, d],
                            queries[j + 1, d],
                            queries[j + 2, d],
                            queries[j + 3, d],
                        )
                        s00 += x0 * y0
                        s01 += x0 * y1
                        s02 += x0 * y2
                        s03 += x0 * y3
                        s10 += x1 * y0
                        s11 += x1 * y1
                        s12 += x1 * y2
                        s13 += x1 * y3
                    b0 = keep_max(keep_max(b0, s00), s10)
                    b1 = keep_max(keep_max(b1, s01), s11)
                    b2 = keep_max(keep_max(b2, s02), s12)
                    b3 = keep_max(keep_max(b3, s03), s13)
                if n % 2:  # the block's last row alone
                    r = n - 1
                    s00 = s01 = s02 = s03 = np.float32(0.0)
                    for d in range(dim):
                        x0 = buf[r, d]
                        s00 += x0 * queries[j, d]
                        s01 += x0 * queries[j + 1, d]
                        s02 += x0 * queries[j + 2, d]
                        s03 += x0 * queries[j + 3, d]
                    b0, b1 = keep_max(b0, s00), keep_max(b1, s01)
                    b2, b3 = keep_max(b2, s02), keep_max(b3, s03)
                best[j], best[j + 1], best[j + 2], best[j + 3] = b0, b1, b2, b3
                j += 4
            while j < m:  # the last one to three tokens, one at a time
                b0 = best[j]
                for r in range(n):
                    s00 = np.float32(0.0)
                    for d in range(dim):
                        s00 += buf[r, d] * queries[j, d]
                    b0 = keep_max(b0, s00)
                best[j] = b0
                j += 1
        for i in range(query_starts.shape[0] - 1):
            total = np.float32(0.0)
            for t in range(query_starts[i], query_starts[i + 1]):
                total += best[t]
            out[p, i] = total
