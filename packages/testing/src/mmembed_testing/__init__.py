"""Test support for mmembed: tiny checkpoints built from real ``transformers`` classes."""

from __future__ import annotations

from .checkpoints import make_tiny_checkpoint, tiny_families

__all__ = ["make_tiny_checkpoint", "tiny_families"]
