"""One copy of each encoder's weights per process.

``load_encoder`` is what every part of mmembed (CLI, index, framework adapters) calls; two
calls asking for the same checkpoint, revision, device, dtype and options get the very same
:class:`Encoder` object, even from different threads at the same time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import torch

from ..fingerprint import checkpoint_fingerprint, combine_fingerprints
from ..types import MMEmbedError
from . import remote_code
from .base import Encoder
from .checkpoint import CheckpointFacts, inspect_checkpoint
from .registry import LoadRequest, UnknownModelError, match_family
from .runtime import resolve_device, resolve_dtype

_CacheKey = tuple[Hashable, ...]

_lock = threading.Lock()
_encoders: dict[_CacheKey, Encoder] = {}
_loading: dict[_CacheKey, threading.Lock] = {}


def _checkpoint_key(name_or_path: str | os.PathLike[str]) -> str:
    """A local folder by its real path (``./m`` and ``/abs/m`` are one checkpoint); a Hub id as is."""
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.is_dir() else str(name_or_path)


def _options_key(options: dict[str, Any]) -> tuple[tuple[str, Hashable], ...]:
    for name, value in options.items():
        if not isinstance(value, Hashable):
            raise MMEmbedError(
                f"encoder option {name}={value!r} must be a plain value (str, int, float, bool, None)"
            )
    return tuple(sorted(options.items()))


def load_encoder(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    base_model: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Encoder:
    """The encoder for a checkpoint (local folder or Hugging Face Hub id), loaded once per process.

    The model family is chosen from the checkpoint's config files (see
    :mod:`mmembed.encoders.registry`). ``device``: ``"cuda"``, ``"mps"``, ``"cpu"`` or
    ``None`` / ``"auto"`` (CUDA > MPS > CPU). ``dtype``: ``None`` / ``"auto"`` (bfloat16 on
    GPU, float32 on CPU) or e.g. ``"float32"``. ``base_model``: the base folder of a PEFT
    adapter, overriding its ``base_model_name_or_path``. ``trust_remote_code=True``: a
    checkpoint no native family matches may run its own code (see
    :mod:`mmembed.encoders.remote_code`); without it such checkpoints are refused. Family options (e.g. ``batch_size``,
    ``max_pixels``, ``attn_implementation`` for ColQwen2.5; see ``list_models()``) are part of
    the cache key.
    """
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    key: _CacheKey = (
        _checkpoint_key(name_or_path),
        revision,
        _checkpoint_key(base_model) if base_model is not None else None,
        str(resolved_device),
        str(resolved_dtype),
        _options_key(options),
    )
    with _lock:
        if key in _encoders:
            return _encoders[key]
        loading = _loading.setdefault(key, threading.Lock())
    with loading:  # one loader per key; other keys load in parallel
        with _lock:
            if key in _encoders:
                return _encoders[key]
        try:
            encoder = _load(name_or_path, revision, base_model, resolved_device, resolved_dtype, options)
            with _lock:
                _encoders[key] = encoder
        finally:
            with _lock:
                _loading.pop(key, None)
        return encoder


def _load(
    name_or_path: str | os.PathLike[str],
    revision: str | None,
    base_model: str | os.PathLike[str] | None,
    device: torch.device,
    dtype: torch.dtype,
    options: dict[str, Any],
) -> Encoder:
    options = dict(options)
    trust_remote_code = bool(options.pop(remote_code.OPTION, False))
    facts = inspect_checkpoint(name_or_path, revision, base_model=base_model)
    try:
        family = match_family(facts)
    except UnknownModelError:
        if not (trust_remote_code or remote_code.auto_map(facts)):
            raise
        if not trust_remote_code:
            raise remote_code.refusal(facts) from None
        family = remote_code.FAMILY
    unknown = sorted(set(options) - set(family.options))
    if unknown:
        raise MMEmbedError(
            f"unknown option(s) {', '.join(unknown)} for the {family.id} family; it accepts: "
            f"{', '.join(family.options) or 'none'}"
        )
    request = LoadRequest(
        facts=facts.fetch_weights(),
        name=_checkpoint_key(name_or_path),  # local folders by absolute path: stable across working dirs
        revision=revision,
        device=device,
        dtype=dtype,
        options=dict(options),
    )
    encoder = family.build(request)
    if encoder.info.fingerprint is None:  # a family made of several checkpoints sets its own
        encoder.info = dataclasses.replace(encoder.info, fingerprint=checkpoint_fingerprint_of(request.facts))
    return encoder


def checkpoint_fingerprint_of(facts: CheckpointFacts) -> str | None:
    """The content fingerprint of a checkpoint: its folder's, combined with its base's for an
    adapter (whose own folder holds only the adapter weights)."""
    own = checkpoint_fingerprint(facts.model_path)
    if facts.adapter is None or facts.path == facts.model_path:
        return own
    adapter = hashlib.sha256()
    for file in sorted(
        p for p in Path(facts.path).iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin")
    ):
        adapter.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return combine_fingerprints([own, "sha256:" + adapter.hexdigest()])


def cached_encoders() -> list[Encoder]:
    """The encoders currently held by the cache."""
    with _lock:
        return list(_encoders.values())


def clear_encoder_cache() -> None:
    """Forget every cached encoder (their memory is freed once nothing else holds them)."""
    with _lock:
        _encoders.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
