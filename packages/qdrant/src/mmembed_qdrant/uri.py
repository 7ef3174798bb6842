"""``qdrant://`` URIs: where a Qdrant-backed mmembed index lives.

- ``qdrant://host[:port]/collection`` — a server or cluster over HTTP (port 6333 by default);
- ``qdrants://host[:port]/collection`` — the same over HTTPS;
- ``qdrant:///absolute/folder/collection`` (no host) — Qdrant's local mode in that folder.

The API key comes from ``api_key=`` or the ``QDRANT_API_KEY`` environment variable (never
from the URI, so it stays out of logs and shell history). Query parameters set search
options: ``?exact=true``, ``?candidates=2000``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mmembed.types import EncoderInfo, MMEmbedError

from .backend import QdrantIndex
from .layout import search_options

SCHEMES = ("qdrant", "qdrants")


@dataclass(frozen=True)
class QdrantLocation:
    collection: str
    url: str | None = None
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_qdrant_uri(uri: str) -> QdrantLocation:
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise MMEmbedError(f"{uri!r} is not a Qdrant URI; expected qdrant://host:6333/collection")
    folder, _, collection = parts.path.rstrip("/").rpartition("/")
    if not collection:
        raise MMEmbedError(
            f"the Qdrant URI {uri!r} names no collection; write qdrant://host:6333/COLLECTION "
            "(or qdrant:///folder/COLLECTION for a local store)"
        )
    options = search_options(parts.query, uri)
    if not parts.netloc:
        if not folder:
            raise MMEmbedError(f"the Qdrant URI {uri!r} has neither a host nor a local folder")
        return QdrantLocation(collection, path=folder, options=options)
    if folder:
        raise MMEmbedError(f"the Qdrant URI {uri!r} has a nested path; write qdrant://host:6333/collection")
    http = "https" if parts.scheme == "qdrants" else "http"
    port = parts.port or 6333
    return QdrantLocation(collection, url=f"{http}://{parts.hostname}:{port}", options=options)


def open_qdrant_index(
    uri: str,
    encoder: EncoderInfo | None = None,
    *,
    create: bool = True,
    readonly: bool = False,
    api_key: str | None = None,
    keep_thumbnails: bool = True,
    **options: Any,
) -> QdrantIndex:
    """Open the mmembed index at a ``qdrant://`` URI, creating the collection when missing
    (needs ``encoder``); an existing one must hold ``encoder``'s vectors
    (:class:`~mmembed.types.EncoderMismatchError`). ``options`` go to :class:`QdrantIndex`
    (``exact``, ``candidates``, ``collection_options`` such as ``shard_number`` /
    ``replication_factor`` for a cluster)."""
    where = parse_qdrant_uri(uri)
    return QdrantIndex.connect(
        where.collection,
        encoder,
        url=where.url,
        path=where.path,
        api_key=api_key if api_key is not None else os.environ.get("QDRANT_API_KEY"),
        create=create,
        readonly=readonly,
        keep_thumbnails=keep_thumbnails,
        **{**where.options, **options},
    )
