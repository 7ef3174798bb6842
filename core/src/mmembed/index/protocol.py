"""The small protocol every index backend implements.

The embedded on-disk index (:class:`mmembed.index.LocalIndex`) is the default; a
distributed engine (e.g. Qdrant) implements the same protocol, so the CLI, the pipeline
and every framework adapter work with either.

Filters
-------
A filter is a JSON-like dict, applied *before* scoring (a pre-filter):

- ``{"source": "report.pdf"}`` — equality (``$eq``);
- ``{"page": {"$in": [1, 2]}}`` / ``{"$nin": [...]}``;
- ``{"year": {"$gte": 2020, "$lt": 2024}}`` — numeric range (``$gt``, ``$gte``, ``$lt``, ``$lte``);
- ``{"published": {"$gte": datetime(2024, 1, 1)}}`` — a ``datetime`` / ``date`` value compares
  stored ISO 8601 strings as points in time (offsets honoured; a time without one is UTC);
  strings that are not dates never match it;
- ``{"lang": {"$ne": "fr"}}``, ``{"title": {"$exists": True}}``;
- ``{"$and": [f1, f2]}``, ``{"$or": [f1, f2]}``; several keys in one dict are AND-ed.

Keys ``id``, ``source``, ``page`` and ``content_hash`` address the record's own fields;
any other key addresses caller metadata (``metadata.<key>`` is accepted as well).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from ..scoring import EmbeddingsLike
from ..types import EncoderInfo, PageRecord, SearchHit, page_id

Filter = dict[str, Any]

__all__ = ["Filter", "IndexBackend", "PageInput", "page_id"]


@dataclass
class PageInput:
    """A page to store: its vectors plus what identifies and describes it.

    ``embedding`` may be empty, shape ``(0, dim)``: the page is then stored, counted and
    filterable like any other, but it is never a search result (e.g. a document a
    framework stores before, or without, embedding it).
    """

    embedding: torch.Tensor  # (n_vectors, dim); n_vectors may be 0
    source: str
    page: int
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)
    thumbnail: bytes | None = None
    id: str | None = None
    text: str | None = None
    """The page's own text (its PDF text layer), stored for text / hybrid search in the same
    commit as the vectors; ``None`` (images, scans, ``--no-text``): the page has no text side."""

    def resolved_id(self) -> str:
        return self.id if self.id is not None else page_id(self.content_hash, self.page)


@runtime_checkable
class IndexBackend(Protocol):
    """Storage and exact search of page embeddings plus page records."""

    @property
    def encoder(self) -> EncoderInfo:
        """The encoder the stored vectors came from."""
        ...

    def add(self, pages: Sequence[PageInput]) -> list[str]:
        """Store ``pages`` as one atomic batch; an id already present is an error."""
        ...

    def upsert(self, pages: Sequence[PageInput]) -> list[str]:
        """Store ``pages`` as one atomic batch, replacing pages with the same id."""
        ...

    def delete(self, ids: Sequence[str] | None = None, *, where: Filter | None = None) -> int:
        """Delete pages by id and/or filter atomically; returns how many were deleted."""
        ...

    def count(self, where: Filter | None = None) -> int: ...

    def get(self, ids: Sequence[str]) -> list[PageRecord | None]:
        """Records for ``ids`` in order (``None`` for an unknown id)."""
        ...

    def get_embeddings(self, ids: Sequence[str]) -> list[torch.Tensor | None]:
        """Stored vectors ``(n_vectors, dim)`` float32 for ``ids`` (``None`` if unknown;
        ``(0, dim)`` for a page stored without vectors)."""
        ...

    def records(self, where: Filter | None = None) -> Iterator[PageRecord]: ...

    def sources(self) -> dict[str, str]:
        """Map of every stored source to its content hash."""
        ...

    def search(
        self, queries: EmbeddingsLike, k: int = 10, where: Filter | None = None
    ) -> list[list[SearchHit]]:
        """Exact top-``k`` for each query, best first, over pages matching ``where``
        (pages stored without vectors are never results)."""
        ...

    def close(self) -> None: ...
