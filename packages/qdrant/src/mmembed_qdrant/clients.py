"""Qdrant clients, one per local store and process.

Qdrant's local mode lets one client at a time open a folder, so every index opened on the
same ``path=`` in this process shares one client (reference-counted). Server clients are
cheap HTTP sessions: each index gets its own.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from pathlib import Path

from qdrant_client import QdrantClient

from mmembed.index import IndexLockedError

from .errors import translate_errors

_lock = threading.Lock()
_local: dict[str, tuple[QdrantClient, int]] = {}


@atexit.register
def _close_all() -> None:
    """Close local stores left open (e.g. by an adapter that never closed its index) while
    the interpreter can still run Qdrant's close; its finaliser fails later in shutdown."""
    with _lock:
        for client, _ in _local.values():
            client.close()
        _local.clear()


def acquire_client(
    *,
    url: str | None,
    api_key: str | None,
    path: str | os.PathLike[str] | None,
    timeout: int,
) -> tuple[QdrantClient, str, Callable[[], None]]:
    """``(client, location, release)`` for a server at ``url``, a local store at ``path``
    or (neither) a fresh in-memory store."""
    if url is not None and path is not None:
        raise ValueError("pass url= (a Qdrant server) or path= (a local store), not both")
    if url is not None:
        with translate_errors("connect", url):
            # Version checks cost a request and only warn; failures surface as our errors below.
            client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        return client, url.rstrip("/"), client.close
    if path is None:
        client = QdrantClient(":memory:")
        return client, ":memory:", client.close
    key = str(Path(path).resolve())
    with _lock:
        if key in _local:
            client, users = _local[key]
            _local[key] = (client, users + 1)
        else:
            try:
                client = QdrantClient(path=key)
            except RuntimeError as exc:  # "Storage folder ... is already accessed by another instance"
                raise IndexLockedError(
                    f"the local Qdrant store at {key} is open in another process ({exc}); local mode allows "
                    "one process per folder — close it there, or use a Qdrant server for concurrent users."
                ) from exc
            _local[key] = (client, 1)

    def release() -> None:
        with _lock:
            if key not in _local:  # closed at exit already
                return
            client, users = _local[key]
            if users > 1:
                _local[key] = (client, users - 1)
            else:
                del _local[key]
                client.close()

    return client, f"qdrant://{key}", release
