"""The search plan: how query vectors become hits, one stage after another, in one place.

:func:`search_snapshot` runs the stages for the embedded index:

1. **check** — ``k``, ``candidates`` and the query vectors (:func:`check_k`,
   :func:`check_candidates`, :func:`query_vectors`: backend-neutral, any backend can reuse them);
2. **filter** — the live pages matching ``where``, a pre-filter (their :class:`Locations`);
3. **first stage** — which pages to score: every page (exact), a Hamming MaxSim shortlist
   over sign-bit codes (``binary``), or the HNSW graph's pages narrowed by Hamming MaxSim
   plus every page the graph does not cover yet (``hnsw``), or PLAID's centroid
   interaction and residual rescoring plus every page its file does not cover (``plaid``);
4. **exact rerank** — the shortlisted pages scored exactly (:func:`rerank`): returned
   scores are always exact;
5. **damaged last** — on the full scan, pages whose vectors are NaN/inf rank last, with a warning;
6. **hits** — the picked pages' records, read in one query.

Stages 3-5 give ``picks``: per query, ``(column in locs, exact score)`` pairs, best first. A
new first stage is one more ``*_picks`` function chosen in :func:`first_stage_picks`; a
text-side ranked list (hybrid search) would run beside stages 3-5 on the same snapshot
and be fused with ``picks`` before stage 6.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..scoring import EmbeddingsLike, Ragged, as_ragged
from ..types import EncoderInfo, MMEmbedError, SearchHit
from . import ann, integrity, plaid_search
from .codecs import Rows
from .dedupe import Dedupe, deduped_picks, sqlite_keys
from .filters import Filter, compile_filter
from .first_stage import DEFAULT_CANDIDATES, BinaryCodes, binary_codes, hamming_maxsim, shortlist, subset
from .search import Locations, ViewFn, score_locations, top_k
from .snapshot import IndexSnapshots, Snapshot

Picks = list[list[tuple[int, float]]]
"""Per query, ``(column in locs, exact score)`` pairs, best first (like :func:`top_k`)."""

ShortlistFn = Callable[[np.ndarray, int], np.ndarray]


# ---------------------------------------------------------------------------- 1. check


def check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise MMEmbedError(f"k must be a non-negative integer, got {k!r}")


def check_candidates(candidates: object) -> None:
    if candidates is not None and (
        isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1
    ):
        raise MMEmbedError(f"candidates must be a positive integer or None, got {candidates!r}")


def query_vectors(queries: EmbeddingsLike, encoder: EncoderInfo, location: object) -> Ragged:
    """The queries as float32 CPU :class:`Ragged` vectors (what every scorer computes in),
    checked against the index's encoder: its dim, and no NaN / inf (also after the cast)."""
    q = as_ragged(queries)
    if q.dim != encoder.dim:
        raise MMEmbedError(
            f"query vectors have dim {q.dim} but the index at {location} stores dim {encoder.dim} "
            f"(encoder {encoder.name!r}); embed queries with the index's encoder."
        )
    if not q.values.dtype.is_floating_point:
        raise MMEmbedError(
            f"query embeddings have dtype {q.values.dtype}; expected float32, float16 or bfloat16"
        )
    values = q.values.detach().to("cpu", torch.float32)  # (total_query_rows, dim)
    if not bool(torch.isfinite(values).all()):
        raise MMEmbedError("query embeddings contain NaN or infinite values")
    return Ragged(values, q.offsets.to("cpu"))


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Stage:
    """The first stage a search runs: ``None`` (exact scan), ``"binary"``, ``"hnsw"`` or ``"plaid"``,
    with how many pages it keeps per query for the exact rerank."""

    name: str | None
    candidates: int = DEFAULT_CANDIDATES


def choose_stage(index_stage: str | None, encoder: EncoderInfo, candidates: int | None, exact: bool) -> Stage:
    """An index created with a first stage uses it (``DEFAULT_CANDIDATES`` unless given);
    another multi-vector index shortlists with Hamming MaxSim only when ``candidates`` is
    given; ``exact=True`` and single-vector indexes always scan exactly."""
    if candidates is None and index_stage is not None:
        candidates = plaid_search.DEFAULT_CANDIDATES if index_stage == "plaid" else DEFAULT_CANDIDATES
    if candidates is None or exact or encoder.kind == "single":
        return Stage(None)
    return Stage(index_stage if index_stage in ("hnsw", "plaid") else "binary", candidates)


def search_snapshot(
    snapshots: IndexSnapshots,
    queries: EmbeddingsLike,
    k: int,
    where: Filter | None,
    *,
    index_stage: str | None,
    candidates: int | None = None,
    exact: bool = False,
    shortlist_fn: ShortlistFn = shortlist,
    dedupe: Dedupe | None = None,
) -> list[list[SearchHit]]:
    """Top-``k`` hits per query over one consistent snapshot of an embedded index (see the
    module docstring for the stages). ``shortlist_fn`` picks the first stage's best columns;
    ``dedupe`` collapses copies among the hits (:mod:`mmembed.index.dedupe`)."""
    check_k(k)
    check_candidates(candidates)
    stage = choose_stage(index_stage, snapshots.encoder, candidates, exact)
    q = query_vectors(queries, snapshots.encoder, snapshots.path)
    compiled = None if where is None else compile_filter(where)

    def run(conn: sqlite3.Connection) -> list[list[SearchHit]]:
        snap = snapshots.current(conn)
        locs = snapshots.locations(conn, snap, compiled)  # 2. filter

        def view(seg_id: int, rows: int) -> Rows:
            return snapshots.view(snap, seg_id, rows)

        scan = Scan(snapshots, snap, locs, view, shortlist_fn)
        if dedupe is None:
            picks = first_stage_picks(scan, q, k, stage, conn)  # 3.-5.
        else:  # 3.-5., deeper, then copies collapsed (issue 27)
            picks = deduped_picks(
                lambda depth: first_stage_picks(scan, q, depth, stage, conn),
                k,
                dedupe,
                len(locs),
                sqlite_keys(conn, lambda cols: [int(locs.rows[c]) for c in cols]),
                lambda c: view(int(locs.seg[c]), int(locs.off[c] + locs.n[c]))[
                    int(locs.off[c]) : int(locs.off[c] + locs.n[c])
                ],
            )
        return hits(snapshots, conn, locs, picks)  # 6.

    return snapshots.retrying(run)


@dataclass(frozen=True)
class Scan:
    """What the stages of one search read: the snapshot, its matching pages and their vectors."""

    snapshots: IndexSnapshots
    snap: Snapshot
    locs: Locations
    view: ViewFn
    shortlist: ShortlistFn

    @property
    def encoder(self) -> EncoderInfo:
        return self.snapshots.encoder


def first_stage_picks(scan: Scan, q: Ragged, k: int, stage: Stage, conn: sqlite3.Connection) -> Picks:
    if stage.name == "hnsw":
        return graph_picks(scan, q, max(stage.candidates, k), k)
    if stage.name == "binary":
        return binary_picks(scan, q, max(stage.candidates, k), k)
    if stage.name == "plaid":
        return plaid_picks(scan, q, max(stage.candidates, k), k)
    return exact_picks(scan, q, k, conn)


# ---------------------------------------------------------------------------- 3. first stages


def exact_picks(scan: Scan, q: Ragged, k: int, conn: sqlite3.Connection) -> Picks:
    """Every matching page scored exactly, damaged pages ranked last."""
    enc = scan.encoder
    scores = score_locations(
        q, scan.locs, scan.view, enc.similarity, single=enc.kind == "single"
    )  # (n_queries, n_pages)
    integrity.rank_damaged_last(scores, scan.locs.rows, conn, scan.snapshots.path)  # 5.
    return top_k(scores, k)


def binary_picks(scan: Scan, q: Ragged, candidates: int, k: int) -> Picks:
    """Per query: Hamming MaxSim over all matching pages, its shortlist reranked exactly."""
    picks: Picks = []
    for i in range(len(q)):
        one = Ragged.from_list([q[i]])  # (tokens, dim) of query i
        cols = hamming_shortlist(scan, one, scan.locs, candidates)  # (C,) ascending
        picks.append(rerank(scan, one, cols, k))
    return picks


def graph_picks(scan: Scan, q: Ragged, candidates: int, k: int) -> Picks:
    """Per query: the graph's best pages, narrowed to ``candidates`` by Hamming MaxSim
    over their sign-bit codes, plus every page the graph does not cover yet, scored
    exactly; the full exact scan when that leaves fewer than ``k`` pages (a selective filter)."""
    locs = scan.locs
    state, graph = scan.snapshots.graph.state_and_graph()
    uncovered = np.flatnonzero(locs.rows > state.covers_row)  # (n,) columns scanned exactly
    picks: Picks = []
    for i in range(len(q)):
        one = Ragged.from_list([q[i]])  # (tokens, dim) of query i
        cols = uncovered
        if graph is not None:
            rows = ann.candidate_rows(graph, one.values, candidates * ann.REFINE)
            found = np.flatnonzero(np.isin(locs.rows, rows))  # (<= C * REFINE,) ascending
            if found.shape[0] > candidates:
                found = found[hamming_shortlist(scan, one, subset(locs, found), candidates)]
            cols = np.union1d(cols, found)
        if cols.shape[0] < min(k, len(locs)):
            cols = np.arange(len(locs))
        picks.append(rerank(scan, one, cols, k))
    return picks


def plaid_picks(scan: Scan, q: Ragged, candidates: int, k: int) -> Picks:
    """Per query: PLAID's best ``candidates`` pages (:mod:`.plaid_search`) plus every page its
    file does not cover yet, scored exactly; the full exact scan when that leaves fewer than
    ``k`` pages (a selective filter)."""
    locs = scan.locs
    _, arrays = scan.snapshots.plaid.state_and_arrays()
    allowed = None if arrays is None else plaid_search.allowed_pages(arrays, locs.rows)  # (P,) column or -1
    uncovered = np.arange(len(locs))  # columns the file does not code: scanned exactly
    if allowed is not None:
        uncovered = np.setdiff1d(uncovered, allowed[allowed >= 0])
    picks: Picks = []
    for i in range(len(q)):
        one = Ragged.from_list([q[i]])  # (tokens, dim) of query i
        cols = uncovered
        if arrays is not None and allowed is not None and len(locs) > candidates:
            pages = plaid_search.candidate_pages(arrays, one.values, allowed, candidates)
            cols = np.union1d(cols, allowed[pages])
        elif len(locs) <= candidates:
            cols = np.arange(len(locs))  # every page fits the exact rerank
        if cols.shape[0] < min(k, len(locs)):
            cols = np.arange(len(locs))
        picks.append(rerank(scan, one, cols, k))
    return picks


def hamming_shortlist(scan: Scan, one: Ragged, locs: Locations, candidates: int) -> np.ndarray:
    """Columns of ``locs`` (ascending) of the ``candidates`` best Hamming MaxSim scores of
    one query's sign-bit codes against the pages' codes."""
    codes: BinaryCodes = scan.snapshots.codes
    segments = scan.snap.segments
    rough = hamming_maxsim(
        binary_codes(one.values), locs, codes, scan.view, scan.encoder.dim, lambda s: segments[s][0]
    )  # (len(locs),)
    return scan.shortlist(rough, candidates)


# ---------------------------------------------------------------------------- 4. rerank, 6. hits


def rerank(scan: Scan, one: Ragged, cols: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Exact scores of one query against the pages at ``cols`` (ascending): the best ``k``
    as ``(column in scan.locs, score)``."""
    exact = score_locations(one, subset(scan.locs, cols), scan.view, scan.encoder.similarity, single=False)
    return [(int(cols[c]), s) for c, s in top_k(exact, k)[0]]


def hits(
    snapshots: IndexSnapshots, conn: sqlite3.Connection, locs: Locations, picks: Picks
) -> list[list[SearchHit]]:
    """The picked pages as :class:`SearchHit` with their records, read in one query."""
    wanted = sorted({int(locs.rows[c]) for one in picks for c, _ in one})
    by_row = snapshots.records_by_row(conn, wanted)
    return [
        [SearchHit(by_row[int(locs.rows[c])].id, s, by_row[int(locs.rows[c])]) for c, s in one]
        for one in picks
    ]
