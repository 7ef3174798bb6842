"""ColPali: PaliGemma + ``custom_text_proj`` (128-d), one L2-normalised vector per token.

Reproduces colpali-engine 0.3.18's ``ColPali`` / ``ColPaliProcessor``: pages are resized to
the checkpoint's fixed square (448 px, 1024 image tokens for the published models) behind
the prompt ``<image><bos>Describe the image.`` with PaliGemma's bidirectional prefix
attention; queries are ``<bos>`` + query + ten ``<pad>`` tokens through the tokenizer alone,
padded on the side the checkpoint's tokenizer says. Every non-padding token is a vector.
There is no page budget to tune: PaliGemma always sees one fixed-size image.

Checkpoints: a PaliGemma ``config.json`` with ``architectures: ["ColPali"]`` or a
``custom_text_proj`` in its weights, or a PEFT LoRA adapter bringing one
(``vidore/colpali-v1.2`` / ``-v1.3`` over ``vidore/colpaligemma-3b-pt-448-base``).
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

FAMILY_ID = "colpali"
IMAGE_TOKEN = "<image>"
OPTIONS = ("batch_size", "attn_implementation")

# colpali-engine 0.3.18, ColPaliProcessor. Its query augmentation token is the tokenizer's
# pad token, filled in at load time (see ColPaliEncoder).
RECIPE = Recipe(
    page=Prompt(f"{IMAGE_TOKEN}<bos>", "", image=True),
    page_text="Describe the image.",
    interleaved=Prompt(f"{IMAGE_TOKEN}<bos>", "", image=True),
    query=Prompt("", "", image=False),
    text_document=Prompt("", "", image=False),
    image_token=IMAGE_TOKEN,
)

# Checkpoint layouts -> Embedder names (``model.`` = PaliGemmaModel): colpali's ColPali class
# keeps a PaliGemmaForConditionalGeneration under ``model.``; saved on transformers 4.4x its
# language model is ``model.language_model.model.*``, on transformers 5
# ``model.model.language_model.*``. Plain PaliGemma checkpoints (transformers 5 layout) are
# ``model.language_model.*``.
_RENAMES = (
    (re.compile(r"^model\.model\.(language_model|vision_tower|multi_modal_projector)\."), r"model.\1."),
    (re.compile(r"^model\.language_model\.model\."), "model.language_model."),
    (re.compile(r"^language_model\.model\."), "model.language_model."),
    (re.compile(r"^(vision_tower|multi_modal_projector)\."), r"model.\1."),
)
_UNUSED = re.compile(r"^(lm_head|model\.lm_head|model\.language_model\.lm_head|language_model\.lm_head)\.")


def rename_weight(key: str) -> str | None:
    """Any known ColPali / PaliGemma checkpoint key -> :class:`~mmembed.encoders.vlm.Embedder` name."""
    return rename_key(key, _RENAMES, _UNUSED)


class ColPaliEncoder(VLMEncoder):
    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        # As ColPaliProcessor.process_texts: the tokenizer alone, <bos> written out.
        tokenizer = self.processor.tokenizer
        batch = tokenizer(
            [tokenizer.bos_token + text for text in texts],
            return_token_type_ids=False,
            return_tensors="pt",
            padding="longest",
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def image_inputs(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        batch = self.processor(text=texts, images=images, return_tensors="pt", padding="longest")
        # token_type_ids mark the prefix PaliGemma attends to bidirectionally; labels are for training.
        return {k: v for k, v in batch.items() if k != "labels"}

    def image_cost(self, image: Image.Image) -> int:
        return int(self.processor.image_seq_length)  # every page is resized to the same square

    def patch_layout(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> PatchLayout:
        image_token = self.processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        return square_patch_layout(ids == image_token, int(self.processor.image_seq_length), self.info.family)


def square_patch_layout(is_patch: torch.Tensor, image_seq_length: int, family: str) -> PatchLayout:
    """PaliGemma: SigLIP's ``side x side`` patches of the square-resized page, row-major, are
    the ``image_seq_length`` image tokens before the prompt's text; ``is_patch``
    ``(page_tokens,)`` marks them."""
    from ..explain import run_start, whole_page

    side = math.isqrt(image_seq_length)
    if side * side != image_seq_length:
        raise MMEmbedError(f"{family}: {image_seq_length} image tokens do not make a square patch grid")
    return whole_page(run_start(is_patch, image_seq_length, family), side, side)


def _load_processor(facts: CheckpointFacts) -> Any:
    """PaliGemmaProcessor; older ColPali checkpoints lack ``image_seq_length`` in their
    processor config, so build it from its parts then (as colpali-engine does)."""
    from transformers import AutoImageProcessor, AutoTokenizer, PaliGemmaProcessor

    folder = str(processor_folder(facts))
    try:
        processor = PaliGemmaProcessor.from_pretrained(folder)
    except ValueError as err:
        if "image_seq_length" not in str(err):
            raise
        image_processor = AutoImageProcessor.from_pretrained(folder)
        if not hasattr(image_processor, "image_seq_length"):
            raise MMEmbedError(f"{folder}: the image processor config has no image_seq_length") from err
        processor = PaliGemmaProcessor(
            image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(folder)
        )
    return processor


def _recipe_for(processor: Any) -> Recipe:
    """The query augmentation is ten of the tokenizer's pad token."""
    from dataclasses import replace

    return replace(RECIPE, query=Prompt("", processor.tokenizer.pad_token * 10, image=False))


def build(request: LoadRequest) -> ColPaliEncoder:
    from transformers import PaliGemmaConfig, PaliGemmaModel

    return build_vlm_encoder(
        request,
        family_id=FAMILY_ID,
        kind="multi",
        classes=(PaliGemmaConfig, PaliGemmaModel),
        rename=rename_weight,
        load_processor=lambda _config: _load_processor(request.facts),
        recipe=_recipe_for,
        encoder_class=ColPaliEncoder,
    )


def matches(facts: CheckpointFacts) -> bool:
    return facts.model_type == "paligemma" and ("ColPali" in facts.architectures or has_head(facts))


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=128,
        description="ColPali: PaliGemma-3B + custom_text_proj, late interaction",
        matches=matches,
        build=build,
        known_checkpoints=("vidore/colpali-v1.3", "vidore/colpali-v1.2"),
        notes=(
            "Pages resized to 448x448 (1024 image tokens + prompt per page); ~6 GB in bfloat16. "
            "LoRA adapters over vidore/colpaligemma-3b-pt-448-base are merged at load time."
        ),
        options=OPTIONS,
    )
)
