"""What the Qwen-VL retrievers share: Qwen2-VL / Qwen2.5-VL / Qwen3-VL / Qwen3.5 backbones, weight
layouts, the processor call and the page budget.

The Qwen-VL retrievers of colpali-engine 0.3.18 (ColQwen2, ColQwen2.5, ColQwen3, BiQwen2,
BiQwen2.5) and the DSE models differ only in the backbone generation, the head (128/320-d
``custom_text_proj`` per token, or the last token's state) and the prompts; a family module
states those and calls :func:`build_encoder`. Pages keep the checkpoint's own
image-processor limits unless ``max_pixels`` / ``max_num_visual_tokens`` is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
from PIL import Image

from ..types import Kind, MMEmbedError
from .checkpoint import CheckpointFacts
from .registry import LoadRequest, ModelFamily, register_family
from .vlm import (
    Prompt,
    Recipe,
    VLMEncoder,
    build_vlm_encoder,
    has_head,
    is_embedding_adapter,
    processor_folder,
    rename_key,
)

if TYPE_CHECKING:
    from ..explain import PatchLayout

__all__ = [
    "COLPALI_PAGE_PREFIX",
    "COLPALI_PAGE_SUFFIX",
    "COLPALI_QUERY_AUGMENTATION",
    "COLPALI_RECIPE",
    "OPTIONS",
    "Prompt",
    "QwenVLEncoder",
    "Recipe",
    "apply_page_budget",
    "build_encoder",
    "dse_resize",
    "has_head",
    "is_embedding_adapter",
    "is_generation",
    "register_qwen_vl_family",
    "rename_weight",
]

Generation = Literal["qwen2", "qwen2_5", "qwen3", "qwen3_5"]

MODEL_TYPES: dict[Generation, str] = {
    "qwen2": "qwen2_vl",
    "qwen2_5": "qwen2_5_vl",
    "qwen3": "qwen3_vl",
    "qwen3_5": "qwen3_5",
}
IMAGE_TOKEN = "<|image_pad|>"
# colpali-engine 0.3.18's ColQwen2 / ColQwen2.5 / ColQwen3 (and Bi*) processors.
COLPALI_PAGE_PREFIX = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
COLPALI_PAGE_SUFFIX = "<|im_end|><|endoftext|>"
COLPALI_QUERY_AUGMENTATION = "<|endoftext|>" * 10
OPTIONS = ("batch_size", "max_pixels", "max_num_visual_tokens", "attn_implementation")

COLPALI_RECIPE = Recipe(
    page=Prompt(COLPALI_PAGE_PREFIX, COLPALI_PAGE_SUFFIX, image=True),
    page_text="Describe the image.",
    interleaved=Prompt(COLPALI_PAGE_PREFIX, COLPALI_PAGE_SUFFIX, image=True),
    query=Prompt("", COLPALI_QUERY_AUGMENTATION, image=False),
    text_document=Prompt("", "", image=False),
    image_token=IMAGE_TOKEN,
)

# Checkpoint key layouts -> Embedder names (``model.`` = the *VLModel backbone):
# transformers 5 (``model.language_model.*``, ``model.visual.*``), the original Qwen2 /
# Qwen2.5-VL layout (``model.layers.*``, ``visual.*``) and colpali 0.3.18's classes, which
# subclass the *VLModel (``language_model.*``, ``visual.*``).
_RENAMES = (
    (re.compile(r"^model\.(language_model|visual)\."), r"model.\1."),
    (re.compile(r"^model\.(layers|embed_tokens|norm)\."), r"model.language_model.\1."),
    (re.compile(r"^(language_model|visual)\."), r"model.\1."),
)
_UNUSED = re.compile(r"^(lm_head|model\.lm_head)\.")


def rename_weight(key: str) -> str | None:
    """Any known Qwen-VL retriever checkpoint key -> :class:`~mmembed.encoders.vlm.Embedder` name."""
    return rename_key(key, _RENAMES, _UNUSED)


def text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Rope positions counted from each sequence's first real token, so that a left-padded
    text gets the same positions whatever else is in its batch. ``(batch, tokens)``."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class QwenVLEncoder(VLMEncoder):
    """Any Qwen-VL retriever: left padding, dynamic-resolution pages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processor.tokenizer.padding_side = "left"

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.processor(text=texts, return_tensors="pt", padding="longest")
        mask = batch["attention_mask"]
        return {"input_ids": batch["input_ids"], "attention_mask": mask, "position_ids": text_positions(mask)}

    def image_inputs(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        batch = self.processor(text=texts, images=images, return_tensors="pt", padding="longest")
        return dict(batch)  # pixel_values: (total_patches, patch_dim)

    def image_cost(self, image: Image.Image) -> int:
        patches = int(self.image_processor.get_number_of_image_patches(image.height, image.width))
        return patches // self.image_processor.merge_size**2

    def patch_layout(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> PatchLayout:
        image_token = self.processor.tokenizer.convert_tokens_to_ids(self.recipe.image_token)
        return qwen_patch_layout(
            inputs, ids == image_token, int(self.image_processor.merge_size), self.info.family
        )


def qwen_patch_layout(
    inputs: Mapping[str, torch.Tensor], is_patch: torch.Tensor, merge: int, family: str
) -> PatchLayout:
    """Each visual token (``merge``² patches merged) is one cell of a ``(grid_h / merge,
    grid_w / merge)`` grid in row-major order over the whole resized page; ``is_patch``
    ``(page_tokens,)`` marks the visual tokens."""
    from ..explain import run_start, whole_page

    _, grid_h, grid_w = (int(v) for v in inputs["image_grid_thw"][0])
    rows, cols = grid_h // merge, grid_w // merge
    return whole_page(run_start(is_patch, rows * cols, family), rows, cols)


# -- loading ------------------------------------------------------------------------------


def _set_pixel_limits(image_processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    if min_pixels is not None:
        image_processor.size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        if int(max_pixels) < image_processor.size["shortest_edge"]:
            raise MMEmbedError(
                f"max_pixels={max_pixels} is below the image processor's min_pixels "
                f"({image_processor.size['shortest_edge']})"
            )
        image_processor.size["longest_edge"] = int(max_pixels)


def load_processor(
    facts: CheckpointFacts, generation: Generation, recipe: Recipe, options: dict[str, Any]
) -> Any:
    """The checkpoint's processor with the page budget asked for: ``max_pixels`` or
    ``max_num_visual_tokens`` (visual tokens after merging) override the checkpoint's limit."""
    import transformers

    # colpali-engine's processors are Qwen2VLProcessor / Qwen3VLProcessor subclasses.
    processor_class = (
        transformers.Qwen3VLProcessor if generation in ("qwen3", "qwen3_5") else transformers.Qwen2VLProcessor
    )
    processor = processor_class.from_pretrained(str(processor_folder(facts)))
    if recipe.pixel_limits is not None:
        _set_pixel_limits(processor.image_processor, *recipe.pixel_limits)
    apply_page_budget(processor.image_processor, options)
    return processor


def apply_page_budget(image_processor: Any, options: Mapping[str, Any]) -> None:
    """``max_pixels`` or ``max_num_visual_tokens`` (visual tokens after merging), if given,
    replace the image processor's own upper limit."""
    max_pixels = options.get("max_pixels")
    if options.get("max_num_visual_tokens") is not None:
        side = image_processor.patch_size * image_processor.merge_size
        max_pixels = int(options["max_num_visual_tokens"]) * side * side
    _set_pixel_limits(image_processor, None, max_pixels)


def _backbone_classes(generation: Generation) -> tuple[Any, Any]:
    import transformers

    classes: dict[str, tuple[Any, Any]] = {
        "qwen2": (transformers.Qwen2VLConfig, transformers.Qwen2VLModel),
        "qwen2_5": (transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLModel),
        "qwen3": (transformers.Qwen3VLConfig, transformers.Qwen3VLModel),
        "qwen3_5": (transformers.Qwen3_5Config, transformers.Qwen3_5Model),
    }
    return classes[generation]


def build_encoder(
    request: LoadRequest,
    *,
    family_id: str,
    generation: Generation,
    kind: Kind,
    recipe: Recipe,
    encoder_class: type[QwenVLEncoder] = QwenVLEncoder,
) -> QwenVLEncoder:
    """Everything a Qwen-VL family's ``build`` does; the family passes its constants."""
    options = dict(request.options)
    return build_vlm_encoder(
        request,
        family_id=family_id,
        kind=kind,
        classes=_backbone_classes(generation),
        rename=rename_weight,
        load_processor=lambda _config: load_processor(request.facts, generation, recipe, options),
        recipe=recipe,
        encoder_class=encoder_class,
    )


def register_qwen_vl_family(
    family_id: str,
    *,
    generation: Generation,
    kind: Kind,
    matches: Callable[[CheckpointFacts], bool],
    description: str,
    dim: int | None = None,
    recipe: Recipe = COLPALI_RECIPE,
    known_checkpoints: tuple[str, ...] = (),
    notes: str = "",
) -> ModelFamily:
    """Register a Qwen-VL family built by :func:`build_encoder` (multi-vector families score
    with MaxSim, single-vector ones with dot products of L2-normalised vectors)."""

    def build(request: LoadRequest) -> QwenVLEncoder:
        return build_encoder(request, family_id=family_id, generation=generation, kind=kind, recipe=recipe)

    return register_family(
        ModelFamily(
            id=family_id,
            kind=kind,
            similarity="maxsim" if kind == "multi" else "dot",
            dim=dim,
            description=description,
            matches=matches,
            build=build,
            known_checkpoints=known_checkpoints,
            notes=notes,
            options=OPTIONS,
        )
    )


# -- matching and the DSE resize ----------------------------------------------------------


def is_generation(facts: CheckpointFacts, generation: Generation) -> bool:
    return facts.model_type == MODEL_TYPES[generation]


def _to_grid(value: float, factor: int, how: Callable[[float], float]) -> int:
    return int(how(value / factor)) * factor


def dse_resize(image: Image.Image, image_processor: Any) -> Image.Image:
    """The DSE models' own page resize (PIL bicubic onto the 28-pixel grid, within the
    processor's pixel limits), done before the processor sees the page."""
    factor = image_processor.patch_size * image_processor.merge_size
    min_pixels, max_pixels = image_processor.size["shortest_edge"], image_processor.size["longest_edge"]
    height, width = image.height, image.width
    h_bar = max(factor, _to_grid(height, factor, round))
    w_bar = max(factor, _to_grid(width, factor, round))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar, w_bar = _to_grid(height / beta, factor, math.floor), _to_grid(width / beta, factor, math.floor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = _to_grid(height * beta, factor, math.ceil), _to_grid(width * beta, factor, math.ceil)
    return image.resize((w_bar, h_bar))
