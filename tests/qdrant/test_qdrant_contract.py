"""mmembed's IndexBackend contract, unchanged, against the Qdrant backend: Qdrant's local
mode (the code path a server uses), and a real server when
``QDRANT_URL`` is set (``-m qdrant_server``)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from mmembed.index import IndexBackend
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
    def make_backend(self, path: Path, encoder: EncoderInfo) -> IndexBackend:
        url = os.environ.get("QDRANT_URL")
        if not url:
            pytest.skip("set QDRANT_URL (and QDRANT_API_KEY if needed) to run against a Qdrant server")
        name = f"mmembed-test-{uuid.uuid4().hex[:12]}"
        return QdrantIndex.connect(name, encoder, url=url, api_key=os.environ.get("QDRANT_API_KEY"))
