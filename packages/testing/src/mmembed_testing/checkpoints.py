"""Tiny random-initialised checkpoints built from real ``transformers`` classes.

Each one is saved in the layout of the published checkpoint of its family, so that
``mmembed.encoders.load_encoder(path)`` takes the path a real checkpoint takes. They are
small (a few MB), fast to build (about a second once ``transformers`` is imported) and
deterministic: the same family, seed and flags give byte-identical files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from . import (
    tiny_colbert,
    tiny_colqwen_omni,
    tiny_gemma3,
    tiny_hf_retrieval,
    tiny_idefics3,
    tiny_modernvbert,
    tiny_nemotron_colembed,
    tiny_nomic,
    tiny_omni_embed,
    tiny_paligemma,
    tiny_qwen2_5,
    tiny_qwen_vl,
    tiny_st_multi_vector,
)

_Builder = Callable[..., Path]

TINY_BUILDERS: dict[str, _Builder] = {
    "colqwen2_5": tiny_qwen2_5.build,
    **{family: partial(tiny_qwen_vl.build, family) for family in tiny_qwen_vl.SPECS},
    "colpali": tiny_paligemma.build,
    "colidefics3": tiny_idefics3.build,
    "colgemma3": partial(tiny_gemma3.build, "col"),
    "bigemma3": partial(tiny_gemma3.build, "bi"),
    "colmodernvbert": partial(tiny_modernvbert.build, "col"),
    "bimodernvbert": partial(tiny_modernvbert.build, "bi"),
    "colmodernvbert_hf": partial(tiny_modernvbert.build, "native"),
    **{family: partial(tiny_hf_retrieval.build, family) for family in ("colpali_hf", "colqwen2_hf")},
    "nemotron_colembed": tiny_nemotron_colembed.build,
    **{family: partial(tiny_nomic.build, family) for family in ("nomic_v1_5", "nomic_text_v1_5")},
    "omni_embed_nemotron": tiny_omni_embed.build,
    "colqwen2_5_omni": tiny_colqwen_omni.build,
    **{f"st_{v}": partial(tiny_st_multi_vector.build, v) for v in ("colbert", "minimal")},
    "colbert_stanford": tiny_colbert.build,
}


def tiny_families() -> list[str]:
    """Family ids :func:`make_tiny_checkpoint` can build."""
    return sorted(TINY_BUILDERS)


def make_tiny_checkpoint(
    family: str,
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    lora: bool = False,
    layout: str = "legacy",
) -> Path:
    """Write a tiny checkpoint of ``family`` under ``path`` and return the folder to load.

    ``lora=False``: ``path`` becomes a full (merged) checkpoint. ``lora=True``: a base
    folder and a PEFT adapter folder whose ``adapter_config.json`` points at the base (by
    absolute path) are written inside ``path``; the adapter folder is returned.
    ``layout`` picks the weight-name layout: ``"legacy"`` (as the published checkpoints
    are stored) or ``"transformers"`` (as ``save_pretrained`` of transformers 5 writes them).
    """
    try:
        builder = TINY_BUILDERS[family]
    except KeyError:
        raise ValueError(
            f"no tiny checkpoint for family {family!r}; known: {', '.join(tiny_families())}"
        ) from None
    if layout not in ("legacy", "transformers"):
        raise ValueError(f"layout must be 'legacy' or 'transformers', got {layout!r}")
    return builder(Path(path), seed=seed, lora=lora, layout=layout)
