"""What decides what a run trains (light: the CLI's parser reads the defaults without torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Sampling = Literal["same-source", "shuffle"]
SAMPLINGS: tuple[Sampling, ...] = ("same-source", "shuffle")

DEFAULT_NEGATIVES = 2
"""Omni-Embed-Nemotron's K; Nomic reports gains up to 6."""
DEFAULT_MAX_NEG_RATIO = 0.95
"""NV-Retriever's TopK-PercPos threshold."""
DEFAULT_TEMPERATURE = 0.02
"""colpali-engine's default for ColBERT and bi-encoder InfoNCE."""


@dataclass
class TrainSettings:
    """Everything that decides what a run trains (a resumed run must use the same)."""

    negatives: int = DEFAULT_NEGATIVES
    max_neg_ratio: float = DEFAULT_MAX_NEG_RATIO
    sampling: Sampling = "same-source"
    source_key: str = "file"
    batch_size: int = 8
    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float = 2e-4
    warmup_steps: int = 0
    temperature: float = DEFAULT_TEMPERATURE
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    """colpali-engine's published LoRA dropout."""
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    eval_fraction: float = 0.2
    seed: int = 0
    dpi: float = 144
