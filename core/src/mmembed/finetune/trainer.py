"""The training loop: transformers' ``Trainer`` with a contrastive ``compute_loss`` over a
PEFT LoRA model (rank 16, alpha 32 by default, on the language model only).

``Trainer`` brings checkpoints (adapter weights, optimizer, scheduler and RNG states),
resuming, gradient accumulation, mixed precision on GPU and the progress bar with the loss;
this module only says what a batch is (:class:`PairCollator`: the queries, their positives
and the shared hard negatives, through the family's own processor) and what the loss is
(:mod:`mmembed.finetune.losses`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .families import TrainableEncoder
from .losses import dense_info_nce, late_interaction_info_nce
from .pages import PageImages
from .sampling import SourceBatchSampler
from .settings import DEFAULT_TEMPERATURE


@dataclass(frozen=True)
class Example:
    """One training pair and the hard negatives mined for it."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    """colpali-engine's published LoRA dropout."""


@dataclass
class PairCollator:
    """Example indices -> one batch: the queries' inputs, the documents' inputs (the batch's
    positives, in query order, then each hard negative not already among them) and
    ``exclude`` ``(B, C)``, the documents known to answer a query besides its own positive."""

    trainable: TrainableEncoder
    examples: Sequence[Example]
    images: PageImages
    known_positives: Mapping[str, set[str]] = field(default_factory=dict)

    def documents(self, rows: Sequence[Example]) -> list[str]:
        docs = [row.positive for row in rows]
        for row in rows:
            docs += [n for n in row.negatives if n not in docs]
        return docs

    def __call__(self, indices: Sequence[int]) -> dict[str, Any]:
        rows = [self.examples[i] for i in indices]
        docs = self.documents(rows)
        exclude = torch.zeros(len(rows), len(docs), dtype=torch.bool)  # (B, C)
        for b, row in enumerate(rows):
            known = self.known_positives.get(row.query.strip(), set())
            for c, doc in enumerate(docs):
                exclude[b, c] = c != b and doc in known
        return {
            "queries": self.trainable.query_inputs([row.query for row in rows]),
            "documents": self.trainable.page_inputs([self.images[d] for d in docs]),
            "exclude": exclude,
        }


def contrastive_loss(
    trainable: TrainableEncoder, model: nn.Module, batch: Mapping[str, Any], temperature: float
) -> torch.Tensor:
    """InfoNCE over the batch's documents (see :class:`PairCollator`)."""
    queries = trainable.embed(model, batch["queries"])  # (B, Lq, D) or (B, D)
    documents = trainable.embed(model, batch["documents"])  # (C, Ld, D) or (C, D)
    exclude = batch["exclude"].to(queries.device)
    if queries.ndim == 2 and documents.ndim == 3:  # one query vector, several page vectors (Nomic tiles)
        ones = torch.ones(queries.shape[0], 1, dtype=torch.long, device=queries.device)
        document_mask = batch["documents"]["attention_mask"].to(queries.device)
        return late_interaction_info_nce(
            queries[:, None], ones, documents, document_mask, temperature=temperature, exclude=exclude
        )
    if trainable.kind == "multi":
        query_mask = batch["queries"]["attention_mask"].to(queries.device)
        document_mask = batch["documents"]["attention_mask"].to(queries.device)
        return late_interaction_info_nce(
            queries, query_mask, documents, document_mask, temperature=temperature, exclude=exclude
        )
    return dense_info_nce(queries, documents, temperature=temperature, exclude=exclude)


class _Indices(torch.utils.data.Dataset[int]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def build_trainer(
    *,
    trainable: TrainableEncoder,
    model: nn.Module,
    examples: Sequence[Example],
    sampler: SourceBatchSampler,
    collator: PairCollator,
    args: Any,
    temperature: float = DEFAULT_TEMPERATURE,
    callbacks: Sequence[Any] = (),
) -> Any:
    """A ``transformers.Trainer`` whose batches come from ``sampler`` / ``collator`` and whose
    loss is :func:`contrastive_loss`."""
    from transformers import Trainer

    class ContrastiveTrainer(Trainer):  # type: ignore[misc]
        step_losses: list[float] = []
        """Each batch's loss, in order (this process's steps only: a resumed run starts empty)."""

        def get_train_dataloader(self) -> Any:
            loader = torch.utils.data.DataLoader(
                _Indices(len(examples)), batch_sampler=sampler, collate_fn=collator, num_workers=0
            )
            return self.accelerator.prepare(loader)

        def compute_loss(
            self,
            model: nn.Module,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            loss = contrastive_loss(trainable, model, inputs, temperature)
            self.step_losses.append(float(loss.detach()))
            return (loss, {}) if return_outputs else loss

    return ContrastiveTrainer(model=model, args=args, callbacks=list(callbacks))


def wrap_with_lora(trainable: TrainableEncoder, lora: LoraSettings, *, seed: int) -> Any:
    """The family's module with fresh LoRA weights (B = 0: the untrained adapter changes
    nothing) on the language model's projections and the head; everything else frozen."""
    from peft import LoraConfig, get_peft_model

    module = trainable.module
    module.requires_grad_(False)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=trainable.lora_target_regex(),
        bias="none",
        init_lora_weights=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_peft_model(module, config)  # type: ignore[arg-type]  # any nn.Module works
    return model


ProgressHook = Callable[[int, float], None]
