"""Hard negatives mined from the index itself, positive-aware (NV-Retriever's TopK-PercPos).

For each training query the current model's exact scores over the index (the index's own
search, every page scored; no approximate first stage) give the most similar pages; a page
is kept as a negative only when its score is below ``max_ratio`` times the positive's (a
page scoring almost as high is more likely an unlabelled answer than a negative), and the
query's positive and every other page known to answer it are never negatives. The first
``k`` survivors are the query's hard negatives. Mined once per run, with the model the index
was built with, and written to ``hard_negatives.jsonl`` for inspection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..encoders.base import Encoder
from ..index.protocol import Filter, IndexBackend
from ..scoring import score
from ..types import MMEmbedError
from .pairs import TrainPair
from .settings import DEFAULT_MAX_NEG_RATIO, DEFAULT_NEGATIVES

MINING_BATCH = 16


@dataclass(frozen=True)
class MinedNegative:
    id: str
    score: float


@dataclass
class MinedQuery:
    """What mining found for one pair: its negatives, and the pages left out as likely false
    negatives (scoring at or above ``max_ratio`` of the positive)."""

    query: str
    positive: str
    positive_score: float
    negatives: list[MinedNegative] = field(default_factory=list)
    too_close: list[MinedNegative] = field(default_factory=list)


def threshold(positive_score: float, max_ratio: float) -> float:
    """Scores at or above this are too close to the positive: ``max_ratio * positive`` for a
    positive score >= 0; for a negative one (possible with dot products) the same margin
    below it, ``positive - (1 - max_ratio) * |positive|``."""
    return positive_score - (1.0 - max_ratio) * abs(positive_score)


def mine_hard_negatives(
    index: IndexBackend,
    encoder: Encoder,
    pairs: Sequence[TrainPair],
    known_positives: Mapping[str, set[str]],
    *,
    k: int = DEFAULT_NEGATIVES,
    max_ratio: float = DEFAULT_MAX_NEG_RATIO,
    exclude_pages: Sequence[str] = (),
) -> list[MinedQuery]:
    """One :class:`MinedQuery` per pair, in order (see module docstring). ``exclude_pages``
    (the held-out pages) are never negatives, so evaluation pages stay unseen."""
    if k < 0:
        raise MMEmbedError(f"the number of hard negatives must be 0 or more, got {k}")
    if not 0 < max_ratio <= 1:
        raise MMEmbedError(f"max_neg_ratio must be in (0, 1], got {max_ratio}")
    if k == 0:
        return [MinedQuery(p.query, p.page_id, float("nan")) for p in pairs]
    where: Filter | None = {"id": {"$nin": list(exclude_pages)}} if exclude_pages else None
    similarity = index.encoder.similarity
    mined: list[MinedQuery] = []
    for start in range(0, len(pairs), MINING_BATCH):
        batch = list(pairs[start : start + MINING_BATCH])
        query_vectors = encoder.encode_queries([p.query for p in batch])
        positive_vectors = index.get_embeddings([p.page_id for p in batch])
        known = [known_positives.get(p.query.strip(), {p.page_id}) | {p.page_id} for p in batch]
        depth = k + max(len(s) for s in known) + 4 * k  # room for skipped positives and close pages
        hits = _exact_search(index, query_vectors, depth, where)
        rows: list[MinedQuery] = []
        for pair, vectors, positive in zip(batch, query_vectors, positive_vectors, strict=True):
            if positive is None or positive.shape[0] == 0:
                raise MMEmbedError(f"{pair.where}: page {pair.page_id} has no stored vectors to mine against")
            rows.append(
                MinedQuery(pair.query, pair.page_id, float(score([vectors], [positive], similarity)[0, 0]))
            )
        total = index.count(where)
        while True:
            for row, own, found in zip(rows, known, hits, strict=True):
                _select(row, own, found, k, threshold(row.positive_score, max_ratio))
            short = [i for i, row in enumerate(rows) if len(row.negatives) < k]
            if not short or depth >= total:
                break
            # A positive the model ranks low leaves many pages above the ratio: look deeper.
            depth = min(total, depth * 4)
            deeper = _exact_search(index, [query_vectors[i] for i in short], depth, where)
            for i, found in zip(short, deeper, strict=True):
                hits[i] = found
        mined += rows
    return mined


def _select(row: MinedQuery, own: set[str], found: Sequence[Any], k: int, limit: float) -> None:
    """``row``'s negatives: the first ``k`` of ``found`` (best first) that are not known
    positives and score below ``limit``; those at or above it are kept aside as too close."""
    row.negatives, row.too_close = [], []
    for hit in found:
        if hit.id in own:
            continue
        if hit.score >= limit:
            row.too_close.append(MinedNegative(hit.id, float(hit.score)))
        elif len(row.negatives) < k:
            row.negatives.append(MinedNegative(hit.id, float(hit.score)))


def _exact_search(
    index: IndexBackend, queries: list[torch.Tensor], k: int, where: Filter | None
) -> list[list[Any]]:
    """The index's own search, forced exact where the backend has a shortlist stage."""
    from ..index.local import LocalIndex

    if isinstance(index, LocalIndex):
        return index.search(queries, k=k, where=where, exact=True)
    return index.search(queries, k=k, where=where)


def write_mined(path: Path, mined: Sequence[MinedQuery]) -> None:
    """``hard_negatives.jsonl``: one line per pair (query, positive, negatives, and the pages
    left out as too close to the positive)."""
    with path.open("w", encoding="utf-8") as out:
        for row in mined:
            out.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
