"""Qdrant backend for mmembed.

>>> index = open_qdrant_index("qdrant://localhost:6333/pages", encoder.info)  # doctest: +SKIP
>>> index = QdrantIndex.connect("pages", encoder.info, path="qdrant_store")    # doctest: +SKIP
>>> index = open_qdrant_edge_index("qdrant-edge:///data/pages", encoder.info)  # doctest: +SKIP

``mmembed.open_index("qdrant://...")`` (CLI ``--index qdrant://...``, every adapter) lands
here through the ``mmembed.index_backends`` entry point.
"""

from __future__ import annotations

from .backend import QdrantIndex, point_id
from .edge import QdrantEdgeIndex, open_qdrant_edge_index
from .errors import QdrantAuthError, QdrantUnavailableError
from .uri import open_qdrant_index, parse_qdrant_uri

__all__ = [
    "QdrantAuthError",
    "QdrantEdgeIndex",
    "QdrantIndex",
    "QdrantUnavailableError",
    "open_qdrant_edge_index",
    "open_qdrant_index",
    "parse_qdrant_uri",
    "point_id",
]
