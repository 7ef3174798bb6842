"""BiQwen2 and DSE-Qwen2: Qwen2-VL, one L2-normalised vector per input (last token).

Two single-vector families share the Qwen2-VL backbone and the last-token pooling and
differ only in their prompts:

- ``biqwen2`` reproduces colpali-engine 0.3.18's ``BiQwen2`` / ``BiQwen2Processor`` (the
  ColQwen2 page prompt, ten ``<|endoftext|>`` after each query). Checkpoints: a merged model
  declaring ``architectures: ["BiQwen2"]`` or a ``FEATURE_EXTRACTION`` LoRA adapter over a
  plain Qwen2-VL.
- ``dse_qwen2`` reproduces the DSE recipe of ``llamaindex/vdr-2b-multi-v1`` (and
  ``MrLight/dse-qwen2-2b-mrl-v1`` fine-tunes) as published on its model card and in its
  MTEB wrapper: a system prompt, ``What is shown in this image?`` for pages,
  ``Query: <text>`` with a blank 56x56 image for queries, pages resized by PIL onto the
  28-pixel grid, at most 768 visual tokens per page. Checkpoints: a full
  ``Qwen2VLForConditionalGeneration`` packaged as a sentence-transformers model
  (``modules.json``) — the packaging that marks it as an embedding model rather than a chat
  model. Its 1536-d output is Matryoshka-trained; mmembed returns the full vector.
"""

from __future__ import annotations

from .checkpoint import CheckpointFacts
from .qwen_vl import (
    Prompt,
    Recipe,
    dse_resize,
    has_head,
    is_embedding_adapter,
    is_generation,
    register_qwen_vl_family,
)

FAMILY_ID = "biqwen2"
DSE_FAMILY_ID = "dse_qwen2"

DSE_PREFIX = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
)
DSE_SUFFIX = "<|im_end|>\n<|endoftext|>"
DSE_MAX_VISUAL_TOKENS = 768
DSE_RECIPE = Recipe(
    page=Prompt(DSE_PREFIX, DSE_SUFFIX, image=True),
    page_text="What is shown in this image?",
    # The DSE training recipe's passage prompt, with the page in place of the blank image.
    interleaved=Prompt(DSE_PREFIX + "Document: ", DSE_SUFFIX, image=True),
    query=Prompt(DSE_PREFIX + "Query: ", DSE_SUFFIX, image=True),
    text_document=Prompt(DSE_PREFIX + "Document: ", DSE_SUFFIX, image=True),
    dummy_image=(56, 56),
    image_token="<|image_pad|>",
    resize=dse_resize,
    pixel_limits=(28 * 28, DSE_MAX_VISUAL_TOKENS * 28 * 28),
)


def _is_plain_qwen2_vl(facts: CheckpointFacts) -> bool:
    return is_generation(facts, "qwen2") and not has_head(facts) and "ColQwen2" not in facts.architectures


def matches(facts: CheckpointFacts) -> bool:
    return (
        _is_plain_qwen2_vl(facts)
        and ("BiQwen2" in facts.architectures or is_embedding_adapter(facts))
        and not matches_dse(facts)
    )


def is_sentence_transformers_model(facts: CheckpointFacts) -> bool:
    return (facts.model_path / "modules.json").is_file()


def matches_dse(facts: CheckpointFacts) -> bool:
    """A DSE checkpoint, or an embedding LoRA adapter over one (what ``mmembed train`` writes:
    it keeps the DSE prompts it was trained with)."""
    return (
        _is_plain_qwen2_vl(facts)
        and (facts.adapter is None or is_embedding_adapter(facts))
        and "Qwen2VLForConditionalGeneration" in facts.architectures
        and is_sentence_transformers_model(facts)
    )


FAMILY = register_qwen_vl_family(
    FAMILY_ID,
    generation="qwen2",
    kind="single",
    description="BiQwen2: Qwen2-VL, last-token dense vector (colpali-engine)",
    matches=matches,
    notes="dim = the backbone's hidden size (1536 for 2B). L2-normalised, so dot = cosine.",
)

DSE_FAMILY = register_qwen_vl_family(
    DSE_FAMILY_ID,
    generation="qwen2",
    kind="single",
    recipe=DSE_RECIPE,
    description="DSE on Qwen2-VL (vdr-2b): last-token dense vector, DSE prompts",
    matches=matches_dse,
    known_checkpoints=("llamaindex/vdr-2b-multi-v1", "llamaindex/vdr-2b-v1"),
    notes=(
        "1536-d (Matryoshka-trained), L2-normalised. Pages resized to at most 768 visual tokens "
        "(the model card's setting; max_pixels / max_num_visual_tokens override it)."
    ),
)
