"""Model families and how a checkpoint is matched to one.

A family is registered once (one short module per family) with a matcher that looks only
at what the checkpoint's files say — ``config.json``'s ``model_type`` / ``architectures``,
weight names, a PEFT adapter's targets and base — never at the name of the model or of its
folder: a renamed folder or a fine-tune under any name loads the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import torch

from ..types import EncoderInfo, Kind, MMEmbedError, Similarity
from .base import Encoder
from .checkpoint import CheckpointFacts


class UnknownModelError(MMEmbedError):
    """No registered family matches a checkpoint."""


@dataclass(frozen=True)
class LoadRequest:
    """Everything a family's ``build`` gets: the checkpoint (weights on disk) and the
    resolved runtime choices."""

    facts: CheckpointFacts
    name: str
    revision: str | None
    device: torch.device
    dtype: torch.dtype
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelFamily:
    """A kind of checkpoint mmembed can run."""

    id: str
    kind: Kind
    similarity: Similarity
    dim: int | None
    """Embedding size, when fixed by the family."""
    description: str
    matches: Callable[[CheckpointFacts], bool]
    """Decides from the checkpoint's files only (see module docstring)."""
    build: Callable[[LoadRequest], Encoder]
    known_checkpoints: tuple[str, ...] = ()
    notes: str = ""
    options: tuple[str, ...] = ()
    """Names of the extra keyword options ``load_encoder`` accepts for this family."""


class ModelListing(TypedDict):
    """One row of :func:`list_models` (plain JSON-ready dict)."""

    family: str
    kind: Kind
    dim: int | None
    similarity: Similarity
    description: str
    checkpoints: list[str]
    """Known published checkpoints of the family."""
    notes: str
    options: list[str]
    """Extra keyword options ``load_encoder`` accepts for the family."""


_lock = threading.Lock()
_families: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily, *, replace: bool = False) -> ModelFamily:
    """Add a family (``replace=True`` to override one with the same id)."""
    with _lock:
        if family.id in _families and not replace:
            raise MMEmbedError(f"a model family {family.id!r} is already registered")
        _families[family.id] = family
    return family


def unregister_family(family_id: str) -> None:
    with _lock:
        _families.pop(family_id, None)


def families() -> tuple[ModelFamily, ...]:
    with _lock:
        return tuple(_families.values())


def get_family(family_id: str) -> ModelFamily:
    with _lock:
        family = _families.get(family_id)
    if family is None:
        raise UnknownModelError(f"no model family {family_id!r}; supported: {_supported()}")
    return family


def _supported() -> str:
    return (
        "; ".join(
            f"{f.id} ({f.kind}-vector, {f.description}"
            + (f", e.g. {', '.join(f.known_checkpoints[:2])}" if f.known_checkpoints else "")
            + ")"
            for f in families()
        )
        or "none registered"
    )


def match_family(facts: CheckpointFacts) -> ModelFamily:
    """The one family whose matcher accepts ``facts``; :class:`UnknownModelError` otherwise."""
    found = [f for f in families() if f.matches(facts)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UnknownModelError(
            f"no supported model family matches the checkpoint {facts.name!r} ({facts.describe()}). "
            f"Supported families: {_supported()}. mmembed chooses the family from config.json (and "
            "adapter_config.json for PEFT adapters), never from the model's name; a new family can be "
            "added with mmembed.encoders.register_family()."
        )
    raise UnknownModelError(
        f"the checkpoint {facts.name!r} ({facts.describe()}) matches several families "
        f"({', '.join(f.id for f in found)}); their matchers overlap, which is a bug in the registry."
    )


def list_models() -> list[ModelListing]:
    """The supported families with their kind, size, known checkpoints and notes."""
    return [
        ModelListing(
            family=f.id,
            kind=f.kind,
            dim=f.dim,
            similarity=f.similarity,
            description=f.description,
            checkpoints=list(f.known_checkpoints),
            notes=f.notes,
            options=list(f.options),
        )
        for f in families()
    ]


def recorded_options(info: EncoderInfo) -> dict[str, Any]:
    """The ``load_encoder`` options an index recorded with its encoder (``info.settings``,
    e.g. Nomic's ``tiles``) that the family accepts: what reopening the index's own model
    needs to give the same vectors. Empty for a family no longer registered."""
    if not info.settings:
        return {}
    try:
        accepted = set(get_family(info.family).options)
    except UnknownModelError:
        return {}
    return {k: v for k, v in info.settings.items() if k in accepted}
