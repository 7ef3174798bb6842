"""transformers' own ColPali and ColQwen2 retrievers: the ``*-hf`` checkpoints.

transformers ships ``ColPaliForRetrieval`` / ``ColQwen2ForRetrieval`` with their processors,
and vidore publishes its checkpoints converted for them (``vidore/colpali-v1.3-hf``,
``vidore/colqwen2-v1.0-hf``): a ``config.json`` with ``model_type: colpali`` / ``colqwen2``
wrapping the VLM's config (``vlm_config``), merged weights (``vlm.*`` and the
``embedding_proj_layer`` head) and the processor files. For these checkpoints transformers
*is* the reference, so they run through those classes and processors unchanged: queries are
the processor's (``"Question: "`` for ColPali, ``"Query: "`` for ColQwen2, then the query and
ten augmentation tokens), pages its fixed visual prompt, every non-padding token one
L2-normalised vector. Text documents take the processor's text path (the query prompt); a
page with its own text has no prompt in these processors and is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch import nn

from ..types import EncoderInfo, MMEmbedError
from . import st_visual
from .checkpoint import CheckpointFacts
from .colpali import square_patch_layout
from .qwen_vl import apply_page_budget, qwen_patch_layout
from .registry import LoadRequest, ModelFamily, register_family
from .runtime import default_attention
from .vlm import DEFAULT_BATCH_SIZE, Item, Prompt, Recipe, VLMEncoder, processor_folder, skipped_weight_init
from .weights import merge_lora

if TYPE_CHECKING:
    from ..explain import PatchLayout

logger = logging.getLogger(__name__)

_PLAIN = Prompt("", "", image=False)


class RetrievalModel(nn.Module):
    """A ``*ForRetrieval`` model as :class:`~mmembed.encoders.vlm.VLMEncoder` runs it: inputs
    in, ``(batch, tokens, dim)`` L2-normalised embeddings out (padding rows are zero)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**inputs).embeddings


class HFRetrievalEncoder(VLMEncoder):
    """The processor's ``process_queries`` / ``process_images`` in, embeddings out."""

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return _model_inputs(self.processor.process_queries(texts, return_tensors="pt"))

    def image_inputs(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        return _model_inputs(self.processor.process_images(images, return_tensors="pt"))

    def image_cost(self, image: Image.Image) -> int:
        image_processor = self.image_processor
        if hasattr(image_processor, "merge_size"):  # Qwen2-VL: dynamic resolution
            patches = int(image_processor.get_number_of_image_patches(image.height, image.width))
            return patches // image_processor.merge_size**2
        return int(self.processor.image_seq_length)  # PaliGemma: one fixed square

    def patch_layout(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> PatchLayout:
        """ColQwen2: Qwen2-VL's merged grid; ColPali: PaliGemma's square."""
        is_patch = ids == self.processor.tokenizer.convert_tokens_to_ids(self.recipe.image_token)
        if "image_grid_thw" in inputs:
            merge = int(self.image_processor.merge_size)
            return qwen_patch_layout(inputs, is_patch, merge, self.info.family)
        return square_patch_layout(is_patch, int(self.processor.image_seq_length), self.info.family)

    def _document_item(self, doc: object, what: str) -> Item:
        if isinstance(doc, tuple):
            raise MMEmbedError(
                f"{what} is an (image, text) pair, but {self.info.family} checkpoints have no prompt for "
                "a page with its own text (transformers' processor encodes a page image alone); "
                "pass the image alone, or the text alone"
            )
        return super()._document_item(doc, what)


def _model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}  # labels are for training


def _wrapped_name(key: str) -> str:
    """An adapter weight's name in :class:`RetrievalModel`: adapters over the wrapper (``mmembed
    train``) say ``model.vlm...``, adapters over the ``*ForRetrieval`` class itself ``vlm...``."""
    return key if key.startswith("model.") else f"model.{key}"


def _build(request: LoadRequest, *, family_id: str, model_class: str, processor_class: str) -> VLMEncoder:
    import transformers

    facts = request.facts
    st_visual.check_wrapper(facts)  # a sentence-transformers v6 save of this model loads too
    logger.info("loading %s as %s through transformers' %s", request.name, family_id, model_class)
    attn = request.options.get("attn_implementation") or default_attention(request.device)
    with skipped_weight_init():  # from_pretrained also swaps torch's init functions
        model, loading = getattr(transformers, model_class).from_pretrained(
            str(facts.model_path), dtype=request.dtype, attn_implementation=attn, output_loading_info=True
        )
    missing = sorted(loading.get("missing_keys") or ())
    if missing:
        raise MMEmbedError(
            f"{facts.name}: the checkpoint lacks {len(missing)} weight(s) of {model_class}, e.g. "
            f"{', '.join(missing[:3])}; it is incomplete or not a {family_id} checkpoint"
        )
    processor = getattr(transformers, processor_class).from_pretrained(str(processor_folder(facts)))
    # max_pixels / max_num_visual_tokens: only ColQwen2 accepts them (the registry refuses
    # options a family does not list), so for ColPali this changes nothing.
    apply_page_budget(processor.image_processor, request.options)
    recipe = Recipe(
        page=Prompt("", "", image=True),
        page_text="",
        interleaved=Prompt("", "", image=True),
        query=_PLAIN,
        text_document=_PLAIN,
        image_token=processor.image_token,
    )
    info = EncoderInfo(
        name=request.name,
        family=family_id,
        kind="multi",
        dim=int(model.config.embedding_dim),
        similarity="maxsim",
        revision=request.revision,
    )
    wrapped = RetrievalModel(model)
    if facts.adapter is not None:  # merged like every family's (e.g. what `mmembed train` writes)
        merge_lora(wrapped, facts.adapter, _wrapped_name)
    return HFRetrievalEncoder(
        wrapped.eval().requires_grad_(False).to(request.device),
        processor,
        recipe,
        info=info,
        device=request.device,
        dtype=request.dtype,
        batch_size=int(request.options.get("batch_size") or DEFAULT_BATCH_SIZE),
    )


def _register(
    family_id: str,
    *,
    model_type: str,
    name: str,
    known_checkpoints: tuple[str, ...],
    notes: str,
    options: tuple[str, ...],
) -> ModelFamily:
    """A family for ``model_type`` checkpoints run by transformers' ``{name}ForRetrieval`` /
    ``{name}Processor``."""

    def matches(facts: CheckpointFacts) -> bool:
        return facts.model_type == model_type

    def build(request: LoadRequest) -> VLMEncoder:
        return _build(
            request,
            family_id=family_id,
            model_class=f"{name}ForRetrieval",
            processor_class=f"{name}Processor",
        )

    return register_family(
        ModelFamily(
            id=family_id,
            kind="multi",
            similarity="maxsim",
            dim=128,
            description=f"{name}, transformers-native ({name}ForRetrieval), late interaction",
            matches=matches,
            build=build,
            known_checkpoints=known_checkpoints,
            notes=notes,
            options=options,
        )
    )


COLPALI_HF = _register(
    "colpali_hf",
    model_type="colpali",
    name="ColPali",
    known_checkpoints=("vidore/colpali-v1.3-hf", "vidore/colpali-v1.2-hf"),
    notes="Pages resized to 448x448 (1024 image tokens); merged weights, ~6 GB in bfloat16.",
    options=("batch_size", "attn_implementation"),
)
COLQWEN2_HF = _register(
    "colqwen2_hf",
    model_type="colqwen2",
    name="ColQwen2",
    known_checkpoints=("vidore/colqwen2-v1.0-hf",),
    notes="2B: ~4.4 GB in bfloat16; page budget from the checkpoint's processor, overridable.",
    options=("batch_size", "max_pixels", "max_num_visual_tokens", "attn_implementation"),
)
