"""The fine-tuning losses against colpali-engine 0.3.18's own loss classes on fixed tensors
(within 1e-6), the training MaxSim against the index's scorer, and the batch sampler."""

from __future__ import annotations

import pytest
import torch

from mmembed.finetune import losses
from mmembed.finetune.sampling import SourceBatchSampler
from mmembed.scoring import maxsim

colpali_loss = pytest.importorskip("colpali_engine.loss")

B, N_NEG, LQ, LD, DIM = 4, 2, 5, 7, 16
ATOL = 1e-6


def _unit(*shape: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=torch.float64)
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    """Queries zero-padded to LQ (as colpali pads them), unpadded documents."""
    queries = _unit(B, LQ, DIM, seed=0)
    query_mask = torch.ones(B, LQ, dtype=torch.bool)
    query_mask[1, 3:] = False  # a shorter query: its padded rows are zero, as colpali expects
    query_mask[3, 4:] = False
    queries = queries * query_mask[..., None]
    return {
        "queries": queries,
        "query_mask": query_mask,
        "docs": _unit(B, LD, DIM, seed=1),
        "doc_mask": torch.ones(B, LD, dtype=torch.bool),
        "negs": _unit(B, N_NEG, LD, DIM, seed=2),
        "neg_mask": torch.ones(B, N_NEG, LD, dtype=torch.bool),
        "dense_q": _unit(B, DIM, seed=3),
        "dense_d": _unit(B, DIM, seed=4),
        "dense_n": _unit(B, N_NEG, DIM, seed=5),
    }


def _close(mine: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(mine, theirs, atol=ATOL, rtol=0)


@pytest.mark.parametrize("normalize", [True, False])
def test_info_nce_is_colbert_loss(batch: dict[str, torch.Tensor], normalize: bool) -> None:
    reference = colpali_loss.ColbertLoss(temperature=0.02, normalize_scores=normalize)
    mine = losses.late_interaction_info_nce(
        batch["queries"], batch["query_mask"], batch["docs"], batch["doc_mask"], normalize_scores=normalize
    )
    _close(mine, reference(batch["queries"], batch["docs"]))


def test_info_nce_with_shared_hard_negatives_is_colbert_loss_over_all_documents(
    batch: dict[str, torch.Tensor],
) -> None:
    """Hard negatives are extra columns shared by the batch: ColbertLoss given positives then negatives."""
    documents = torch.cat([batch["docs"], batch["negs"].flatten(0, 1)])  # (B + B*N, LD, DIM)
    mask = torch.ones(documents.shape[:2], dtype=torch.bool)
    mine = losses.late_interaction_info_nce(batch["queries"], batch["query_mask"], documents, mask)
    _close(mine, colpali_loss.ColbertLoss(temperature=0.02)(batch["queries"], documents))


def test_pairwise_is_colbert_pairwise_ce_loss(batch: dict[str, torch.Tensor]) -> None:
    mine = losses.late_interaction_pairwise(
        batch["queries"], batch["query_mask"], batch["docs"], batch["doc_mask"]
    )
    _close(mine, colpali_loss.ColbertPairwiseCELoss()(batch["queries"], batch["docs"]))


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_negative_ce_is_colbert_negative_ce_loss(batch: dict[str, torch.Tensor], weight: float) -> None:
    mine = losses.late_interaction_negative_ce(
        batch["queries"],
        batch["query_mask"],
        batch["docs"],
        batch["doc_mask"],
        batch["negs"],
        batch["neg_mask"],
        in_batch_weight=weight,
    )
    reference = colpali_loss.ColbertNegativeCELoss(in_batch_term_weight=weight)
    _close(mine, reference(batch["queries"], batch["docs"], batch["negs"]))


def test_dense_info_nce_is_bi_encoder_loss(batch: dict[str, torch.Tensor]) -> None:
    mine = losses.dense_info_nce(batch["dense_q"], batch["dense_d"])
    _close(mine, colpali_loss.BiEncoderLoss()(batch["dense_q"], batch["dense_d"]))
    documents = torch.cat([batch["dense_d"], batch["dense_n"].flatten(0, 1)])
    _close(
        losses.dense_info_nce(batch["dense_q"], documents),
        colpali_loss.BiEncoderLoss()(batch["dense_q"], documents),
    )


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_dense_negative_ce_is_bi_negative_ce_loss(batch: dict[str, torch.Tensor], weight: float) -> None:
    mine = losses.dense_negative_ce(
        batch["dense_q"], batch["dense_d"], batch["dense_n"], in_batch_weight=weight
    )
    reference = colpali_loss.BiNegativeCELoss(in_batch_term_weight=weight)
    _close(mine, reference(batch["dense_q"], batch["dense_d"], batch["dense_n"]))


def test_training_maxsim_is_the_index_scorer_on_unpadded_vectors(batch: dict[str, torch.Tensor]) -> None:
    """Padded document rows never win a max, padded query rows add nothing: the same numbers as
    mmembed.scoring.maxsim on the ragged, unpadded vectors the index stores."""
    docs, doc_mask = batch["docs"].clone(), batch["doc_mask"].clone()
    doc_mask[2, 4:] = False
    docs[2, 4:] = 5.0  # garbage in padded rows must not matter
    mine = losses.maxsim_matrix(batch["queries"], batch["query_mask"], docs, doc_mask)
    ragged_q = [q[m].float() for q, m in zip(batch["queries"], batch["query_mask"], strict=True)]
    ragged_d = [d[m].float() for d, m in zip(docs, doc_mask, strict=True)]
    torch.testing.assert_close(mine.float(), maxsim(ragged_q, ragged_d), atol=1e-5, rtol=0)


def test_excluded_columns_leave_the_softmax() -> None:
    """A document known to answer a query (another copy of its page) is not its negative."""
    scores = torch.tensor([[0.9, 0.9, 0.1], [0.2, 0.8, 0.1]])
    exclude = torch.tensor([[False, True, False], [False, False, False]])
    masked = losses.info_nce(scores, 0.1, exclude)
    only_third = torch.nn.functional.cross_entropy(
        torch.tensor([[9.0, 1.0], [2.0, 8.0]]), torch.tensor([0, 1])
    )
    # query 0: softmax over columns 0 and 2 only; query 1 unchanged
    expected = (
        torch.nn.functional.cross_entropy(torch.tensor([[9.0, 1.0]]), torch.tensor([0]))
        + torch.nn.functional.cross_entropy(torch.tensor([[2.0, 8.0, 1.0]]), torch.tensor([1]))
    ) / 2
    torch.testing.assert_close(masked, expected)
    assert not torch.allclose(masked, only_third)


def test_same_source_batches() -> None:
    sources = ["a"] * 8 + ["b"] * 8 + ["c"] * 4
    pages = [f"{s}{i % 6}" for i, s in enumerate(sources)]  # a page answers several queries
    sampler = SourceBatchSampler(sources, pages, 4, sampling="same-source", seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(sources)))
    for b in batches:
        assert len({pages[i] for i in b}) == len(b), "a page twice in one batch would be its own negative"
    single_source = [b for b in batches if len({sources[i] for i in b}) == 1]
    assert len(single_source) >= len(batches) - 2  # only the seams between sources mix
    assert list(sampler) == batches  # deterministic for a seed and epoch (a resumed run draws the same)
    sampler.set_epoch(1)
    assert list(sampler) != batches
    shuffled = SourceBatchSampler(sources, pages, 4, sampling="shuffle", seed=1)
    assert sum(len({sources[i] for i in b}) == 1 for b in shuffled) < len(single_source)
