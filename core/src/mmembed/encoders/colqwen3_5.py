"""ColQwen3.5: Qwen3.5 + ``custom_text_proj`` (128-d), one L2-normalised vector per token.

Reproduces colpali-engine 0.3.18's ``ColQwen3_5`` / ``ColQwen3_5Processor``: the ColQwen page
prompt and query augmentation, left padding, Qwen3-VL's processor (16-pixel patches, 32x32
pixels per visual token) and the checkpoint's image-processor limits (overridable with
``max_pixels`` / ``max_num_visual_tokens``). Qwen3.5's text model interleaves Gated DeltaNet
(linear attention) layers with full attention; on CPU transformers runs their reference
PyTorch kernels. The embedding size is read from the checkpoint's head.

Checkpoints: a ``model_type: qwen3_5`` config declaring ``architectures: ["ColQwen3_5"]`` or
whose weights / LoRA adapter carry ``custom_text_proj``.
"""

from __future__ import annotations

from .checkpoint import CheckpointFacts
from .qwen_vl import has_head, is_generation, register_qwen_vl_family

FAMILY_ID = "colqwen3_5"


def matches(facts: CheckpointFacts) -> bool:
    return is_generation(facts, "qwen3_5") and ("ColQwen3_5" in facts.architectures or has_head(facts))


FAMILY = register_qwen_vl_family(
    FAMILY_ID,
    generation="qwen3_5",
    kind="multi",
    description="ColQwen3.5: Qwen3.5 + custom_text_proj, late interaction",
    matches=matches,
    notes=(
        "colpali-engine 0.3.18's class; no published checkpoint is listed here. dim from the "
        "checkpoint's head. LoRA adapters are merged at load time."
    ),
)
