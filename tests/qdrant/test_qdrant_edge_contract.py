"""mmembed's IndexBackend contract, unchanged, against Qdrant's embedded engine (qdrant-edge),
through the ``qdrant-edge://`` URI every caller uses (``exact=True`` search: test_qdrant_edge.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmembed.index import IndexBackend, open_backend
from mmembed.types import EncoderInfo
from mmembed_testing.backend_contract import IndexBackendContract

pytest.importorskip("qdrant_edge")


class TestQdrantEdge(IndexBackendContract):
    def make_backend(self, path: Path, encoder: EncoderInfo) -> IndexBackend:
        return open_backend(f"qdrant-edge://{path}", encoder)
