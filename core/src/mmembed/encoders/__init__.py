"""Encoders: model families, the registry that matches checkpoints to them, and a
process-wide cache (``load_encoder``)."""

from __future__ import annotations

from . import (  # noqa: F401 - each family module registers its family
    biqwen2,
    biqwen2_5,
    biqwen3_5,
    colbert,
    colgemma3,
    colidefics3,
    colmodernvbert,
    colpali,
    colqwen2,
    colqwen2_5,
    colqwen2_5_omni,
    colqwen3,
    colqwen3_5,
    hf_retrieval,
    nemotron_colembed,
    nomic,
    omni_embed,
    remote_code,
    st_multi_vector,
)
from .base import Encoder, MediaClip
from .cache import cached_encoders, clear_encoder_cache, load_encoder
from .checkpoint import CheckpointFacts, CheckpointFormatError, CheckpointNotFoundError, inspect_checkpoint
from .registry import (
    LoadRequest,
    ModelFamily,
    ModelListing,
    UnknownModelError,
    get_family,
    list_models,
    match_family,
    register_family,
    unregister_family,
)

__all__ = [
    "CheckpointFacts",
    "CheckpointFormatError",
    "CheckpointNotFoundError",
    "Encoder",
    "LoadRequest",
    "MediaClip",
    "ModelFamily",
    "ModelListing",
    "UnknownModelError",
    "cached_encoders",
    "clear_encoder_cache",
    "get_family",
    "inspect_checkpoint",
    "list_models",
    "load_encoder",
    "match_family",
    "register_family",
    "unregister_family",
]
