"""A fused MaxSim kernel for float16 pages: each block of page rows is converted to float32
in a small buffer and multiplied at once, and each page's best match per query token is
kept in registers, never written out as a similarity matrix.

Why: the general scorer (:func:`mmembed.scoring.maxsim`) hands float32 matrices to torch's
GEMM, so float16 rows first pass through a conversion copy, a second trip over the data
that cost 40-60 % of the compute floor (``docs/benchmarks.md``). Here the conversion
happens in the same pass as the products. The kernel is numba: the products run as dot
products of two page rows against four query tokens at once (eight independent vector
accumulators, what keeps both FMA units busy); LLVM emits the host's instructions
(``vcvtph2ps`` with F16C, AVX2 / AVX-512 FMAs), and a plain conversion call without them,
so it is correct on any x86-64 CPU and fast where the CPU allows. Sums run in another order
than the GEMM's, so scores agree with it within float32 rounding, not bit for bit.

NaN and infinite page values give a non-finite page score, as in the general scorer (the
index ranks such damaged pages last): the running max keeps a NaN once it has seen one.
Without numba (``pip install 'mmembed-core[fast]'``) :func:`kernel` is ``None`` and the
general scorer runs.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable

import numpy as np
import torch

CHUNK_ROWS = 1 << 14
"""Page rows a thread takes at a time (4 MB of float16 at 128 dims): enough chunks to keep
every thread busy to the end, few enough that taking one costs nothing."""

KernelFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]
"""``kernel(queries, query_starts, rows, page_starts, out)``: ``queries`` float32 ``(tokens,
dim)`` C-contiguous, query ``i`` being tokens ``query_starts[i]:query_starts[i + 1]``;
``rows`` the pages' float16 rows as uint16 ``(rows, dim)``; page ``p`` is rows
``page_starts[p]:page_starts[p + 1]``; ``out`` float32 ``(n_pages, n_queries)`` receives the
scores (0 for a page without rows or a query without tokens)."""


def _build() -> KernelFn | None:
    if os.environ.get("MMEMBED_NO_NUMBA"):
        return None
    try:
        from . import _half_maxsim_numba
    except ImportError:
        return None
    return _half_maxsim_numba.kernel  # type: ignore[no-any-return]


@functools.cache
def kernel() -> KernelFn | None:
    """The compiled kernel (compiled, or loaded from numba's cache, on first use), or ``None``
    without numba."""
    return _build()


enabled = True
"""``False`` sends float16 pages through the general scorer (``benchmarks/maxsim.py`` times both)."""


MAX_QUERY_TOKENS = 64
"""Most query tokens (all queries of one call) the kernel takes. With more, the general
scorer's large GEMMs are as fast (measured: equal CPU time at 128 and 512 tokens, 1.17x
against 1.35x of the floor at 32), and the tokens no longer fit in L1 beside a row block."""


def usable(values: torch.Tensor, query_tokens: int = 1) -> bool:
    """Whether :func:`score` takes pages stored as ``values`` for ``query_tokens`` query
    tokens: contiguous float16 on the CPU, at most :data:`MAX_QUERY_TOKENS`, numba installed."""
    return (
        enabled
        and query_tokens <= MAX_QUERY_TOKENS
        and values.dtype == torch.float16
        and values.device.type == "cpu"
        and values.is_contiguous()
        and kernel() is not None
    )


def score(
    queries: torch.Tensor,
    query_offsets: torch.Tensor,
    values: torch.Tensor,
    offsets: torch.Tensor,
    run_on_workers: Callable[[Callable[[], None], int], None],
    threads: int,
) -> torch.Tensor:
    """MaxSim scores ``(n_queries, n_pages)`` float32 of ``queries`` ``(tokens, dim)`` float32
    (query ``i``: tokens ``query_offsets[i]:query_offsets[i + 1]``) against float16 pages
    ``values`` (page ``p``: rows ``offsets[p]:offsets[p + 1]``), on ``threads`` threads of
    ``run_on_workers`` (the scorer's pool), each taking chunks of pages in turn."""
    fused = kernel()
    assert fused is not None, "score() needs usable() first"
    q = queries.detach().to(torch.float32).contiguous().numpy()  # (tokens, dim)
    q_starts = query_offsets.numpy()
    rows = values.detach().numpy().view(np.uint16)  # (rows, dim) the float16 bits, no copy
    starts = offsets.numpy()
    out = np.empty((starts.shape[0] - 1, q_starts.shape[0] - 1), dtype=np.float32)  # (pages, queries)
    chunks = _chunks(starts)
    taken = iter(range(len(chunks)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                c = next(taken, None)
            if c is None:
                return
            a, b = chunks[c]
            r0, r1 = int(starts[a]), int(starts[b])
            fused(q, q_starts, rows[r0:r1], starts[a : b + 1] - r0, out[a:b])

    run_on_workers(work, max(1, min(threads, len(chunks))))
    return torch.from_numpy(out.T.copy())  # (queries, pages)


def _chunks(starts: np.ndarray) -> list[tuple[int, int]]:
    """Page ranges ``[a, b)`` of about :data:`CHUNK_ROWS` rows each (a longer page alone)."""
    n = starts.shape[0] - 1
    chunks, a = [], 0
    while a < n:
        b = int(np.searchsorted(starts, starts[a] + CHUNK_ROWS, side="right")) - 1
        b = min(max(b, a + 1), n)
        chunks.append((a, b))
        a = b
    return chunks
