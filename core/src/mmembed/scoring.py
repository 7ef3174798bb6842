"""Exact late-interaction (MaxSim) and dense scoring.

Documents are *ragged*: every page has its own number of vectors. They are kept flat
(:class:`Ragged`: one ``(total_vectors, dim)`` matrix plus offsets) so that scoring is a
few large matrix products rather than a loop over padded batches, and padding can never
leak into a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .types import MMEmbedError, Similarity


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


def maxsim(queries: EmbeddingsLike, documents: EmbeddingsLike) -> torch.Tensor:
    """Late-interaction scores: for every query token, the best-matching document token's
    dot product, summed over query tokens. Returns ``(n_queries, n_documents)`` float32."""
    q, d = as_ragged(queries), as_ragged(documents)
    if q.dim != d.dim:
        raise MMEmbedError(f"query dim {q.dim} does not match document dim {d.dim}")
    out = torch.empty(len(q), len(d), dtype=torch.float32)
    qv = q.values.float()
    for j in range(len(d)):
        dv = d[j].float()
        if dv.shape[0] == 0:
            out[:, j] = 0.0
            continue
        sim = qv @ dv.T  # (query_tokens_total, doc_tokens)
        best = sim.max(dim=1).values  # (query_tokens_total,)
        out[:, j] = torch.segment_reduce(best, "sum", lengths=q.lengths)
    return out


def dense(queries: torch.Tensor, documents: torch.Tensor, similarity: Similarity = "dot") -> torch.Tensor:
    """Single-vector scores ``(n_queries, n_documents)`` by dot product or cosine."""
    q, d = queries.float(), documents.float()
    if similarity == "cosine":
        q = torch.nn.functional.normalize(q, dim=-1)
        d = torch.nn.functional.normalize(d, dim=-1)
    return q @ d.T


def score(queries: EmbeddingsLike, documents: EmbeddingsLike, similarity: Similarity) -> torch.Tensor:
    """Dispatch on the similarity an encoder declares."""
    if similarity == "maxsim":
        return maxsim(queries, documents)
    q, d = as_ragged(queries), as_ragged(documents)
    if bool((q.lengths != 1).any()) or bool((d.lengths != 1).any()):
        raise MMEmbedError(f"{similarity} scoring needs exactly one vector per item")
    return dense(q.values, d.values, similarity)
