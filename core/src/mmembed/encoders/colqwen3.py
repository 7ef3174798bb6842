"""ColQwen3: Qwen3-VL + ``custom_text_proj`` (320-d), one L2-normalised vector per token.

Reproduces colpali-engine 0.3.18's ``ColQwen3`` / ``ColQwen3Processor``: the ColQwen page
prompt and query augmentation, left padding, Qwen3-VL's 16-pixel patches (32x32 pixels per
visual token) and the checkpoint's image-processor limits (overridable with ``max_pixels`` /
``max_num_visual_tokens``). The embedding size is read from the checkpoint's head.

Checkpoints: a Qwen3-VL ``config.json`` declaring ``architectures: ["ColQwen3"]`` or whose
weights / LoRA adapter carry ``custom_text_proj``, e.g. ``TomoroAI/tomoro-colqwen3-embed-4b``
and ``-8b`` (the ColQwen3 checkpoints colpali-engine 0.3.18 lists).
"""

from __future__ import annotations

from .checkpoint import CheckpointFacts
from .qwen_vl import has_head, is_generation, register_qwen_vl_family

FAMILY_ID = "colqwen3"


def matches(facts: CheckpointFacts) -> bool:
    return is_generation(facts, "qwen3") and ("ColQwen3" in facts.architectures or has_head(facts))


FAMILY = register_qwen_vl_family(
    FAMILY_ID,
    generation="qwen3",
    kind="multi",
    description="ColQwen3: Qwen3-VL + custom_text_proj, late interaction",
    matches=matches,
    known_checkpoints=("TomoroAI/tomoro-colqwen3-embed-4b", "TomoroAI/tomoro-colqwen3-embed-8b"),
    notes="dim from the checkpoint's head (320 for the Tomoro models). 4B: ~8.5 GB in bfloat16, needs a GPU.",
)
