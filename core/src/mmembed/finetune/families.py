"""Which served families can be fine-tuned, and how a family's encoder is trained.

Every vision-language retriever mmembed runs natively (ColQwen2 / 2.5 / 3, BiQwen2 / 2.5,
DSE, ColPali, ColIdefics3 / ColSmol, Nemotron ColEmbed and the transformers-native ColPali
/ ColQwen2 classes) is one :class:`~mmembed.encoders.vlm.Embedder`: a VLM backbone plus a
retrieval head, fed by the family's own prompts and processor. Training reuses exactly that
path, so what is trained is what is served: LoRA on the language model's projections (and
on the projection head when there is one), the vision tower frozen.

Families built differently are refused with the reason: checkpoints running their own code
(``trust_remote_code``) — mmembed cannot know which of their modules is the language model
nor how they pad — and the Nomic v1.5 / Omni-Embed-Nemotron encoders, whose training path
is not written yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..encoders.base import Encoder
from ..encoders.vlm import VLMEncoder
from ..types import MMEmbedError

LORA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The language model's linear layers LoRA adapts (colpali-engine's and Nomic's targets)."""
LANGUAGE_MODEL_NAMES = ("language_model", "text_model")
"""Attribute names transformers gives the language model inside a VLM backbone."""
HEAD = "custom_text_proj"


TRAINABLE_FAMILIES = frozenset(
    {"colqwen2_5", "biqwen2_5", "colqwen2", "biqwen2", "colqwen3", "colpali", "colidefics3"}
)
"""Families whose saved adapter reloads into the in-training model (checked on tiny checkpoints)."""
NOT_YET = {
    "colpali_hf": "mmembed does not load LoRA adapters over transformers-native ColPali checkpoints yet",
    "colqwen2_hf": "mmembed does not load LoRA adapters over transformers-native ColQwen2 checkpoints yet",
    "dse_qwen2": (
        "an adapter over a DSE checkpoint would load as BiQwen2 (another prompt recipe), not as DSE"
    ),
    "nemotron_colembed": (
        "its bidirectional backbone reloaded from an adapter does not reproduce the in-training "
        "vectors yet (off by 1e-2 on the tiny checkpoint)"
    ),
}


class UntrainableFamilyError(MMEmbedError):
    """The index's model family cannot be fine-tuned by ``mmembed train``."""


@dataclass
class Batch:
    """Model inputs: the processor's output and which rows are real tokens."""

    inputs: dict[str, torch.Tensor]


class TrainableEncoder:
    """An encoder's trainable module and its inputs (see module docstring)."""

    def __init__(self, encoder: Encoder) -> None:
        if not isinstance(encoder, VLMEncoder) or encoder.info.family not in TRAINABLE_FAMILIES:
            raise refusal(encoder)
        self.encoder = encoder
        self.module: nn.Module = encoder.model
        self.kind = encoder.info.kind
        self.language_model = language_model_prefix(self.module, encoder.info.family)

    def lora_target_regex(self) -> str:
        """PEFT ``target_modules`` (full-match regex): the language model's projections and
        the retrieval head; never the vision tower."""
        projections = "|".join(LORA_PROJECTIONS)
        pattern = rf"{re.escape(self.language_model)}\..*\.({projections})"
        if self.kind == "multi" and any(name == HEAD for name, _ in self.module.named_children()):
            pattern = rf"({pattern}|{HEAD})"
        return pattern

    # -- inputs (the family's own prompts and processor) ------------------------------

    def query_inputs(self, queries: list[str]) -> dict[str, torch.Tensor]:
        encoder = self.encoder
        items = [encoder._text_item(encoder.recipe.query, q, f"query {i}") for i, q in enumerate(queries)]
        if any(item.image is not None for item in items):  # DSE pairs text with a blank image
            return encoder.image_inputs(
                [item.text for item in items], [item.image for item in items if item.image]
            )
        return encoder.text_inputs([item.text for item in items])

    def page_inputs(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        encoder = self.encoder
        recipe = encoder.recipe
        items = [
            encoder._image_item(recipe.page, recipe.page_text, image, f"page {i}")
            for i, image in enumerate(images)
        ]
        return encoder.image_inputs(
            [item.text for item in items], [item.image for item in items if item.image]
        )

    def embed(self, module: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """``module`` (the trained wrapper of :attr:`module`) on ``inputs``: ``(B, T, D)``
        L2-normalised token vectors (multi-vector; padded rows included, see the mask) or
        ``(B, D)`` (single-vector)."""
        moved = {k: v.to(self.encoder.device) for k, v in inputs.items()}
        if "pixel_values" in moved:
            moved["pixel_values"] = moved["pixel_values"].to(self.encoder.dtype)
        return module(**moved)


def language_model_prefix(module: nn.Module, family: str) -> str:
    """Dotted name of the language model inside an :class:`~mmembed.encoders.vlm.Embedder`."""
    for name, _ in module.named_modules():
        if name.rsplit(".", 1)[-1] in LANGUAGE_MODEL_NAMES:
            return name
    raise UntrainableFamilyError(
        f"the {family} model has no language model module ({' / '.join(LANGUAGE_MODEL_NAMES)}) to put LoRA on"
    )


def refusal(encoder: Encoder) -> UntrainableFamilyError:
    family = encoder.info.family
    if family in NOT_YET:
        why = (
            NOT_YET[family] + "; pick a family mmembed trains (" + ", ".join(sorted(TRAINABLE_FAMILIES)) + ")"
        )
    elif family == "remote_code":
        why = (
            "it runs the checkpoint's own code (trust_remote_code), so mmembed cannot tell which modules "
            "are the language model nor reproduce its training inputs; fine-tune it with its authors' "
            "training scripts, or pick a natively supported family (ColQwen2.5, BiQwen2.5, ColPali, ...)"
        )
    else:
        why = (
            "its encoder is not a vision-language Embedder (Nomic v1.5 text/vision and Omni-Embed-Nemotron "
            "have their own towers); training for it is not implemented yet"
        )
    return UntrainableFamilyError(
        f"the index's model {encoder.info.name!r} (family {family}) cannot be fine-tuned: {why}"
    )
