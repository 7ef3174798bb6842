"""Exact late-interaction (MaxSim) and dense scoring, fast on CPU.

Long because the MaxSim kernel (chunk planning, the per-thread memory arena, the worker
pool) is one mechanism tuned as a whole, its constants and helpers read and tested together
in this module. The public API is :class:`Ragged`, :func:`maxsim`, :func:`dense` and
:func:`score`; every name starting with ``_`` belongs to the kernel.

Documents are *ragged*: every page has its own number of vectors. They are kept flat
(:class:`Ragged`: one ``(total_vectors, dim)`` matrix plus offsets) so that scoring is a
few large matrix products rather than a loop over padded batches, and padding can never
leak into a score.

How :func:`maxsim` runs: the documents are cut into chunks of consecutive pages small
enough to stay in cache. For each chunk, one matrix product ``(chunk_tokens, dim) @ (dim,
query_tokens)`` gives every document-token/query-token similarity; a max over each page's
rows (one reshape + ``amax`` per run of equal-length pages) gives the best match of every
query token; a tiny product with a 0/1 matrix sums those per query. Storage may be
float32, float16 or bfloat16 (for instance ``torch.from_numpy`` over a read-only memory
map): compute is always float32, each chunk converted a slice at a time into a small reused
buffer and multiplied while the slice is still in cache, never the whole store at once.

Threads: as many as torch's intra-op setting (``torch.get_num_threads()``, all cores by
default), but each takes whole chunks in turn and runs them with single-threaded ops (a
small pool of worker threads, see :func:`_run_on_workers`) instead of splitting every
small op across all threads, where each op waits for the slowest thread. On a 2-core
machine shared with other busy processes this was 1-5x faster (the busier, the larger
the gain); with light load the two are within noise of each other.
"""

from __future__ import annotations

import functools
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from . import half_maxsim
from .types import MMEmbedError, Similarity

DEFAULT_MAX_CHUNK_BYTES = 128 * 2**20
"""Default cap on the scorer's temporary buffers (similarity blocks, float32 copies of
document chunks, per-page maxima; shared by all threads). Scores never depend on it."""

_CACHE_BYTES = 4 * 2**20
"""Preferred similarity block of one step of one thread (chunk tokens x query tokens,
float32), read back by the max while still in cache. Of 1, 2, 4 and 16 MB, 4 and 16 MB
measured best on a 2-core Xeon (L2 1 MB per core, L3 36 MB shared); a page bigger than
this is a chunk alone."""

_CONVERT_BYTES = 2 * 2**20
"""Float32 copy of document rows stored in another dtype, per thread: converted a slice
at a time, each slice multiplied right away. With 4 MB similarity blocks, 2 MB slices
measured ~10% faster than converting a whole block before its product (2-core Xeon,
float16 storage, one 32-token query)."""

_GROUP_TOKENS = 1024
"""Query tokens per matrix product: plenty for full GEMM speed, while a page's similarity
block (page tokens x query tokens) still fits in cache. More query tokens run in groups."""

_STORAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_F32 = torch.float32
_F32_BYTES = 4
_ALIGN = 16  # floats per 64 bytes


@dataclass(frozen=True)
class Ragged:
    """``n`` variable-length sequences of ``dim``-vectors stored back to back."""

    values: torch.Tensor  # (total_vectors, dim), any float dtype
    offsets: torch.Tensor  # (n + 1,) int64, offsets[i]:offsets[i+1] are sequence i's rows

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise MMEmbedError(f"ragged values must be 2-D (vectors, dim), got {tuple(self.values.shape)}")
        if self.offsets.ndim != 1 or self.offsets.numel() < 1:
            raise MMEmbedError("ragged offsets must be a 1-D tensor of n + 1 positions")
        if self.offsets.dtype.is_floating_point or self.offsets.dtype == torch.bool:
            raise MMEmbedError(f"ragged offsets must be integers, got {self.offsets.dtype}")
        if self.offsets.dtype != torch.int64 or self.offsets.device.type != "cpu":
            object.__setattr__(self, "offsets", self.offsets.to("cpu", torch.int64))
        if int(self.offsets[0]) != 0:
            raise MMEmbedError(f"ragged offsets must start at 0, got {int(self.offsets[0])}")
        if bool((self.offsets[1:] < self.offsets[:-1]).any()):
            raise MMEmbedError("ragged offsets must never decrease (a sequence cannot have < 0 vectors)")
        if int(self.offsets[-1]) != self.values.shape[0]:
            raise MMEmbedError(
                f"ragged offsets end at {int(self.offsets[-1])} but there are {self.values.shape[0]} vectors"
            )

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.values[int(self.offsets[i]) : int(self.offsets[i + 1])]

    @classmethod
    def from_list(cls, tensors: Sequence[torch.Tensor]) -> Ragged:
        if len(tensors) == 0:
            raise MMEmbedError("cannot score an empty list of embeddings")
        mats = [t if t.ndim == 2 else t.reshape(1, -1) for t in tensors]
        dims = {int(m.shape[1]) for m in mats}
        if len(dims) != 1:
            raise MMEmbedError(f"all embeddings must have the same dimension, got {sorted(dims)}")
        lengths = torch.tensor([m.shape[0] for m in mats], dtype=torch.int64)
        offsets = torch.zeros(len(mats) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        return cls(torch.cat(mats, 0), offsets)

    @classmethod
    def from_padded(cls, padded: torch.Tensor, mask: torch.Tensor | None = None) -> Ragged:
        """From ``(n, max_len, dim)``; ``mask`` ``(n, max_len)`` marks real rows. Without a
        mask, all-zero rows are padding (the convention of colpali-engine's padding)."""
        if padded.ndim != 3:
            raise MMEmbedError(f"padded embeddings must be 3-D (n, tokens, dim), got {tuple(padded.shape)}")
        if mask is not None and tuple(mask.shape) != tuple(padded.shape[:2]):
            raise MMEmbedError(
                f"padding mask of shape {tuple(mask.shape)} does not match embeddings of shape "
                f"{tuple(padded.shape)}; it must be (n, max_len)"
            )
        keep = (padded != 0).any(dim=-1) if mask is None else mask.to(torch.bool)
        return cls.from_list([padded[i][keep[i]] for i in range(padded.shape[0])])


EmbeddingsLike = Ragged | torch.Tensor | Sequence[torch.Tensor]


def as_ragged(x: EmbeddingsLike) -> Ragged:
    """Accept a :class:`Ragged`, a list of ``(n_i, dim)`` tensors, a padded ``(n, len, dim)``
    tensor or a ``(n, dim)`` matrix of single vectors."""
    if isinstance(x, Ragged):
        return x
    if isinstance(x, torch.Tensor):
        if x.ndim == 3:
            return Ragged.from_padded(x)
        if x.ndim == 2:  # one vector per item
            return Ragged(x, torch.arange(x.shape[0] + 1, dtype=torch.int64))
        raise MMEmbedError(f"cannot interpret a tensor of shape {tuple(x.shape)} as embeddings")
    return Ragged.from_list(list(x))


def maxsim(
    queries: EmbeddingsLike,
    documents: EmbeddingsLike,
    *,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    row_scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """Late-interaction scores: for every query token, the best-matching document token's
    dot product, summed over query tokens. Returns ``(n_queries, n_documents)`` float32.

    Exact (float32 arithmetic whatever the storage dtype; scores match a float64 loop to
    float32 rounding) and independent of ``max_chunk_bytes``, which only caps the
    temporary memory beyond the inputs and the output (all threads together). A document
    with no vectors scores 0, as does a query with no vectors; padding never reaches a
    score, since only real rows are stored. Several queries are scored in one pass: pass
    a list of ``(tokens_i, dim)`` tensors or a :class:`Ragged` (a plain 2-D tensor means
    one single-vector query per row, see :func:`as_ragged`). ``documents`` are read in
    place (a read-only memory map is fine), one chunk at a time. Runs on
    ``torch.get_num_threads()`` threads. Raises :class:`MMEmbedError` on a dimension
    mismatch, a non-float dtype or NaN / inf in the queries.

    ``row_scales`` (float32, one per document row) scores int8 documents as ``values *
    scale`` (the index's int8 storage): each slice is converted in cache like float16 and
    its similarity rows are scaled before the max, so no float32 copy of the chunk is made.

    >>> import torch
    >>> query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (2 tokens, dim 2)
    >>> page_a = torch.tensor([[1.0, 0.0]])  # matches the first token only
    >>> page_b = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])  # both tokens, any length
    >>> maxsim([query], [page_a, page_b])
    tensor([[1., 2.]])
    """
    q, d = as_ragged(queries), as_ragged(documents)
    if row_scales is None:
        _check_pair(q.values, d.values)
    elif d.values.dtype != torch.int8 or row_scales.shape != (d.values.shape[0],):
        raise MMEmbedError(
            f"row_scales go with int8 documents, one float32 scale per row; got {d.values.dtype} "
            f"documents of {d.values.shape[0]} rows and scales of shape {tuple(row_scales.shape)}"
        )
    query_values = _query_matrix(q.values)  # (query_tokens, dim) float32, contiguous
    device = d.values.device
    query_values = query_values.to(device)
    out = torch.zeros(len(q), len(d), dtype=_F32, device=device)  # (n_queries, n_docs)
    if len(q) == 0 or len(d) == 0 or query_values.shape[0] == 0:
        return out.cpu()
    if row_scales is None and half_maxsim.usable(
        d.values, query_values.shape[0]
    ):  # float16: fused (issue 27)
        return half_maxsim.score(query_values, q.offsets, d.values, d.offsets, _run_on_workers, _threads())
    convert_dim = 0 if d.values.dtype == _F32 else d.dim  # float32 copy of the chunk needed?
    workers = _worker_count(d.values, max_chunk_bytes // _min_bytes(convert_dim))
    budget = max_chunk_bytes // workers  # each thread's share of the cap
    group_tokens = _group_tokens(budget, convert_dim)
    owner = torch.repeat_interleave(torch.arange(len(q)), q.lengths)  # (query_tokens,) query of each token
    lengths = d.lengths.numpy()
    for t0 in range(0, query_values.shape[0], group_tokens):
        t1 = min(t0 + group_tokens, query_values.shape[0])
        first, last = int(owner[t0]), int(owner[t1 - 1])
        # (group_tokens, group_queries) 0/1: which query each token's best match counts for
        token_to_query = torch.nn.functional.one_hot(owner[t0:t1] - first, last - first + 1).to(device, _F32)
        group = _Group(query_values[t0:t1], token_to_query, convert_dim, budget, row_scales)
        group.run(d.values, lengths, out[first : last + 1], workers)
    return out.cpu()


@dataclass
class _Group:
    """Scores one group of query tokens against every document, adding into ``out``."""

    queries: torch.Tensor  # (m, dim) float32
    token_to_query: torch.Tensor  # (m, group_queries) float32 0/1
    convert_dim: int  # dim when chunks need a float32 copy, else 0
    max_chunk_bytes: int
    row_scales: torch.Tensor | None = None  # (document rows,) float32 scales of int8 rows

    @property
    def bytes_per_token(self) -> int:  # one similarity row
        return _F32_BYTES * self.queries.shape[0]

    @property
    def bytes_per_doc(self) -> int:  # one row of per-page maxima
        return _F32_BYTES * self.queries.shape[0]

    @property
    def copy_rows(self) -> int:
        """Rows of a thread's float32 copy buffer, 0 for float32 storage. Other dtypes are
        converted a slice at a time and each slice multiplied right away, while still in
        cache; the rest of the budget (at least one similarity row and two rows of maxima,
        see :func:`_group_tokens`) is for the similarity block."""
        if not self.convert_dim:
            return 0
        spare = self.max_chunk_bytes - 3 * self.bytes_per_token
        return max(1, min(_CONVERT_BYTES, spare) // (_F32_BYTES * self.convert_dim))

    def run(self, values: torch.Tensor, lengths: np.ndarray, out: torch.Tensor, workers: int) -> None:
        m = self.queries.shape[0]
        bpt, bpd, copy_rows = self.bytes_per_token, self.bytes_per_doc, self.copy_rows
        sim_bytes = self.max_chunk_bytes - copy_rows * self.convert_dim * _F32_BYTES
        chunks = list(_plan_chunks(lengths, bpt, bpd, sim_bytes))
        starts = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        run_end = _run_ends(lengths)
        piece_rows = (sim_bytes - 2 * bpd) // bpt  # rows of a page split in pieces
        # One arena per thread for all its chunks' buffers, so they never add up past the cap.
        arena_floats = copy_rows * self.convert_dim + max(
            (int(starts[b] - starts[a]) * bpt + (b - a) * bpd) // _F32_BYTES
            if b > a + 1 or lengths[a] <= piece_rows
            else (piece_rows * bpt + 2 * bpd) // _F32_BYTES
            for a, b in chunks
        )
        sum_t = self.token_to_query.t()  # (group_queries, m)
        next_chunk = _Counter(len(chunks))

        def work() -> None:  # run by each thread: chunks in turn until none are left
            arena = torch.empty(arena_floats + 5 * _ALIGN, dtype=_F32, device=values.device)
            (copy,) = _carve(arena, (copy_rows, self.convert_dim))
            rest = arena[-(-copy.numel() // _ALIGN) * _ALIGN :]
            while (c := next_chunk()) is not None:
                a, b = chunks[c]
                r0, r1 = int(starts[a]), int(starts[b])
                scales = None if self.row_scales is None else self.row_scales[r0:r1]
                if b == a + 1 and r1 - r0 > piece_rows:
                    self._long_document(values[r0:r1], scales, piece_rows, rest, copy, out[:, a])
                    continue
                sim, best = _carve(rest, (r1 - r0, m), (b - a, m))
                self._similarities(values[r0:r1], scales, copy, sim)
                _max_per_document(sim, lengths, run_end, a, b, best)
                out[:, a:b].addmm_(sum_t, best.t())  # (group_queries, docs) += per-query sums

        _run_on_workers(work, min(workers, len(chunks)))

    def _similarities(
        self, rows: torch.Tensor, scales: torch.Tensor | None, copy: torch.Tensor, sim: torch.Tensor
    ) -> None:
        """``sim = rows @ queries.T``: every document-token x query-token product, (rows, m);
        int8 rows: times their ``scales``, applied to the (rows, m) block while in cache."""
        query_t = self.queries.t()  # (dim, m): the GEMM reads it transposed, no copy
        if not self.convert_dim:
            torch.mm(rows, query_t, out=sim)
            return
        step = copy.shape[0]
        for s0 in range(0, rows.shape[0], step):  # storage dtype -> float32, one slice at a time
            part = copy[: min(step, rows.shape[0] - s0)].copy_(rows[s0 : s0 + step])
            block = sim[s0 : s0 + part.shape[0]]  # (slice rows, m)
            torch.mm(part, query_t, out=block)
            if scales is not None:
                block.mul_(scales[s0 : s0 + part.shape[0], None])

    def _long_document(
        self,
        rows: torch.Tensor,
        scales: torch.Tensor | None,
        piece_rows: int,
        arena: torch.Tensor,
        copy: torch.Tensor,
        out: torch.Tensor,
    ) -> None:
        """A page bigger than the memory cap: running max over slices of its rows."""
        m = self.queries.shape[0]
        for p0 in range(0, rows.shape[0], piece_rows):
            n = min(piece_rows, rows.shape[0] - p0)
            best, piece_best, sim = _carve(arena, (m,), (m,), (n, m))
            if p0 == 0:
                best.fill_(-torch.inf)
            self._similarities(rows[p0 : p0 + n], None if scales is None else scales[p0 : p0 + n], copy, sim)
            torch.amax(sim, 0, out=piece_best)
            torch.maximum(best, piece_best, out=best)
        out.add_(self.token_to_query.t() @ best)


def _carve(arena: torch.Tensor, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    """Consecutive views of ``arena`` with the given shapes, each 64-byte aligned (what the
    GEMM kernels like); the arena holds the sum of their sizes plus ``_ALIGN`` per view."""
    views, pos = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(arena[pos : pos + size].view(shape))
        pos += -(-size // _ALIGN) * _ALIGN
    return views


def _max_per_document(
    sim: torch.Tensor, lengths: np.ndarray, run_end: np.ndarray, a: int, b: int, best: torch.Tensor
) -> None:
    """``best[i - a]`` = max over page ``i``'s rows of ``sim``, for pages ``a..b-1`` whose rows
    are stacked in ``sim``; pages without rows get 0. One ``amax`` per run of equal lengths."""
    m = sim.shape[1]
    i, row = a, 0
    while i < b:
        j = min(int(run_end[i]), b)
        n, k = int(lengths[i]), j - i
        if n == 0:
            best[i - a : j - a].zero_()
        else:
            torch.amax(sim[row : row + k * n].view(k, n, m), 1, out=best[i - a : j - a])
        row += k * n
        i = j


def _run_ends(lengths: np.ndarray) -> np.ndarray:
    """For each page, the index one past the last page of its run of equal lengths."""
    if len(lengths) == 0:
        return np.zeros(0, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(lengths)) + 1  # first page of every run but the first
    ends = np.append(breaks, len(lengths))  # (runs,)
    run_of_page = np.zeros(len(lengths), dtype=np.int64)
    run_of_page[breaks] = 1
    return ends[np.cumsum(run_of_page)]


def _plan_chunks(
    lengths: np.ndarray, bytes_per_token: int, bytes_per_doc: int, max_bytes: int
) -> Iterator[tuple[int, int]]:
    """Ranges ``[a, b)`` of consecutive pages whose buffers fit the cache-sized target (and
    always the hard cap); a page alone over the target gets a range of its own."""
    target = min(max_bytes, _CACHE_BYTES)
    cost = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths * bytes_per_token + bytes_per_doc, out=cost[1:])
    a, n = 0, len(lengths)
    while a < n:
        b = int(np.searchsorted(cost, cost[a] + target, side="right")) - 1
        b = min(max(b, a + 1), n)
        yield a, b
        a = b


def _min_bytes(convert_dim: int) -> int:
    """Smallest buffer one thread can score with: a document row (and its float32 copy),
    one query token's similarity and two maxima."""
    return _F32_BYTES * (convert_dim + 3)


def _group_tokens(budget: int, convert_dim: int) -> int:
    """Query tokens per group such that one document row plus its buffers fits a thread's
    budget."""
    if budget < _min_bytes(convert_dim):
        raise MMEmbedError(
            f"max_chunk_bytes={budget} is too small to score anything; use >= {_min_bytes(convert_dim)}"
        )
    free = budget // _F32_BYTES - convert_dim  # floats left for similarity + maxima
    return min(_GROUP_TOKENS, free // 3)


class _Counter:
    """Hands out ``0 .. n-1`` once each, to any number of threads, then ``None``."""

    def __init__(self, n: int) -> None:
        self._next, self._n, self._lock = 0, n, threading.Lock()

    def __call__(self) -> int | None:
        with self._lock:
            if self._next >= self._n:
                return None
            self._next += 1
            return self._next - 1


def _worker_count(values: torch.Tensor, most: int) -> int:
    """Threads to score with: torch's intra-op setting, never more than the memory cap can
    feed. 1 (ops run in the caller, each split over torch's own threads) off CPU, and with
    torch builds whose thread counts are not per thread (OpenMP + MKL, like the PyPI wheels
    for x86, make them so)."""
    if values.device.type != "cpu" or not _thread_local_counts():
        return 1
    return max(1, min(torch.get_num_threads(), most))


def _threads() -> int:
    return max(1, torch.get_num_threads())


@functools.cache
def _thread_local_counts() -> bool:
    info = torch.__config__.parallel_info()
    return "parallel backend: OpenMP" in info and torch.backends.mkl.is_available()


_pool_lock = threading.Lock()
_pool_tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_pool_size = 0
_pool_pid = -1
_in_pool = threading.local()


def _run_on_workers(work: Callable[[], None], n: int) -> None:
    """Run ``work`` on ``n`` threads at once and wait; re-raise the first error.

    The threads are a lazily started, reused pool whose torch ops run single-threaded, so
    ``n`` of them keep ``n`` cores busy without oversubscribing (``torch.set_num_threads``
    sets a thread-local OpenMP/MKL count; the process-wide default it also stores, which
    only threads started later read, is put back right away). ``n == 1`` runs inline.
    """
    if n <= 1 or getattr(_in_pool, "yes", False):  # a pool thread never waits on the pool
        work()
        return
    _ensure_pool(n)
    futures: list[Future[None]] = [Future() for _ in range(n)]
    for future in futures:
        _pool_tasks.put(functools.partial(_run_into, work, future))
    errors = [future.exception() for future in futures]  # waits for all: none still writes
    for error in errors:
        if error is not None:
            raise error


def _run_into(work: Callable[[], None], future: Future[None]) -> None:
    try:
        work()
    except BaseException as exc:  # handed to the waiting caller, who re-raises it
        future.set_exception(exc)
    else:
        future.set_result(None)


def _ensure_pool(n: int) -> None:
    global _pool_tasks, _pool_size, _pool_pid
    with _pool_lock:
        if _pool_pid != os.getpid():  # first use, or a forked child: the threads are gone
            _pool_tasks, _pool_size, _pool_pid = queue.SimpleQueue(), 0, os.getpid()
        if _pool_size >= n:
            return
        caller_threads = torch.get_num_threads()
        ready = threading.Barrier(n - _pool_size + 1)
        for _ in range(n - _pool_size):
            name = f"mmembed-maxsim-{_pool_size}"
            threading.Thread(target=_pool_worker, args=(_pool_tasks, ready), name=name, daemon=True).start()
            _pool_size += 1
        ready.wait()  # every new thread has set its own count ...
        torch.set_num_threads(caller_threads)  # ... so put the process default back


def _pool_worker(tasks: queue.SimpleQueue[Callable[[], None]], ready: threading.Barrier) -> None:
    torch.set_num_threads(1)
    _in_pool.yes = True
    ready.wait()
    while True:
        tasks.get()()


def _check_pair(queries: torch.Tensor, documents: torch.Tensor) -> None:
    """Same dimension, supported dtypes; both ``(vectors, dim)``."""
    q_dim, d_dim = int(queries.shape[-1]), int(documents.shape[-1])
    if q_dim != d_dim:
        raise MMEmbedError(
            f"query dim {q_dim} does not match document dim {d_dim}: queries and pages must come "
            "from the same encoder"
        )
    for name, values in (("query", queries), ("document", documents)):
        if values.dtype not in _STORAGE_DTYPES:
            raise MMEmbedError(
                f"{name} embeddings have dtype {values.dtype}; expected float32, float16 or bfloat16"
            )


def _query_matrix(values: torch.Tensor) -> torch.Tensor:
    """Queries as contiguous float32; they are small, so they are checked for NaN / inf
    here (a bad value would otherwise spread to every query scored with it)."""
    out = values.to(_F32).contiguous()
    if not bool(torch.isfinite(out).all()):
        raise MMEmbedError("query embeddings contain NaN or infinite values; re-encode the query")
    return out


def dense(
    queries: torch.Tensor,
    documents: torch.Tensor,
    similarity: Similarity = "dot",
    *,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> torch.Tensor:
    """Single-vector scores ``(n_queries, n_documents)`` float32 by dot product or cosine.

    ``documents`` ``(n, dim)`` may be stored as float16 / bfloat16 (e.g. a memory map):
    they are converted to float32 chunk by chunk. A zero vector has cosine 0 with anything.
    """
    if similarity not in ("dot", "cosine"):
        raise MMEmbedError(f"dense scoring supports 'dot' and 'cosine', not {similarity!r}")
    if queries.ndim != 2 or documents.ndim != 2:
        raise MMEmbedError(
            f"dense scoring needs 2-D (n, dim) queries and documents, got {tuple(queries.shape)} "
            f"and {tuple(documents.shape)}"
        )
    _check_pair(queries, documents)
    device = documents.device
    q = _query_matrix(queries).to(device)  # (n_queries, dim)
    cosine = similarity == "cosine"
    if cosine:
        q = torch.nn.functional.normalize(q, dim=-1)
    out_t = torch.empty(documents.shape[0], q.shape[0], dtype=_F32, device=device)  # (n_docs, n_queries)
    convert = cosine or documents.dtype != _F32  # work on a float32 copy of each chunk
    rows = max(1, min(max_chunk_bytes, _CACHE_BYTES) // (_F32_BYTES * documents.shape[1]))
    copy = torch.empty(
        min(rows, documents.shape[0]) if convert else 0, documents.shape[1], dtype=_F32, device=device
    )
    for r0 in range(0, documents.shape[0], rows):
        block = documents[r0 : r0 + rows]  # (rows, dim)
        if convert:
            block = copy[: block.shape[0]].copy_(block)
            if cosine:  # this chunk's rows to unit length; all-zero rows stay zero
                block.div_(torch.linalg.vector_norm(block, dim=1, keepdim=True).clamp_min_(1e-12))
        torch.mm(block, q.t(), out=out_t[r0 : r0 + block.shape[0]])
    return out_t.t().contiguous().cpu()


def score(
    queries: EmbeddingsLike,
    documents: EmbeddingsLike,
    similarity: Similarity,
    *,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> torch.Tensor:
    """Dispatch on the similarity an encoder declares; ``(n_queries, n_documents)`` float32."""
    if similarity == "maxsim":
        return maxsim(queries, documents, max_chunk_bytes=max_chunk_bytes)
    q, d = as_ragged(queries), as_ragged(documents)
    if bool((q.lengths != 1).any()) or bool((d.lengths != 1).any()):
        raise MMEmbedError(f"{similarity} scoring needs exactly one vector per item")
    return dense(q.values, d.values, similarity, max_chunk_bytes=max_chunk_bytes)
