"""Contrastive losses over late-interaction (MaxSim) and dense scores.

The recipe every served model was trained with: InfoNCE with a temperature over the
in-batch documents (each query's positive at its own position) plus, when given, the mined
hard negatives appended as extra columns. Each loss reproduces one of colpali-engine
0.3.18's classes (``ColbertLoss``, ``ColbertPairwiseCELoss``, ``ColbertNegativeCELoss``,
``BiEncoderLoss``, ``BiNegativeCELoss``) on the same tensors; the suite compares them at
test time.

Embeddings are padded batches: queries ``(B, Lq, D)`` with a ``(B, Lq)`` mask, documents
``(C, Ld, D)`` with a ``(C, Ld)`` mask (multi-vector), or ``(B, D)`` / ``(C, D)`` (dense).
Padded document tokens never win a max (masked to -inf), padded query tokens add nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .settings import DEFAULT_TEMPERATURE


def maxsim_matrix(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    documents: torch.Tensor,
    document_mask: torch.Tensor,
) -> torch.Tensor:
    """Differentiable MaxSim of every query against every document: ``(B, C)``.

    ``queries`` ``(B, Lq, D)``, ``documents`` ``(C, Ld, D)``; the same sum of per-query-token
    maxima as :func:`mmembed.scoring.maxsim` computes on ragged, unpadded vectors."""
    sims = torch.einsum("bnd,csd->bcns", queries, documents)  # (B, C, Lq, Ld)
    sims = sims.masked_fill(~document_mask.bool()[None, :, None, :], float("-inf"))
    best = sims.amax(dim=3)  # (B, C, Lq)
    best = best.masked_fill(~query_mask.bool()[:, None, :], 0.0)
    return best.sum(dim=2)  # (B, C)


def paired_maxsim(
    queries: torch.Tensor, query_mask: torch.Tensor, documents: torch.Tensor, document_mask: torch.Tensor
) -> torch.Tensor:
    """MaxSim of query ``i`` against each of its own ``N`` documents: ``documents``
    ``(B, N, Ld, D)``, ``document_mask`` ``(B, N, Ld)`` -> ``(B, N)``."""
    sims = torch.einsum("bnd,bksd->bkns", queries, documents)  # (B, N, Lq, Ld)
    sims = sims.masked_fill(~document_mask.bool()[:, :, None, :], float("-inf"))
    best = sims.amax(dim=3).masked_fill(~query_mask.bool()[:, None, :], 0.0)  # (B, N, Lq)
    return best.sum(dim=2)


def _normalised(scores: torch.Tensor, query_mask: torch.Tensor | None) -> torch.Tensor:
    """Scores divided by each query's token count (colpali's ``normalize_scores``)."""
    if query_mask is None:
        return scores
    lengths = query_mask.sum(dim=1).to(scores.dtype)  # (B,)
    return scores / lengths.view(-1, *([1] * (scores.ndim - 1)))


def info_nce(
    scores: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of ``scores`` ``(B, C)`` (C >= B) with query ``i``'s positive in column
    ``i``. ``exclude`` ``(B, C)`` marks columns that must not count as negatives (another
    copy of the query's own page, another known positive): they leave the softmax."""
    logits = scores / temperature
    if exclude is not None:
        keep_positive = torch.zeros_like(exclude, dtype=torch.bool)
        keep_positive[torch.arange(scores.shape[0]), torch.arange(scores.shape[0])] = True
        logits = logits.masked_fill(exclude.bool() & ~keep_positive, float("-inf"))
    target = torch.arange(scores.shape[0], device=scores.device)
    return F.cross_entropy(logits, target)


def late_interaction_info_nce(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    documents: torch.Tensor,
    document_mask: torch.Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    normalize_scores: bool = True,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE over MaxSim: ``documents`` are the B positives (in query order) followed by any
    hard negatives, all shared by the batch. colpali's ``ColbertLoss(queries, documents)``."""
    scores = maxsim_matrix(queries, query_mask, documents, document_mask)  # (B, C)
    if normalize_scores:
        scores = _normalised(scores, query_mask)
    return info_nce(scores, temperature, exclude)


def late_interaction_pairwise(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    documents: torch.Tensor,
    document_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    normalize_scores: bool = True,
) -> torch.Tensor:
    """softplus((hardest in-batch negative - positive) / T): colpali's ``ColbertPairwiseCELoss``."""
    scores = maxsim_matrix(queries, query_mask, documents, document_mask)  # (B, B)
    if normalize_scores:
        scores = _normalised(scores, query_mask)
    positive = scores.diagonal()
    others = scores.masked_fill(
        torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device), float("-inf")
    )
    return F.softplus((others.amax(dim=1) - positive) / temperature).mean()


def late_interaction_negative_ce(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    positives: torch.Tensor,
    positive_mask: torch.Tensor,
    negatives: torch.Tensor,
    negative_mask: torch.Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    normalize_scores: bool = True,
    in_batch_weight: float = 0.5,
) -> torch.Tensor:
    """Each query against its own hard negatives ``(B, N, Ld, D)`` (softplus of the margin),
    mixed with the in-batch InfoNCE: colpali's ``ColbertNegativeCELoss``."""
    positive = paired_maxsim(queries, query_mask, positives[:, None], positive_mask[:, None])[:, 0]  # (B,)
    negative = paired_maxsim(queries, query_mask, negatives, negative_mask)  # (B, N)
    if normalize_scores:
        positive, negative = _normalised(positive, query_mask), _normalised(negative, query_mask)
    loss = F.softplus((negative - positive[:, None]) / temperature).mean()
    if in_batch_weight > 0:
        in_batch = late_interaction_info_nce(
            queries,
            query_mask,
            positives,
            positive_mask,
            temperature=temperature,
            normalize_scores=normalize_scores,
        )
        loss = loss * (1 - in_batch_weight) + in_batch * in_batch_weight
    return loss


def dense_info_nce(
    queries: torch.Tensor,
    documents: torch.Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE over dot products, ``queries`` ``(B, D)``, ``documents`` ``(C, D)`` (positives
    first, then shared hard negatives): colpali's ``BiEncoderLoss``."""
    return info_nce(queries @ documents.T, temperature, exclude)  # (B, C)


def dense_negative_ce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    in_batch_weight: float = 0.5,
) -> torch.Tensor:
    """softplus of each own negative's margin over the positive ``(B, N, D)``, mixed with
    the in-batch InfoNCE: colpali's ``BiNegativeCELoss``."""
    positive = (queries * positives).sum(dim=-1) / temperature  # (B,)
    negative = torch.einsum("bd,bnd->bn", queries, negatives) / temperature  # (B, N)
    loss = F.softplus(negative - positive[:, None]).mean()
    if in_batch_weight > 0:
        in_batch = dense_info_nce(queries, positives, temperature=temperature)
        loss = loss * (1 - in_batch_weight) + in_batch * in_batch_weight
    return loss
