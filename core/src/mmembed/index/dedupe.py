"""Collapse near-identical pages in search results: one hit for many copies.

A collection of reports often holds the same page many times (a cover page, a standard
disclaimer, the same file stored under two paths). ``search(..., dedupe=...)`` keeps the
best-scoring hit of each group of copies and drops the others, so ``k`` results are ``k``
different pages:

- ``dedupe="content"`` — copies are hits with the same ``(content_hash, page)``: the same
  page of byte-identical files, wherever they were indexed from;
- ``dedupe=0.95`` (a float in ``(0, 1]``) — copies are hits whose vectors are near-identical:
  :func:`page_similarity` ≥ the threshold (``1.0``: every token has an identical counterpart
  both ways; rendered copies of one page usually score ≥ 0.97).

The walk is greedy in score order: a hit is dropped when it is a copy of a hit already kept.
The search asks the first stage for more than ``k`` hits (:func:`fetch_depth`) and asks again,
deeper, while copies leave fewer than ``k`` kept and more pages exist. Scores stay exact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..types import MMEmbedError

Picks = list[list[tuple[int, float]]]  # per query, (column, exact score), best first

CONTENT = "content"


@dataclass(frozen=True)
class Dedupe:
    """A checked ``dedupe=`` value: by content identity, or by vector similarity ≥ ``threshold``."""

    by_content: bool
    threshold: float = 1.0


def check_dedupe(dedupe: object) -> Dedupe | None:
    """``None`` (no collapsing), ``"content"`` or a similarity threshold in ``(0, 1]``."""
    if dedupe is None:
        return None
    if dedupe == CONTENT:
        return Dedupe(by_content=True)
    if isinstance(dedupe, (int, float)) and not isinstance(dedupe, bool) and 0.0 < float(dedupe) <= 1.0:
        return Dedupe(by_content=False, threshold=float(dedupe))
    raise MMEmbedError(
        f"dedupe must be None, 'content' (same file bytes and page) or a similarity threshold in "
        f"(0, 1] such as 0.95 (near-identical vectors), got {dedupe!r}"
    )


def fetch_depth(k: int, attempt: int) -> int:
    """How many hits to fetch per query on the ``attempt``-th try (0, 1, …): 4k + 10, doubling."""
    return (4 * k + 10) << attempt


def page_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """How identical two pages' vectors are, in ``[-1, 1]``: for each token of one page the
    cosine of its best match in the other, averaged, and the smaller of the two directions
    (so a page is not a copy of a longer page that merely contains it). Single vectors: their
    cosine. ``a``: ``(n_a, dim)``, ``b``: ``(n_b, dim)``."""
    return float(similarities(_unit(a), [_unit(b)])[0])


def _unit(v: torch.Tensor) -> np.ndarray:
    x = v.detach().to("cpu", torch.float32).numpy()  # (n, dim)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def similarities(a: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """:func:`page_similarity` of unit-row page ``a`` ``(n_a, dim)`` with each of ``others``,
    in one product (numpy: many tiny torch calls cost more than the arithmetic)."""
    lengths = np.array([o.shape[0] for o in others])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sims = a @ np.concatenate(others).T  # (n_a, total tokens of others)
    forward = np.maximum.reduceat(sims, starts, axis=1).mean(axis=0)  # (n_others,)
    backward = np.add.reduceat(sims.max(axis=0), starts) / lengths  # (n_others,)
    return np.minimum(forward, backward)


KeyFn = Callable[[list[int]], dict[int, tuple[str, int]]]
"""Columns → their ``(content_hash, page)``."""
VectorsFn = Callable[[int], torch.Tensor]
"""Column → its page's ``(n, dim)`` vectors."""


def collapse(picks: Picks, k: int, rule: Dedupe, keys: KeyFn, vectors: VectorsFn) -> tuple[Picks, bool]:
    """The first ``k`` non-copies of each query's picks, and whether every query got ``k``."""
    out: Picks = []
    full = True
    if rule.by_content:
        key_of = keys(sorted({c for one in picks for c, _ in one}))
    cache: dict[int, np.ndarray] = {}

    def vec(c: int) -> np.ndarray:
        if c not in cache:
            cache[c] = _unit(vectors(c))
        return cache[c]

    for one in picks:
        kept: list[tuple[int, float]] = []
        seen: set[tuple[str, int]] = set()
        for c, s in one:
            if len(kept) == k:
                break
            if rule.by_content:
                if key_of[c] in seen:
                    continue
                seen.add(key_of[c])
            elif kept and similarities(vec(c), [vec(kc) for kc, _ in kept]).max() >= rule.threshold:
                continue
            kept.append((c, s))
        full = full and len(kept) == k
        out.append(kept)
    return out, full


def deduped_picks(
    fetch: Callable[[int], Picks], k: int, rule: Dedupe, n_pages: int, keys: KeyFn, vectors: VectorsFn
) -> Picks:
    """Fetch deeper and deeper until ``k`` distinct hits per query or every page was fetched."""
    attempt = 0
    while True:
        depth = min(fetch_depth(k, attempt), n_pages)
        picks, full = collapse(fetch(depth), k, rule, keys, vectors)
        if full or depth >= n_pages:
            return picks
        attempt += 1


def sqlite_keys(conn: sqlite3.Connection, rows_of: Callable[[list[int]], list[int]]) -> KeyFn:
    """A :data:`KeyFn` reading ``(content_hash, page)`` from the index's ``pages`` table."""

    def keys(cols: list[int]) -> dict[int, tuple[str, int]]:
        rows = rows_of(cols)
        found = {
            int(r): (str(h), int(p))
            for r, h, p in conn.execute(
                "SELECT row, content_hash, page FROM pages WHERE row IN (SELECT value FROM json_each(?))",
                (str(rows),),
            )
        }
        return {c: found[r] for c, r in zip(cols, rows, strict=True)}

    return keys
