"""Fuse a visual and a text ranked list into one: reciprocal rank fusion or a weighted sum.

Every backend (the embedded index, Qdrant) and every framework adapter goes through
:func:`fuse` (or :func:`fuse_ranked`, the same rule on ``(key, score)`` pairs), so a hybrid
search ranks the same way wherever it runs.

>>> from mmembed.types import PageRecord, SearchHit
>>> def hit(i, s): return SearchHit(i, s, PageRecord(i, "a.pdf", 1, "h"))
>>> [(h.id, h.found_by) for h in fuse([hit("a", 9.0), hit("b", 8.0)], [hit("b", 3.0)], k=2)]
[('b', ('visual', 'text')), ('a', ('visual',))]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

from ..types import SEARCH_MODES, MMEmbedError, SearchHit, SearchMode, SideMatch

DEFAULT_RRF_K = 60
"""Reciprocal rank fusion's constant (Cormack et al. 2009): a hit at rank ``r`` adds ``1 / (k + r)``."""

FUSION_DEPTH = 50
"""How many hits each side contributes to a fusion at least (``max(k, FUSION_DEPTH)``)."""


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """A search's mode and fusion settings, validated once for every backend and adapter."""

    mode: SearchMode = "visual"
    alpha: float | None = None
    """Weighted-sum fusion: ``alpha * visual + (1 - alpha) * text`` of min-max normalised
    scores (1 = visual only, 0 = text only). ``None``: reciprocal rank fusion."""
    rrf_k: int = DEFAULT_RRF_K

    def depth(self, k: int) -> int:
        """Hits to ask each side for."""
        return max(k, FUSION_DEPTH) if self.mode == "hybrid" else k


def search_options(
    mode: str | None = "visual", alpha: float | None = None, rrf_k: int | None = None
) -> SearchOptions:
    """Validate a mode and its fusion parameters (the one rule, named in every error)."""
    mode = "visual" if mode is None else mode
    if mode not in SEARCH_MODES:
        raise MMEmbedError(f"mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
            raise MMEmbedError(f"alpha must be a number from 0 to 1 (1 = visual only), got {alpha!r}")
        if rrf_k is not None:
            raise MMEmbedError(
                "give alpha (weighted sum of normalised scores) or rrf_k (reciprocal rank fusion), not both"
            )
    if rrf_k is not None and (isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 1):
        raise MMEmbedError(f"rrf_k must be a positive integer, got {rrf_k!r}")
    if mode != "hybrid" and (alpha is not None or rrf_k is not None):
        raise MMEmbedError(f"alpha and rrf_k tune mode='hybrid'; mode={mode!r} takes neither")
    return SearchOptions(
        mode=mode,  # type: ignore[arg-type]  # checked against SEARCH_MODES above
        alpha=None if alpha is None else float(alpha),
        rrf_k=DEFAULT_RRF_K if rrf_k is None else rrf_k,
    )


def with_side(hits: Sequence[SearchHit], side: str) -> list[SearchHit]:
    """``hits`` of one side marked with their rank and score on it."""
    return [
        dataclasses.replace(h, matches=(SideMatch(side, rank, h.score),))  # type: ignore[arg-type]
        for rank, h in enumerate(hits, start=1)
    ]


def fuse(
    visual: Sequence[SearchHit],
    text: Sequence[SearchHit],
    k: int,
    *,
    alpha: float | None = None,
    rrf_k: int = DEFAULT_RRF_K,
) -> list[SearchHit]:
    """Top-``k`` of the union of two ranked lists (each best first). A hit's score is its
    RRF score ``sum(1 / (rrf_k + rank))`` over the sides that found it, or with ``alpha`` the
    weighted sum of its min-max normalised scores (a side that did not find it adds 0).
    Ties keep the visual side's order, then the text side's (:func:`fuse_ranked`)."""
    first: dict[str, SearchHit] = {}
    for hit in (*visual, *text):
        first.setdefault(hit.id, hit)
    fused = fuse_ranked(
        [(h.id, h.score) for h in visual], [(h.id, h.score) for h in text], k, alpha=alpha, rrf_k=rrf_k
    )
    return [dataclasses.replace(first[i], score=score, matches=matches) for i, score, matches in fused]


_Key = TypeVar("_Key", bound=Hashable)


def fuse_ranked(
    visual: Sequence[tuple[_Key, float]],
    text: Sequence[tuple[_Key, float]],
    k: int,
    *,
    alpha: float | None = None,
    rrf_k: int = DEFAULT_RRF_K,
) -> list[tuple[_Key, float, tuple[SideMatch, ...]]]:
    """:func:`fuse` on ``(key, score)`` pairs (a page id, or a row of one snapshot): the best
    ``k`` as ``(key, fused score, matches)``, so a caller can read the records of the fused
    hits alone. Ties keep the visual side's order, then the text side's."""
    sides = {"visual": visual, "text": text}
    fused: dict[_Key, float] = {}
    matches: dict[_Key, list[SideMatch]] = {}
    order: dict[_Key, int] = {}
    for side, ranked in sides.items():
        weight = None if alpha is None else (alpha if side == "visual" else 1.0 - alpha)
        normalised = _min_max([score for _, score in ranked])
        for rank, ((key, score), norm) in enumerate(zip(ranked, normalised, strict=True), start=1):
            if key in matches and any(m.side == side for m in matches[key]):
                continue  # a side lists each page once; ignore a repeat
            gain = 1.0 / (rrf_k + rank) if weight is None else weight * norm
            fused[key] = fused.get(key, 0.0) + gain
            order.setdefault(key, len(order))
            matches.setdefault(key, []).append(SideMatch(side, rank, float(score)))  # type: ignore[arg-type]
    ranked_keys = sorted(fused, key=lambda key: (-fused[key], order[key]))[:k]
    return [(key, fused[key], tuple(matches[key])) for key in ranked_keys]


def _min_max(scores: list[float]) -> list[float]:
    """Scores mapped to [0, 1] (best = 1); all equal (or one) -> all 1."""
    finite = [s for s in scores if math.isfinite(s)]
    if not finite:
        return [0.0 for _ in scores]
    low, high = min(finite), max(finite)
    span = high - low
    return [(0.0 if not math.isfinite(s) else 1.0 if span == 0 else (s - low) / span) for s in scores]
