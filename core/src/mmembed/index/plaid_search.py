"""PLAID candidate generation: probe, centroid interaction, residual rescoring.

For one query's ``(q, dim)`` tokens against a PLAID file (:mod:`.plaid`):

1. **probe** — the :data:`NPROBE` centroids nearest each query token; the pages listed under
   them (that the caller allows: live, matching the filter) are the candidates;
2. **centroid interaction** — each candidate's score is ``sum over query tokens of max over
   the page's distinct centroids of q . centroid``, counting only centroids some query token
   scores at least :data:`CENTROID_THRESHOLD` (PLAID's centroid pruning); the best
   :data:`NDOCS` pages are kept (``candidates`` if more);
3. **residual rescoring** (when :data:`NDOCS` > ``candidates``) — those pages' tokens are
   decompressed (centroid + residual buckets) and scored by MaxSim; the best ``candidates`` go
   to the exact rerank (:mod:`.plan`).

The centroid interaction runs in a numba kernel (``pip install 'mmembed-core[fast]'``),
with a numpy path giving the same scores without it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..scoring import Ragged, maxsim
from . import plaid
from .plaid import PlaidArrays

NPROBE = 4
"""Centroids probed per query token (chosen on the scale corpus, docs/first-stages.md)."""
CENTROID_THRESHOLD = 0.5
"""Centroids no query token scores this high are left out of the centroid interaction."""
NDOCS = 0
"""Pages kept by the centroid interaction for residual rescoring; when it is not above
``candidates`` (the default) the centroid interaction's best ``candidates`` go straight to the
exact rerank. Measured on 2,000 distinct pages (docs/first-stages.md): rescoring 256 pages
down to 32-64 kept recall@10 at 0.99-1.0 but cost more than it saved on the shared 2-core
machine (decompression is CPU work the float16 rerank also does)."""
DEFAULT_CANDIDATES = 100
"""Pages the residual rescoring hands to the exact rerank when ``candidates`` is not given."""


def allowed_pages(arrays: PlaidArrays, loc_rows: np.ndarray) -> np.ndarray:
    """``(P,)`` int64: for each page the file codes, its column in the search's locations
    (``loc_rows``: their rows), or -1 when it is not there (deleted, filtered out)."""
    order = np.argsort(loc_rows, kind="stable")
    ordered = loc_rows[order]
    rows = np.asarray(arrays.rows)
    pos = np.minimum(np.searchsorted(ordered, rows), max(ordered.shape[0] - 1, 0))
    if ordered.shape[0] == 0:
        return np.full(rows.shape[0], -1, dtype=np.int64)
    return np.where(ordered[pos] == rows, order[pos], -1).astype(np.int64)


def candidate_pages(
    arrays: PlaidArrays, query: torch.Tensor, allowed: np.ndarray, candidates: int
) -> np.ndarray:
    """Indices (into ``arrays.rows``) of the ``candidates`` best pages for ``(q, dim)``
    query tokens by residual MaxSim, among the pages the probe finds and ``allowed`` keeps."""
    q = query.float().numpy()  # (q, dim)
    scores_t = np.ascontiguousarray((q @ np.asarray(arrays.codec.centroids).T).T)  # (K, q) q . centroid
    k = scores_t.shape[0]
    nprobe = min(NPROBE, k)
    cells = np.unique(np.argpartition(-scores_t, nprobe - 1, axis=0)[:nprobe])  # probed centroids
    pages = _probe()(np.asarray(arrays.ivf_off), np.asarray(arrays.ivf), cells.astype(np.int64), allowed)
    if pages.shape[0] == 0:
        return pages
    keep = scores_t.max(axis=1) >= CENTROID_THRESHOLD  # (K,) centroids that count
    if not bool(keep.any()):
        keep[:] = True
    approx = _interaction()(
        scores_t, keep, np.asarray(arrays.page_cent_off), np.asarray(arrays.page_cents), pages
    )  # (len(pages),)
    ndocs = max(NDOCS, candidates)
    if pages.shape[0] > ndocs:
        pages = np.sort(pages[np.argpartition(-approx, ndocs - 1)[:ndocs]])
    if pages.shape[0] > candidates:  # NDOCS > candidates: the residual codes pick the shortlist
        rescored = residual_maxsim(arrays, query, pages)  # (len(pages),)
        pages = pages[np.argpartition(-rescored, candidates - 1)[:candidates]]
    return np.sort(pages)


def residual_maxsim(arrays: PlaidArrays, query: torch.Tensor, pages: np.ndarray) -> np.ndarray:
    """``(len(pages),)`` float32 MaxSim of ``(q, dim)`` query tokens against the pages'
    decompressed tokens (the compressed rerank: 2 bits per dimension + a centroid id)."""
    tok_off = np.asarray(arrays.tok_off)
    starts, ends = tok_off[pages], tok_off[pages + 1]
    counts = ends - starts
    idx = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(
        int(counts.sum()), dtype=np.int64
    )  # (tokens,) token rows of the pages, in order
    values = _decode()(
        arrays.codec, np.asarray(arrays.codes), np.asarray(arrays.residuals), idx
    )  # (tokens, dim)
    docs = Ragged(torch.from_numpy(values), torch.from_numpy(np.concatenate([[0], np.cumsum(counts)])))
    return maxsim(Ragged.from_list([query.float()]), docs)[0].numpy()


# ---------------------------------------------------------------------------- kernels

ProbeFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
DecodeFn = Callable[[plaid.Codec, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def decode_numpy(codec: plaid.Codec, codes: np.ndarray, residuals: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``(len(idx), dim)`` float32 decompressed tokens ``idx`` (reference path)."""
    return plaid.decode(codec, codes[idx], residuals[idx])


InteractionFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def probe_numpy(ivf_off: np.ndarray, ivf: np.ndarray, cells: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Distinct pages (ascending) listed under ``cells`` whose ``allowed`` entry is >= 0."""
    found = np.unique(
        np.concatenate([np.zeros(0, np.int64), *(ivf[ivf_off[c] : ivf_off[c + 1]] for c in cells)])
    )
    return found[allowed[found] >= 0].astype(np.int64)


def interaction_numpy(
    scores_t: np.ndarray, keep: np.ndarray, cent_off: np.ndarray, cents: np.ndarray, pages: np.ndarray
) -> np.ndarray:
    """``(len(pages),)`` float32 centroid interaction (see the module docstring), reference path."""
    out = np.zeros(pages.shape[0], dtype=np.float32)
    for i, p in enumerate(pages.tolist()):
        mine = cents[cent_off[p] : cent_off[p + 1]]
        mine = mine[keep[mine]]
        if mine.shape[0]:
            out[i] = np.maximum(scores_t[mine].max(axis=0), 0.0).sum()
    return out


def _numba() -> tuple[ProbeFn, InteractionFn, DecodeFn] | None:
    if os.environ.get("MMEMBED_NO_NUMBA"):
        return None
    try:
        from numba import njit, prange
    except ImportError:
        return None

    @njit("int64[::1](int64[::1], int32[::1], int64[::1], int64[::1])", cache=True, nogil=True)  # type: ignore[misc]
    def probe(ivf_off: Any, ivf: Any, cells: Any, allowed: Any) -> Any:  # pragma: no cover
        seen = np.zeros(allowed.shape[0], np.bool_)
        count = 0
        for c in cells:
            for e in range(ivf_off[c], ivf_off[c + 1]):
                p = ivf[e]
                if not seen[p] and allowed[p] >= 0:
                    seen[p] = True
                    count += 1
        out = np.empty(count, np.int64)
        j = 0
        for p in range(allowed.shape[0]):
            if seen[p]:
                out[j] = p
                j += 1
        return out

    @njit(
        "float32[::1](float32[:, ::1], bool_[::1], int64[::1], int32[::1], int64[::1])",
        parallel=True,
        cache=True,
        nogil=True,
    )  # type: ignore[misc]
    def interaction(
        scores_t: Any, keep: Any, cent_off: Any, cents: Any, pages: Any
    ) -> Any:  # pragma: no cover
        q_tokens = scores_t.shape[1]
        out = np.zeros(pages.shape[0], np.float32)
        for i in prange(pages.shape[0]):
            p = pages[i]
            best = np.zeros(q_tokens, np.float32)  # a token no kept centroid reaches adds 0
            for e in range(cent_off[p], cent_off[p + 1]):
                c = cents[e]
                if keep[c]:
                    for t in range(q_tokens):
                        s = scores_t[c, t]
                        if s > best[t]:
                            best[t] = s
            total = np.float32(0.0)
            for t in range(q_tokens):
                total += best[t]
            out[i] = total
        return out

    @njit(
        "void(float32[:, ::1], float32[:, :, ::1], int32[::1], uint8[:, ::1], int64[::1], float32[:, ::1])",
        parallel=True,
        cache=True,
        nogil=True,
    )  # type: ignore[misc]
    def decode(
        centroids: Any, table: Any, codes: Any, residuals: Any, idx: Any, out: Any
    ) -> None:  # pragma: no cover
        width, per = table.shape[0], table.shape[2]
        dim = out.shape[1]
        for i in prange(idx.shape[0]):
            t = idx[i]
            c = codes[t]
            for j in range(width):
                b = residuals[t, j]
                for s in range(per):
                    d = j * per + s
                    if d < dim:
                        out[i, d] = centroids[c, d] + table[j, b, s]

    def run_decode(
        codec: plaid.Codec, codes: np.ndarray, residuals: np.ndarray, idx: np.ndarray
    ) -> np.ndarray:
        out = np.empty((idx.shape[0], codec.dim), dtype=np.float32)
        decode(
            np.ascontiguousarray(codec.centroids, dtype=np.float32),
            plaid.byte_table(codec),
            np.ascontiguousarray(codes, dtype=np.int32),
            np.ascontiguousarray(residuals, dtype=np.uint8),
            np.ascontiguousarray(idx, dtype=np.int64),
            out,
        )
        return out

    def run_probe(ivf_off: np.ndarray, ivf: np.ndarray, cells: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        result: np.ndarray = probe(
            np.ascontiguousarray(ivf_off, dtype=np.int64),
            np.ascontiguousarray(ivf, dtype=np.int32),
            np.ascontiguousarray(cells, dtype=np.int64),
            np.ascontiguousarray(allowed, dtype=np.int64),
        )
        return result

    def run_interaction(
        scores_t: np.ndarray, keep: np.ndarray, cent_off: np.ndarray, cents: np.ndarray, pages: np.ndarray
    ) -> np.ndarray:
        result: np.ndarray = interaction(
            np.ascontiguousarray(scores_t, dtype=np.float32),
            np.ascontiguousarray(keep, dtype=np.bool_),
            np.ascontiguousarray(cent_off, dtype=np.int64),
            np.ascontiguousarray(cents, dtype=np.int32),
            np.ascontiguousarray(pages, dtype=np.int64),
        )
        return result

    return run_probe, run_interaction, run_decode


@functools.cache
def _fast() -> tuple[ProbeFn, InteractionFn, DecodeFn] | None:
    return _numba()


def _decode() -> DecodeFn:
    fast = _fast()
    return decode_numpy if fast is None else fast[2]


def _probe() -> ProbeFn:
    fast = _fast()
    return probe_numpy if fast is None else fast[0]


def _interaction() -> InteractionFn:
    fast = _fast()
    return interaction_numpy if fast is None else fast[1]
