"""ColModernVBert / BiModernVBert: ModernVBert (SigLIP + ModernBERT, ~250M parameters).

Reproduces colpali-engine 0.3.18's ``ColModernVBert`` / ``BiModernVBert`` and their
processors: Idefics3's page handling (the longest edge resized to the checkpoint's
``size.longest_edge``, square tiles plus one global view, ``image_seq_len`` tokens each),
the page prompt ``<|begin_of_text|>User:<image>Describe the image.<end_of_utterance>\\nAssistant:``,
ten ``<end_of_utterance>`` after each query and left padding. The text model is a
*bidirectional* encoder (ModernBERT), so padding side changes positions and is kept as
the reference has it.

- ``colmodernvbert``: one L2-normalised 128-d ``custom_text_proj`` vector per token.
  Checkpoints: a ``model_type: modernvbert`` config with ``architectures:
  ["ColModernVBert"]`` or a ``custom_text_proj`` in its weights / LoRA adapter
  (``ModernVBERT/colmodernvbert``; weights saved with PEFT's ``base_model.model.`` prefix
  load too, as colpali-engine's key mapping allows).
- ``bimodernvbert``: the attention-masked *mean* of the last hidden states, L2-normalised
  (colpali's default pooling), ``dim`` = the text model's hidden size (768).
  Checkpoints: ``architectures: ["BiModernVBert"]`` (``ModernVBERT/bimodernvbert``).
- ``colmodernvbert_hf``: transformers' own ``ColModernVBertForRetrieval`` layout
  (``model_type: colmodernvbert``, ``vlm.*`` + ``embedding_proj_layer.*``, a
  ``ColModernVBertProcessor``; ``ModernVBERT/colmodernvbert-merged``). The same model;
  transformers' processor is the reference, with its saved prefixes and padding side.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..types import Kind, MMEmbedError
from . import st_visual
from .checkpoint import CheckpointFacts
from .colidefics3 import ColIdefics3Encoder
from .registry import LoadRequest, ModelFamily, register_family
from .vlm import (
    Prompt,
    Recipe,
    build_vlm_encoder,
    has_head,
    is_embedding_adapter,
    processor_folder,
    rename_key,
)

FAMILY_ID = "colmodernvbert"
BI_FAMILY_ID = "bimodernvbert"
HF_FAMILY_ID = "colmodernvbert_hf"
IMAGE_TOKEN = "<image>"
OPTIONS = ("batch_size", "longest_edge", "attn_implementation")

# colpali-engine 0.3.18, ColModernVBertProcessor (transformers' processor has the same defaults).
PAGE_PREFIX = f"<|begin_of_text|>User:{IMAGE_TOKEN}"
PAGE_SUFFIX = "<end_of_utterance>\nAssistant:"
QUERY_AUGMENTATION = "<end_of_utterance>" * 10
RECIPE = Recipe(
    page=Prompt(PAGE_PREFIX, PAGE_SUFFIX, image=True),
    page_text="Describe the image.",
    interleaved=Prompt(PAGE_PREFIX, PAGE_SUFFIX, image=True),
    query=Prompt("", QUERY_AUGMENTATION, image=False),
    text_document=Prompt("", "", image=False),
    image_token=IMAGE_TOKEN,
)

# colpali's classes keep ModernVBertModel under ``model.``; its key mapping also takes weights
# saved with PEFT's prefix. transformers' class names them ``vlm.`` / ``embedding_proj_layer.``.
_RENAMES = (
    (re.compile(r"^base_model\.model\."), ""),
    (re.compile(r"^vlm\."), "model."),
    (re.compile(r"^embedding_proj_layer\."), "custom_text_proj."),
)
_UNUSED = re.compile(r"^(lm_head|head|decoder)\.")


def rename_weight(key: str) -> str | None:
    """Any known ModernVBert retriever key -> :class:`~mmembed.encoders.vlm.Embedder` name."""
    return rename_key(key, _RENAMES, _UNUSED)


class ColModernVBertEncoder(ColIdefics3Encoder):
    """Idefics3's processor, tiles and patch layout over a ModernVBert backbone (left padding)."""


class NativeColModernVBertEncoder(ColIdefics3Encoder):
    """transformers' ``ColModernVBertProcessor``: pads on the side its tokenizer says."""

    def __init__(self, model: nn.Module, processor: Any, *args: Any, **kwargs: Any) -> None:
        side = processor.tokenizer.padding_side
        super().__init__(model, processor, *args, **kwargs)
        processor.tokenizer.padding_side = side


class MeanPooled(nn.Module):
    """BiModernVBert's head: the attention-masked mean of the last hidden states,
    L2-normalised, ``(batch, hidden)``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.model = backbone

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.model(**inputs, return_dict=True).last_hidden_state  # (batch, tokens, hidden)
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
        pooled = ((hidden * mask).sum(dim=1) / mask.sum(dim=1)).float()  # (batch, hidden)
        return pooled / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class _VLMConfig:
    """``ColModernVBertConfig.from_pretrained`` -> its ``vlm_config`` (a ModernVBertConfig)."""

    @staticmethod
    def from_pretrained(path: str) -> Any:
        from transformers import ColModernVBertConfig

        return ColModernVBertConfig.from_pretrained(path).vlm_config


def _image_seq_len(config: Any) -> int:
    vision = config.vision_config
    return int((vision.image_size // vision.patch_size) ** 2 / config.pixel_shuffle_factor**2)


def _apply_longest_edge(processor: Any, options: dict[str, Any]) -> Any:
    if options.get("longest_edge") is not None:
        longest_edge = int(options["longest_edge"])
        tile = processor.image_processor.max_image_size["longest_edge"]
        if longest_edge < tile:
            raise MMEmbedError(f"longest_edge={longest_edge} is below the model's tile size ({tile} pixels)")
        processor.image_processor.size = {"longest_edge": longest_edge}
    return processor


def _colpali_processor(facts: CheckpointFacts, config: Any, options: dict[str, Any]) -> Any:
    from transformers import Idefics3Processor

    processor = Idefics3Processor.from_pretrained(
        str(processor_folder(facts)), image_seq_len=_image_seq_len(config)
    )
    return _apply_longest_edge(processor, options)


def _native_processor(facts: CheckpointFacts, options: dict[str, Any]) -> Any:
    from transformers import ColModernVBertProcessor

    return _apply_longest_edge(ColModernVBertProcessor.from_pretrained(str(processor_folder(facts))), options)


def _native_recipe(processor: Any) -> Recipe:
    """The prompts transformers' processor was saved with (its defaults are colpali's)."""
    query = Prompt(str(processor.query_prefix), str(processor.query_augmentation_token) * 10, image=False)
    page_prompt = str(processor.visual_prompt_prefix)
    if page_prompt == RECIPE.page.render(RECIPE.page_text):
        return replace(RECIPE, query=query)
    if page_prompt.count(IMAGE_TOKEN) != 1:
        raise MMEmbedError(
            f"the processor's visual_prompt_prefix must hold one {IMAGE_TOKEN}: {page_prompt!r}"
        )
    page = Prompt(page_prompt, "", image=True)  # a caption goes after a custom page prompt
    return replace(RECIPE, page=page, interleaved=page, page_text="", query=query)


def _build(request: LoadRequest, family_id: str) -> ColIdefics3Encoder:
    from transformers import ModernVBertConfig, ModernVBertModel

    options = dict(request.options)
    facts = request.facts
    if family_id == HF_FAMILY_ID:
        return build_vlm_encoder(
            request,
            family_id=family_id,
            kind="multi",
            classes=(_VLMConfig, ModernVBertModel),
            rename=rename_weight,
            load_processor=lambda _config: _native_processor(facts, options),
            recipe=_native_recipe,
            encoder_class=NativeColModernVBertEncoder,
            head="embedding_proj_layer weights",
        )
    kind: Kind = "multi" if family_id == FAMILY_ID else "single"
    encoder = build_vlm_encoder(
        request,
        family_id=family_id,
        kind=kind,
        classes=(ModernVBertConfig, ModernVBertModel),
        rename=rename_weight,
        load_processor=lambda config: _colpali_processor(facts, config, options),
        recipe=RECIPE,
        encoder_class=ColModernVBertEncoder,
    )
    if kind == "single":  # mean pooling instead of the shared embedder's last token
        backbone = encoder.model.model
        assert isinstance(backbone, nn.Module)
        encoder.model = MeanPooled(backbone).eval()
    return encoder


def matches(facts: CheckpointFacts) -> bool:
    return facts.model_type == "modernvbert" and ("ColModernVBert" in facts.architectures or has_head(facts))


def matches_bi(facts: CheckpointFacts) -> bool:
    if facts.model_type != "modernvbert" or has_head(facts):
        return False
    return "BiModernVBert" in facts.architectures or is_embedding_adapter(facts)


def matches_hf(facts: CheckpointFacts) -> bool:
    return facts.model_type == "colmodernvbert"


_NOTES = (
    "~250M parameters: sized for CPU. Pages are tiled like ColSmol (checkpoint's "
    "size.longest_edge, override with longest_edge=)."
)

FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=128,
        description="ColModernVBert: ModernVBert (SigLIP + ModernBERT) + custom_text_proj, late interaction",
        matches=matches,
        build=lambda request: _build(request, FAMILY_ID),
        known_checkpoints=("ModernVBERT/colmodernvbert",),
        notes=_NOTES + " LoRA adapters are merged at load time.",
        options=OPTIONS,
    )
)
BI_FAMILY = register_family(
    ModelFamily(
        id=BI_FAMILY_ID,
        kind="single",
        similarity="dot",
        dim=None,
        description="BiModernVBert: ModernVBert, mean-pooled dense vector",
        matches=matches_bi,
        build=lambda request: _build(request, BI_FAMILY_ID),
        known_checkpoints=("ModernVBERT/bimodernvbert",),
        notes=_NOTES + " dim = the text model's hidden size (768); L2-normalised, so dot = cosine.",
        options=OPTIONS,
    )
)
HF_FAMILY = register_family(
    ModelFamily(
        id=HF_FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=128,
        description="ColModernVBert in transformers' ColModernVBertForRetrieval layout",
        matches=matches_hf,
        build=lambda request: _build(st_visual.checked(request), HF_FAMILY_ID),  # ST v6 saves load too
        known_checkpoints=("ModernVBERT/colmodernvbert-merged",),
        notes=_NOTES + " transformers' ColModernVBertProcessor prompts and padding side.",
        options=OPTIONS,
    )
)
