"""Encoders: model families, the registry that matches checkpoints to them, and a
process-wide cache (``load_encoder``)."""

from __future__ import annotations

from . import colqwen2_5  # noqa: F401 - registers the family
from . import biqwen2_5  # noqa: F401 - issue-4 families
from .base import Encoder
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
