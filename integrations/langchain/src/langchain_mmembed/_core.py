"""The few places where this package reaches into mmembed core.

Everything heavy (torch, transformers, pypdfium2) is imported here lazily, on first use,
so that constructing a LangChain object stays cheap. Encoders come from core's
process-wide cache: two objects naming the same checkpoint share one model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mmembed.encoders.base import Encoder
    from mmembed.index.protocol import IndexBackend
    from mmembed.types import EncoderInfo


def load_encoder(
    model: str,
    *,
    revision: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    **options: Any,
) -> Encoder:
    """The shared core encoder for ``model`` (loaded once per process and arguments);
    ``options`` are the model family's (e.g. Nomic's ``text_model``)."""
    import mmembed

    return mmembed.load_encoder(model, revision=revision, device=device, dtype=dtype, **options)


def is_index_object(value: Any) -> bool:
    """True for an open core index (any backend implementing the index protocol)."""
    return all(hasattr(value, name) for name in ("search", "get_embeddings", "upsert", "encoder"))


def check_index_argument(value: Any, owner: str) -> Any:
    """Validate an ``index=`` argument without opening anything (constructors stay cheap)."""
    if value is None or isinstance(value, (str, os.PathLike)) or is_index_object(value):
        return value
    raise TypeError(
        f"{owner}: index must be a folder path or an open mmembed index (e.g. the result of "
        f"mmembed.open_index(...)), got {type(value).__name__}"
    )


def open_index(
    index: str | os.PathLike[str] | IndexBackend, encoder: EncoderInfo, *, create: bool = True
) -> IndexBackend:
    """An open index: ``index`` itself if it already is one, else a handle on the local index
    at that path or URI (created when missing if ``create``; otherwise core raises
    ``IndexNotFoundError``). Handles are shared process-wide, so retrievers, rerankers and
    indexers on one folder use one open index and its writer lock."""
    if is_index_object(index):
        return index  # type: ignore[return-value]
    import mmembed

    return mmembed.open_backend(_location(index), encoder=encoder, create=create, shared=True)


def open_index_readonly(index: str | os.PathLike[str]) -> IndexBackend:
    """A read-only handle on the index at ``index`` (a folder, shared process-wide, or a
    backend URI such as ``qdrant://host:6333/pages``)."""
    import mmembed

    return mmembed.open_backend(_location(index), readonly=True, shared=True)


def stored_encoder_name(index: str | os.PathLike[str] | IndexBackend) -> tuple[str, str | None]:
    """Checkpoint name and revision an index was built with (read from its manifest)."""
    if is_index_object(index):
        info = index.encoder  # type: ignore[union-attr]
        return info.name, info.revision
    import mmembed

    stored = mmembed.open_backend(_location(index), readonly=True, shared=True)
    try:
        return stored.encoder.name, stored.encoder.revision
    finally:
        stored.close()


def index_exists(index: str | os.PathLike[str]) -> bool:
    """Whether ``index`` may name an existing index: a folder that exists, or any backend
    URI (the backend itself says if it is missing, when opened)."""
    location = _location(index)
    return isinstance(location, str) or location.exists()


def _location(index: object) -> str | Path:
    """A backend URI stays a string (``Path`` would fold its ``//``); anything else is a folder."""
    from mmembed.index import uri_scheme

    location = cast("str | os.PathLike[str]", index)
    return location if isinstance(location, str) and uri_scheme(location) else Path(location)
