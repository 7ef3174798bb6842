"""ColQwen2: Qwen2-VL + ``custom_text_proj`` (128-d), one L2-normalised vector per token.

Reproduces colpali-engine 0.3.18's ``ColQwen2`` / ``ColQwen2Processor`` (same prompts,
query augmentation and left padding as ColQwen2.5; see :mod:`mmembed.encoders.qwen_vl`).
Page budget: the checkpoint's ``preprocessor_config.json`` (``vidore/colqwen2-v1.0``: at
most 768 visual tokens per page), overridable with ``max_pixels`` / ``max_num_visual_tokens``.

Checkpoints: a Qwen2-VL ``config.json`` whose weights or LoRA adapter carry
``custom_text_proj`` (``vidore/colqwen2-v1.0`` is a PEFT adapter over
``vidore/colqwen2-base``), or one declaring ``architectures: ["ColQwen2"]``.
"""

from __future__ import annotations

from .checkpoint import CheckpointFacts
from .qwen_vl import has_head, is_generation, register_qwen_vl_family

FAMILY_ID = "colqwen2"


def matches(facts: CheckpointFacts) -> bool:
    return is_generation(facts, "qwen2") and ("ColQwen2" in facts.architectures or has_head(facts))


FAMILY = register_qwen_vl_family(
    FAMILY_ID,
    generation="qwen2",
    kind="multi",
    dim=128,
    description="ColQwen2: Qwen2-VL + custom_text_proj, late interaction",
    matches=matches,
    known_checkpoints=("vidore/colqwen2-v1.0", "vidore/colqwen2-v0.1"),
    notes=(
        "2B: ~4.4 GB in bfloat16. Pages up to 768 visual tokens by default (the checkpoint's "
        "preprocessor_config). LoRA adapters are merged at load time."
    ),
)
