"""BiQwen3.5: Qwen3.5, one L2-normalised vector per input (the last token's state).

Reproduces colpali-engine 0.3.18's ``BiQwen3_5`` / ``BiQwen3_5Processor``: the ColQwen page
prompt, ten ``<|endoftext|>`` after each query, left padding and ``last`` pooling of the final
hidden state (no projection: ``dim`` is the text model's hidden size).

Checkpoints: a ``model_type: qwen3_5`` config declaring ``architectures: ["BiQwen3_5"]``, or a
``FEATURE_EXTRACTION`` LoRA adapter without a projection head over a plain Qwen3.5.
"""

from __future__ import annotations

from .checkpoint import CheckpointFacts
from .qwen_vl import has_head, is_embedding_adapter, is_generation, register_qwen_vl_family

FAMILY_ID = "biqwen3_5"


def matches(facts: CheckpointFacts) -> bool:
    if not is_generation(facts, "qwen3_5") or has_head(facts) or "ColQwen3_5" in facts.architectures:
        return False
    return "BiQwen3_5" in facts.architectures or is_embedding_adapter(facts)


FAMILY = register_qwen_vl_family(
    FAMILY_ID,
    generation="qwen3_5",
    kind="single",
    description="BiQwen3.5: Qwen3.5, last-token dense vector",
    matches=matches,
    notes=(
        "colpali-engine 0.3.18's class; no published checkpoint is listed here. dim = the "
        "backbone's hidden size; L2-normalised, so dot = cosine."
    ),
)
