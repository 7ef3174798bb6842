"""ColQwen2.5: Qwen2.5-VL + a 128-d linear projection, one L2-normalised vector per token.

Reproduces colpali-engine 0.3.18's ``ColQwen2_5`` / ``ColQwen2_5_Processor`` on plain
transformers classes (no colpali-engine at run time): the same page prompt, the same query
augmentation (ten ``<|endoftext|>`` after the query), left padding, the checkpoint's own
image-processor limits (overridable with ``max_pixels`` / ``max_num_visual_tokens``), and
every non-padding token of the sequence (prompt tokens included) kept as a vector. The
machinery (backbone, weight layouts, batching, text and interleaved documents) is shared
with the other Qwen-VL retrievers in :mod:`mmembed.encoders.qwen_vl`.

Checkpoints: a Qwen2.5-VL ``config.json`` whose weights contain ``custom_text_proj`` (e.g.
``vidore/colqwen2.5-base``, merged fine-tunes), or a PEFT LoRA adapter over such a base or
over a plain Qwen2.5-VL whose adapter carries ``custom_text_proj`` (``vidore/colqwen2.5-v0.2``,
``nomic-ai/colnomic-embed-multimodal-3b`` / ``-7b``).
"""

from __future__ import annotations

from typing import cast

from .checkpoint import CheckpointFacts
from .qwen_vl import (
    COLPALI_PAGE_PREFIX,
    COLPALI_PAGE_SUFFIX,
    COLPALI_QUERY_AUGMENTATION,
    COLPALI_RECIPE,
    OPTIONS,
    QwenVLEncoder,
    rename_weight,
)
from .qwen_vl import build_encoder as build_qwen_vl_encoder
from .registry import LoadRequest, ModelFamily, register_family

__all__ = ["FAMILY", "FAMILY_ID", "ColQwen2_5Encoder", "build_encoder", "rename_weight"]

FAMILY_ID = "colqwen2_5"
EMBEDDING_DIM = 128
# colpali-engine 0.3.18, ColQwen2_5_Processor.
VISUAL_PROMPT = COLPALI_PAGE_PREFIX + COLPALI_RECIPE.page_text + COLPALI_PAGE_SUFFIX
QUERY_PREFIX = ""
QUERY_AUGMENTATION = COLPALI_QUERY_AUGMENTATION


class ColQwen2_5Encoder(QwenVLEncoder):
    """Multi-vector ColQwen2.5 encoder (see module docstring)."""


def _is_colqwen2_5(facts: CheckpointFacts) -> bool:
    """A Qwen2.5-VL checkpoint with a ``custom_text_proj``: declared by architecture
    (colpali's ``ColQwen2_5``), present in the weights, or brought by the adapter."""
    if facts.model_type != "qwen2_5_vl":
        return False
    return "ColQwen2_5" in facts.architectures or facts.has_module("custom_text_proj")


def build_encoder(request: LoadRequest) -> ColQwen2_5Encoder:
    encoder = build_qwen_vl_encoder(
        request,
        family_id=FAMILY_ID,
        generation="qwen2_5",
        kind="multi",
        recipe=COLPALI_RECIPE,
        encoder_class=ColQwen2_5Encoder,
    )
    return cast(ColQwen2_5Encoder, encoder)


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=EMBEDDING_DIM,
        description="ColQwen2.5: Qwen2.5-VL + custom_text_proj, late interaction",
        matches=_is_colqwen2_5,
        build=build_encoder,
        known_checkpoints=(
            "vidore/colqwen2.5-v0.2",
            "vidore/colqwen2.5-v0.1",
            "nomic-ai/colnomic-embed-multimodal-3b",
            "nomic-ai/colnomic-embed-multimodal-7b",
            "tsystems/colqwen2.5-3b-multilingual-v1.0",
        ),
        notes=(
            "3B: ~7.5 GB in bfloat16, needs a GPU for real use (~75 s per page on CPU). LoRA adapters "
            "are merged at load time; their base (base_model_name_or_path) must be a local folder or "
            "reachable on the Hub (or pass base_model=...). Takes page images, text documents and "
            "(image, text) documents."
        ),
        options=OPTIONS,
    )
)
