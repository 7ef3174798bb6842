"""Which served families can be fine-tuned, and how a family's encoder is trained.

Every vision-language retriever mmembed runs natively (ColQwen2 / 2.5 / 3 / 3.5, BiQwen2 /
2.5 / 3.5, DSE, ColPali, ColIdefics3 / ColSmol, ColModernVBert / BiModernVBert, ColGemma3 /
BiGemma3, ColQwen2.5-Omni, Nemotron ColEmbed and transformers' own ColPali / ColQwen2 /
ColModernVBert classes) is one :class:`~mmembed.encoders.vlm.VLMEncoder`: a VLM backbone
plus a retrieval head, fed by the family's own prompts and processor. Training reuses
exactly that path, so what is trained is what is served: LoRA on every linear layer of the
language model (``q/k/v/o/gate/up/down_proj`` in Qwen / Gemma / Llama, ``Wqkv / Wo / Wi`` in
ModernBERT) and on the projection head when there is one; the vision and audio towers and
the connector stay frozen. Omni-Embed-Nemotron (a Qwen2.5-Omni Thinker, not a VLMEncoder)
trains the same way on its own chat-template inputs (text queries, page images), its vision
and audio towers frozen. Nomic Embed v1.5 (two towers, no VLM) trains LoRA on its text
tower, the vision tower frozen (:mod:`mmembed.finetune.nomic`, a subclass overriding the
hooks below: inputs, what is written, how it loads back).

Families built differently are refused, each with its reason in :data:`REFUSED` (the
registry test fails when a new family is neither trained nor listed there).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..encoders.base import Encoder
from ..encoders.checkpoint import CheckpointFacts
from ..encoders.hf_retrieval import RetrievalModel
from ..encoders.nemotron_colembed import FINAL_NORM as NEMOTRON_FINAL_NORM
from ..encoders.nemotron_colembed import BidirectionalEmbedder
from ..encoders.omni_embed import OmniEmbedEncoder
from ..encoders.vlm import VLMEncoder
from ..types import MMEmbedError

LANGUAGE_MODEL_NAMES = ("language_model", "text_model")
"""Attribute names transformers gives the language model inside a VLM backbone."""
HEADS = ("custom_text_proj", "embedding_proj_layer")
"""The retrieval head: colpali-engine's name, transformers' ``*ForRetrieval`` name."""

REFUSED: dict[str, str] = {
    "remote_code": (
        "it runs its own code (trust_remote_code), so mmembed cannot tell which of its modules "
        "are the language model nor reproduce its training inputs; fine-tune it with its authors' "
        "training scripts, or pick a natively supported family (ColQwen2.5, BiQwen2.5, ColPali, ...)"
    ),
    "st_multi_vector": (
        "sentence-transformers text checkpoints index text, and mmembed train re-encodes the "
        "index's pages as images; train them with sentence-transformers' own MultiVectorEncoder "
        "trainer"
    ),
    **{
        family: (
            f"{name} ColBERT checkpoints index text, and mmembed train re-encodes the index's pages "
            "as images; train them with PyLate (or sentence-transformers' MultiVectorEncoder trainer)"
        )
        for family, name in (("pylate_colbert", "PyLate"), ("stanford_colbert", "Stanford"))
    },
}
"""Families ``mmembed train`` refuses, with why (shown in the error and in docs/fine-tune.md)."""


class UntrainableFamilyError(MMEmbedError):
    """The index's model family cannot be fine-tuned by ``mmembed train``."""


class TrainableEncoder:
    """An encoder's trainable module and its inputs (see module docstring)."""

    def __init__(self, encoder: Encoder) -> None:
        if not isinstance(encoder, VLMEncoder | OmniEmbedEncoder) or encoder.info.family in REFUSED:
            raise refusal(encoder)
        self.encoder = encoder
        self.module: nn.Module = encoder.model
        self.kind = encoder.info.kind
        self.language_model = language_model_prefix(self.module, encoder.info.family)

    def head(self) -> str | None:
        """Name of the retrieval head module, if the family has one."""
        for name, _ in self.module.named_modules():
            if name.rsplit(".", 1)[-1] in HEADS:
                return name
        return None

    def lora_projections(self) -> list[str]:
        """Leaf names of the language model's linear layers (what LoRA adapts)."""
        prefix = self.language_model + "."
        return sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in self.module.named_modules()
                if name.startswith(prefix) and isinstance(module, nn.Linear)
            }
        )

    def lora_target_regex(self) -> str:
        """PEFT ``target_modules`` (full-match regex): the language model's linear layers and
        the retrieval head; never a vision or audio tower nor the connector."""
        projections = "|".join(re.escape(p) for p in self.lora_projections())
        pattern = rf"{re.escape(self.language_model)}\..*\.({projections})"
        head = self.head()
        if self.kind == "multi" and head is not None:
            pattern = rf"({pattern}|{re.escape(head)})"
        return pattern

    def frozen_towers(self) -> list[str]:
        """The backbone's modules outside the language model: vision / audio towers and
        connectors, frozen during training."""
        parent, _, _ = self.language_model.rpartition(".")
        backbone = self.module.get_submodule(parent) if parent else self.module
        head = self.head()
        return [
            f"{parent}.{name}" if parent else name
            for name, child in backbone.named_children()
            if (f"{parent}.{name}" if parent else name) not in (self.language_model, head)
            and any(True for _ in child.parameters())
        ]

    def checkpoint_state(self, module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``module``'s state dict -> the weights a checkpoint of the family holds (what
        ``--merge`` writes). Most families load their module's own names; transformers'
        ``*ForRetrieval`` checkpoints lack the serving wrapper's ``model.`` prefix, and
        Nemotron ColEmbed's checkpoint keeps the final norm its served module bypasses."""
        if isinstance(module, RetrievalModel):
            return {k.removeprefix("model."): v for k, v in state.items()}
        if isinstance(module, BidirectionalEmbedder) and module.skipped_norm_weight is not None:
            return {**state, NEMOTRON_FINAL_NORM: module.skipped_norm_weight}
        return state

    def tower_module(self, name: str) -> nn.Module:
        """A frozen tower named by :meth:`frozen_towers`."""
        return self.module.get_submodule(name)

    # -- what a finished run writes and how it loads back (Nomic overrides these) -------

    def base_checkpoint(self) -> tuple[str, str | None]:
        """(name, revision) of the checkpoint the adapter applies to (its processor files too)."""
        return self.encoder.info.name, self.encoder.info.revision

    def copy_processor_files(self, facts: CheckpointFacts, folder: Path) -> None:
        """The processor files an adapter folder carries."""
        from . import output

        output.copy_processor_files(facts, folder)

    def write_merged(self, module: nn.Module, facts: CheckpointFacts, folder: Path) -> Path:
        """``--merge``: ``module`` (LoRA folded in) as a full checkpoint of the family."""
        from . import output

        return output.write_merged(module, facts, folder, to_checkpoint=self.checkpoint_state)

    def write_untrained_base(self, peft_model: Any, facts: CheckpointFacts, folder: Path) -> Path:
        """The model training started from, when it was itself a LoRA adapter."""
        from . import output

        return output.write_untrained_base(peft_model, facts, folder, to_checkpoint=self.checkpoint_state)

    def reload(self, out: str | os.PathLike[str], *, device: torch.device, dtype: torch.dtype) -> Encoder:
        """The encoder a finished run's adapter folder loads into, with the family options
        the index recorded; never cached (its folder is not finished yet)."""
        from ..encoders.cache import _load
        from ..encoders.registry import recorded_options

        return _load(str(out), None, None, device, dtype, recorded_options(self.encoder.info))

    def checkpointed_backbone(self) -> Any:
        """The transformers model ``--gradient-checkpointing`` applies to (``None``: none)."""
        return getattr(self.module, "model", None)

    def index_arguments(self, out: Path) -> list[str]:
        """``mmembed index`` arguments that load the trained model (the CLI's "next" hint)."""
        return ["--model", str(out)]

    # -- inputs (the family's own prompts and processor) ------------------------------

    def query_inputs(self, queries: list[str]) -> dict[str, torch.Tensor]:
        encoder = self.encoder
        if isinstance(encoder, OmniEmbedEncoder):
            return encoder.query_inputs(queries)
        items = [encoder._text_item(encoder.recipe.query, q, f"query {i}") for i, q in enumerate(queries)]
        if any(item.image is not None for item in items):  # DSE pairs text with a blank image
            return encoder.image_inputs(
                [item.text for item in items], [item.image for item in items if item.image]
            )
        return encoder.text_inputs([item.text for item in items])

    def page_inputs(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        encoder = self.encoder
        if isinstance(encoder, OmniEmbedEncoder):
            return encoder.page_inputs(images)
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
        moved = {
            k: v.to(self.encoder.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()
        }
        for key in ("pixel_values", "pixel_values_videos", "input_features"):
            if key in moved:
                moved[key] = moved[key].to(self.encoder.dtype)
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
    return refused_family(encoder.info.name, encoder.info.family)


def refused_family(name: str, family: str) -> UntrainableFamilyError:
    why = REFUSED.get(family) or (
        "its encoder is not a vision-language encoder (VLMEncoder) with a language model to put LoRA on"
    )
    return UntrainableFamilyError(f"the index's model {name!r} (family {family}) cannot be fine-tuned: {why}")
