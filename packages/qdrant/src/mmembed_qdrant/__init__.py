"""Qdrant backend for mmembed.

>>> index = open_qdrant_index("qdrant://localhost:6333/pages", encoder.info)  # doctest: +SKIP
>>> index = QdrantIndex.connect("pages", encoder.info, path="qdrant_store")    # doctest: +SKIP

``mmembed.open_index("qdrant://...")`` (CLI ``--index qdrant://...``, every adapter) lands
here through the ``mmembed.index_backends`` entry point.
"""

from __future__ import annotations

from .backend import QdrantIndex, point_id
from .errors import QdrantAuthError, QdrantUnavailableError
from .uri import open_qdrant_index, parse_qdrant_uri

__all__ = [
    "QdrantAuthError",
    "QdrantIndex",
    "QdrantUnavailableError",
    "open_qdrant_index",
    "parse_qdrant_uri",
    "point_id",
]
