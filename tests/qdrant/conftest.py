"""A real Qdrant server for the ``qdrant_server`` tests: ``QDRANT_URL`` (and
``QDRANT_API_KEY`` if it needs one). Without it they skip; with a server that cannot be
reached every one of them errors with the reason, not a traceback per request."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest


@pytest.fixture(scope="session")
def qdrant_url() -> str:
    from mmembed_qdrant.clients import acquire_client
    from mmembed_qdrant.errors import translate_errors

    url = os.environ.get("QDRANT_URL")
    if not url:
        pytest.skip("set QDRANT_URL (and QDRANT_API_KEY if needed) to run against a Qdrant server")
    client, location, release = acquire_client(
        url=url, api_key=os.environ.get("QDRANT_API_KEY"), path=None, timeout=5
    )
    try:
        with translate_errors("list collections", location):
            client.get_collections()
    except Exception as exc:  # unreachable, refused key: say so once, plainly
        pytest.fail(f"QDRANT_URL={url}: {exc}", pytrace=False)
    finally:
        release()
    return url


@pytest.fixture
def server_collection(qdrant_url: str) -> Iterator[Callable[[], str]]:
    """Makes ``qdrant://`` URIs of fresh collections on the server, dropped afterwards."""
    from qdrant_client import QdrantClient

    made: list[str] = []

    def make() -> str:
        made.append(f"mmembed-test-{uuid.uuid4().hex[:12]}")
        parts = urlsplit(qdrant_url)
        scheme = "qdrants" if parts.scheme == "https" else "qdrant"
        return f"{scheme}://{parts.hostname}:{parts.port or 6333}/{made[-1]}"

    yield make
    client = QdrantClient(url=qdrant_url, api_key=os.environ.get("QDRANT_API_KEY"), check_compatibility=False)
    for name in made:
        client.delete_collection(name)
    client.close()
