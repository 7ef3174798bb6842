"""ColIdefics3 (ColSmol): Idefics3 / SmolVLM + a 128-d linear head, one vector per token.

Reproduces colpali-engine 0.3.18's ``ColIdefics3`` / ``ColIdefics3Processor``: the page
prompt ``<|im_start|>User:<image>Describe the image.<end_of_utterance>\\nAssistant:``, ten
``<end_of_utterance>`` after each query, left padding, and Idefics3's page handling (the
longest edge resized to the checkpoint's ``size.longest_edge``, then split into square
tiles plus one global view, ``image_seq_len`` tokens each). ``longest_edge=`` overrides the
page budget. Every non-padding token is a vector.

Checkpoints: an Idefics3 ``config.json`` with ``architectures: ["ColIdefics3"]`` or a
top-level ``linear`` head in its weights, or a PEFT LoRA adapter bringing one
(``vidore/colSmol-256M`` / ``-500M``).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from ..types import MMEmbedError
from .checkpoint import CheckpointFacts
from .registry import LoadRequest, ModelFamily, register_family
from .vlm import (
    Prompt,
    Recipe,
    VLMEncoder,
    build_vlm_encoder,
    has_head,
    processor_folder,
    rename_key,
)

if TYPE_CHECKING:
    from ..explain import PatchLayout

FAMILY_ID = "colidefics3"
IMAGE_TOKEN = "<image>"
OPTIONS = ("batch_size", "longest_edge", "attn_implementation")

# colpali-engine 0.3.18, ColIdefics3Processor.
PAGE_PREFIX = f"<|im_start|>User:{IMAGE_TOKEN}"
PAGE_SUFFIX = "<end_of_utterance>\nAssistant:"
RECIPE = Recipe(
    page=Prompt(PAGE_PREFIX, PAGE_SUFFIX, image=True),
    page_text="Describe the image.",
    interleaved=Prompt(PAGE_PREFIX, PAGE_SUFFIX, image=True),
    query=Prompt("", "<end_of_utterance>" * 10, image=False),
    text_document=Prompt("", "", image=False),
    image_token=IMAGE_TOKEN,
)

# colpali's ColIdefics3 keeps the Idefics3Model under ``model.`` (the layout of
# Idefics3ForConditionalGeneration checkpoints too) and names its head ``linear``.
_RENAMES = ((re.compile(r"^linear\."), "custom_text_proj."),)
_UNUSED = re.compile(r"^(lm_head|model\.lm_head)\.")


def rename_weight(key: str) -> str | None:
    """Any known ColIdefics3 / Idefics3 checkpoint key -> :class:`~mmembed.encoders.vlm.Embedder` name."""
    return rename_key(key, _RENAMES, _UNUSED)


class ColIdefics3Encoder(VLMEncoder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processor.tokenizer.padding_side = "left"

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.processor(text=texts, return_tensors="pt", padding="longest"))

    def image_inputs(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        # pixel_values: (batch, max_tiles, 3, tile, tile); pixel_attention_mask marks real pixels.
        return dict(self.processor(text=texts, images=images, return_tensors="pt", padding="longest"))

    def image_cost(self, image: Image.Image) -> int:
        """Tiles after resizing the longest edge (plus the global view) x tokens per tile."""
        longest = self.image_processor.size["longest_edge"]
        tile = self.image_processor.max_image_size["longest_edge"]
        scale = longest / max(image.width, image.height)
        tiles = math.ceil(image.height * scale / tile) * math.ceil(image.width * scale / tile)
        return (tiles + (1 if tiles > 1 else 0)) * int(self.processor.image_seq_len)

    def patch_layout(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> PatchLayout:
        tokenizer = self.processor.tokenizer
        is_patch = ids == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)  # (page_tokens,)
        tiles = [(int(r), int(c)) for r, c in _TILE_TAG.findall(tokenizer.decode(ids))]
        return tiled_patch_layout(is_patch, tiles, int(self.processor.image_seq_len), self.info.family)


_TILE_TAG = re.compile(r"<row_(\d+)_col_(\d+)>")


def tiled_patch_layout(
    is_patch: torch.Tensor, tiles: list[tuple[int, int]], image_seq_len: int, family: str
) -> PatchLayout:
    """Idefics3 cuts the resized page into ``rows x cols`` tiles (1-based ``tiles``, in the
    order of the prompt's ``<row_r_col_c>`` tags), then adds a global view of the whole
    page; each view is ``image_seq_len`` tokens, a ``side x side`` row-major grid after the
    pixel shuffle. A page small enough for one tile has only the global view."""
    from ..explain import PatchLayout, PatchView, whole_page

    side = math.isqrt(image_seq_len)
    flags = is_patch.tolist()
    starts = [i for i, flag in enumerate(flags) if flag and (i == 0 or not flags[i - 1])]
    runs_ok = all(flags[s : s + image_seq_len] == [True] * image_seq_len for s in starts)
    if (
        side * side != image_seq_len
        or len(starts) != len(tiles) + 1
        or sum(flags) != len(starts) * image_seq_len
        or not runs_ok
    ):
        raise MMEmbedError(
            f"{family}: the page's image tokens ({sum(flags)} in {len(starts)} runs) do not match "
            f"{len(tiles)} tiles + a global view of {image_seq_len} tokens; similarity maps cannot be laid out"
        )
    if not tiles:
        return whole_page(starts[0], side, side)
    rows, cols = max(r for r, _ in tiles), max(c for _, c in tiles)
    views = [
        PatchView(start, side, side, (r - 1) * side, (c - 1) * side, side, side)
        for start, (r, c) in zip(starts, tiles, strict=False)
    ]
    views.append(PatchView(starts[-1], side, side, 0, 0, rows * side, cols * side))  # the global view
    return PatchLayout(rows * side, cols * side, tuple(views))


def _load_processor(facts: CheckpointFacts, config: Any, options: dict[str, Any]) -> Any:
    from transformers import Idefics3Processor

    vision = config.vision_config
    # Tokens per tile, from the model itself (colpali's processor defaults to 64 when unset).
    image_seq_len = int((vision.image_size // vision.patch_size) ** 2 / config.scale_factor**2)
    processor = Idefics3Processor.from_pretrained(str(processor_folder(facts)), image_seq_len=image_seq_len)
    if options.get("longest_edge") is not None:
        longest_edge = int(options["longest_edge"])
        tile = processor.image_processor.max_image_size["longest_edge"]
        if longest_edge < tile:
            raise MMEmbedError(f"longest_edge={longest_edge} is below the model's tile size ({tile} pixels)")
        processor.image_processor.size = {"longest_edge": longest_edge}
    return processor


def build(request: LoadRequest) -> ColIdefics3Encoder:
    from transformers import Idefics3Config, Idefics3Model

    options = dict(request.options)
    return build_vlm_encoder(
        request,
        family_id=FAMILY_ID,
        kind="multi",
        classes=(Idefics3Config, Idefics3Model),
        rename=rename_weight,
        load_processor=lambda config: _load_processor(request.facts, config, options),
        recipe=RECIPE,
        encoder_class=ColIdefics3Encoder,
        head="linear / custom_text_proj head",
    )


def _has_top_level_linear(facts: CheckpointFacts) -> bool:
    names = set(facts.weight_names) | {
        n.removeprefix("base_model.model.") for n in (facts.adapter.weight_names if facts.adapter else ())
    }
    return any(n.startswith("linear.") for n in names)


def matches(facts: CheckpointFacts) -> bool:
    return facts.model_type == "idefics3" and (
        "ColIdefics3" in facts.architectures or _has_top_level_linear(facts) or has_head(facts)
    )


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=128,
        description="ColIdefics3 / ColSmol: SmolVLM + linear head, late interaction",
        matches=matches,
        build=build,
        known_checkpoints=("vidore/colSmol-256M", "vidore/colSmol-500M"),
        notes=(
            "Small enough for CPU use (256M / 500M parameters). Pages are tiled (checkpoint's "
            "size.longest_edge, override with longest_edge=); LoRA adapters are merged at load time."
        ),
        options=OPTIONS,
    )
)
