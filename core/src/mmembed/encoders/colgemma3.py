"""ColGemma3 / BiGemma3: Gemma 3 (SigLIP + Gemma3 text model) as a page retriever.

Reproduces colpali-engine 0.3.18's ``ColGemma3`` / ``BiGemma3`` and their processors.
Prompts are the checkpoint's own chat template (one user turn), rendered once at load time:
pages are ``[image, "Describe this image"]``, queries and text documents
``"Query: <text>"``; BiGemma3's queries add ten ``<eos>`` inside the turn (its processor keeps
the base class's query augmentation; ColGemma3's does not). Left padding; every page is
resized to the image processor's fixed square and pooled to ``mm_tokens_per_image`` tokens
(a square grid, row-major: the similarity-map layout). The processor's ``token_type_ids``
mark image tokens, which Gemma 3 attends to bidirectionally.

- ``colgemma3``: one L2-normalised 128-d ``custom_text_proj`` vector per token.
  Checkpoints: a ``model_type: gemma3`` config declaring ``architectures: ["ColGemma3"]`` or
  with ``custom_text_proj`` in its weights / LoRA adapter.
- ``bigemma3``: the last token's L2-normalised hidden state (colpali's default ``last``
  pooling at full size; ``dim`` = the text model's hidden size, 2560 for Gemma 3 4B — the
  first 768 / 1536 of it are the Matryoshka sizes). Checkpoints: ``architectures: ["BiGemma3"]``.

Weights: colpali's classes subclass ``Gemma3Model`` (``language_model.*``, ``vision_tower.*``,
``multi_modal_projector.*`` at the top level); ``Gemma3ForConditionalGeneration`` layouts of
transformers 4 and 5 load too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from ..types import MMEmbedError
from .checkpoint import CheckpointFacts
from .colpali import square_patch_layout
from .registry import LoadRequest, ModelFamily, register_family
from .vlm import Prompt, Recipe, VLMEncoder, build_vlm_encoder, has_head, processor_folder, rename_key

if TYPE_CHECKING:
    from ..explain import PatchLayout

FAMILY_ID = "colgemma3"
BI_FAMILY_ID = "bigemma3"
OPTIONS = ("batch_size", "attn_implementation")
# colpali-engine 0.3.18, ColGemmaProcessor3 / BiGemmaProcessor3.
PAGE_TEXT = "Describe this image"
QUERY_PREFIX = "Query: "
BI_QUERY_AUGMENTATION = "<eos>" * 10
_MARK = "\x00mmembed-text\x00"

_RENAMES = (
    (re.compile(r"^base_model\.model\."), ""),
    (re.compile(r"^model\.(language_model|vision_tower|multi_modal_projector)\."), r"model.\1."),
    (re.compile(r"^language_model\.model\."), "model.language_model."),
    (re.compile(r"^(language_model|vision_tower|multi_modal_projector)\."), r"model.\1."),
)
_UNUSED = re.compile(r"^(lm_head|language_model\.lm_head)\.")


def rename_weight(key: str) -> str | None:
    """Any known ColGemma3 / Gemma 3 checkpoint key -> :class:`~mmembed.encoders.vlm.Embedder` name."""
    return rename_key(key, _RENAMES, _UNUSED)


class ColGemma3Encoder(VLMEncoder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processor.tokenizer.padding_side = "left"

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.processor(text=texts, return_tensors="pt", padding="longest"))

    def image_inputs(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        # pixel_values: (batch, 3, size, size); token_type_ids: 1 on image tokens.
        nested = [[image] for image in images]  # one image per prompt
        return dict(self.processor(text=texts, images=nested, return_tensors="pt", padding="longest"))

    def image_cost(self, image: Image.Image) -> int:
        return int(self.processor.image_seq_length)  # every page is resized to the same square

    def patch_layout(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> PatchLayout:
        image_token = self.processor.tokenizer.convert_tokens_to_ids(self.processor.tokenizer.image_token)
        return square_patch_layout(ids == image_token, int(self.processor.image_seq_length), self.info.family)


def _chat(tokenizer: Any, image: bool) -> tuple[str, str]:
    """The checkpoint's chat template around one user turn's text: (prefix, suffix)."""
    content: list[dict[str, str]] = [{"type": "image"}] if image else []
    content.append({"type": "text", "text": _MARK})
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=False
    )
    if not isinstance(rendered, str) or rendered.count(_MARK) != 1:
        raise MMEmbedError("the checkpoint's chat template does not render one user turn's text once")
    prefix, suffix = rendered.split(_MARK)
    return prefix, suffix


def _recipe(processor: Any, *, bi: bool) -> Recipe:
    tokenizer = processor.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise MMEmbedError(
            "the checkpoint's tokenizer has no chat template (ColGemma3 prompts are built with it)"
        )
    page_prefix, page_suffix = _chat(tokenizer, image=True)
    text_prefix, text_suffix = _chat(tokenizer, image=False)
    page = Prompt(page_prefix, page_suffix, image=True)
    text = Prompt(text_prefix + QUERY_PREFIX, text_suffix, image=False)
    query = Prompt(text.prefix, (BI_QUERY_AUGMENTATION if bi else "") + text_suffix, image=False)
    return Recipe(
        page=page,
        page_text=PAGE_TEXT,
        interleaved=page,
        query=query,
        text_document=text,
        image_token=processor.boi_token,
    )


def _load_processor(facts: CheckpointFacts) -> Any:
    from transformers import Gemma3Processor

    return Gemma3Processor.from_pretrained(str(processor_folder(facts)))


def _build(request: LoadRequest, family_id: str) -> ColGemma3Encoder:
    from transformers import Gemma3Config, Gemma3Model

    bi = family_id == BI_FAMILY_ID
    return build_vlm_encoder(
        request,
        family_id=family_id,
        kind="single" if bi else "multi",
        classes=(Gemma3Config, Gemma3Model),
        rename=rename_weight,
        load_processor=lambda _config: _load_processor(request.facts),
        recipe=lambda processor: _recipe(processor, bi=bi),
        encoder_class=ColGemma3Encoder,
    )


def matches(facts: CheckpointFacts) -> bool:
    return facts.model_type == "gemma3" and ("ColGemma3" in facts.architectures or has_head(facts))


def matches_bi(facts: CheckpointFacts) -> bool:
    return facts.model_type == "gemma3" and "BiGemma3" in facts.architectures and not has_head(facts)


_NOTES = (
    "colpali-engine 0.3.18's class; no published checkpoint is listed here. Gemma 3 4B: "
    "~8.6 GB in bfloat16, needs a GPU for real use. Pages resized to the processor's square "
    "(896 px, 256 image tokens for Gemma 3)."
)

FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=128,
        description="ColGemma3: Gemma 3 + custom_text_proj, late interaction",
        matches=matches,
        build=lambda request: _build(request, FAMILY_ID),
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
        description="BiGemma3: Gemma 3, last-token dense vector",
        matches=matches_bi,
        build=lambda request: _build(request, BI_FAMILY_ID),
        notes=_NOTES + " dim = the text model's hidden size (2560 for 4B); L2-normalised.",
        options=OPTIONS,
    )
)
