"""mmembed's IndexBackend contract, unchanged, against the Qdrant backend: Qdrant's local
mode (the code path a server uses), and a real server when
``QDRANT_URL`` is set (``-m qdrant_server``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mmembed.index import IndexBackend, open_backend
from mmembed.types import EncoderInfo
from mmembed_qdrant import QdrantIndex
from mmembed_testing.backend_contract import IndexBackendContract

pytest.importorskip("qdrant_client")


class TestQdrantInMemory(IndexBackendContract):
    def make_backend(self, path: Path, encoder: EncoderInfo) -> IndexBackend:
        return QdrantIndex.connect("pages", encoder)


class TestQdrantExactSearch(IndexBackendContract):
    def make_backend(self, path: Path, encoder: EncoderInfo) -> IndexBackend:
        return QdrantIndex.connect("pages", encoder, exact=True)


@pytest.mark.qdrant_server
class TestQdrantServer(IndexBackendContract):
    """``pytest -m qdrant_server`` with ``QDRANT_URL`` (and ``QDRANT_API_KEY``) set."""

    @pytest.fixture(autouse=True)
    def _server(self, server_collection: Callable[[], str]) -> None:
        self.new_collection = server_collection

    def make_backend(self, path: Path, encoder: EncoderInfo) -> IndexBackend:
        return open_backend(self.new_collection(), encoder)
