"""BiQwen2.5 (Nomic Embed Multimodal): Qwen2.5-VL, one L2-normalised vector per input.

Reproduces colpali-engine 0.3.18's ``BiQwen2_5`` / ``BiQwen2_5_Processor``: the ColQwen2.5
page prompt, ten ``<|endoftext|>`` after each query, left padding, and the last token's
final hidden state (no projection: ``dim`` is the text model's hidden size, 2048 for the
3B model, 3584 for the 7B) as the embedding. Interleaved documents put their text in
place of the page prompt's instruction.

Checkpoints: ``nomic-ai/nomic-embed-multimodal-3b`` / ``-7b`` are PEFT LoRA adapters
(``task_type: FEATURE_EXTRACTION``) over the plain ``Qwen/Qwen2.5-VL-*-Instruct``; a merged
checkpoint declares ``architectures: ["BiQwen2_5"]``. A Qwen2.5-VL checkpoint with neither
(e.g. the bare instruct model, or a chat LoRA) is not an embedding model and is refused.
"""

from __future__ import annotations

from .checkpoint import CheckpointFacts
from .qwen_vl import has_head, is_embedding_adapter, is_generation, register_qwen_vl_family

FAMILY_ID = "biqwen2_5"


def matches(facts: CheckpointFacts) -> bool:
    if not is_generation(facts, "qwen2_5") or has_head(facts) or "ColQwen2_5" in facts.architectures:
        return False
    return "BiQwen2_5" in facts.architectures or is_embedding_adapter(facts)


FAMILY = register_qwen_vl_family(
    FAMILY_ID,
    generation="qwen2_5",
    kind="single",
    description="BiQwen2.5 / Nomic Embed Multimodal: Qwen2.5-VL, last-token dense vector",
    matches=matches,
    known_checkpoints=("nomic-ai/nomic-embed-multimodal-3b", "nomic-ai/nomic-embed-multimodal-7b"),
    notes=(
        "dim = the backbone's hidden size (2048 for 3B, 3584 for 7B); L2-normalised, so dot = cosine. "
        "Takes page images, text documents and (image, text) documents. LoRA adapters over "
        "Qwen2.5-VL-*-Instruct; the base must be a local folder or reachable on the Hub (or pass base_model=...)."
    ),
)
