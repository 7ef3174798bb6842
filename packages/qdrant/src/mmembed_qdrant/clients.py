"""Qdrant clients and embedded shards, one per local folder and process.

Qdrant's local mode and its embedded engine (qdrant-edge) each let one handle at a time
open a folder, so every index opened on the same folder in this process shares one handle
(reference-counted). Server clients are cheap HTTP sessions: each index gets its own.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from qdrant_client import QdrantClient

from mmembed.index import IndexLockedError, IndexNotFoundError

from .errors import translate_errors


class Release(Protocol):
    """Lets go of a client or local store; ``from_gc`` when a finaliser calls it."""

    def __call__(self, from_gc: bool = False) -> None: ...


_lock = threading.Lock()
# folder -> (handle, its close function, users)
_open: dict[str, tuple[Any, Callable[[], None], int]] = {}
_owner: int | None = None  # the thread inside a critical section of _lock
_deferred: list[str] = []  # releases from the garbage collector that ran inside one


class _Locked:
    """``_lock`` held by this thread; on exit, releases the garbage collector deferred."""

    def __enter__(self) -> None:
        global _owner
        _lock.acquire()
        _owner = threading.get_ident()

    def __exit__(self, *exc: object) -> None:
        global _owner
        try:
            while _deferred:
                _drop(_deferred.pop())
        finally:
            _owner = None
            _lock.release()


def _drop(key: str) -> None:
    """One user of ``key`` let go; the caller holds ``_lock``."""
    if key not in _open:  # closed at exit already
        return
    held, closer, users = _open[key]
    if users > 1:
        _open[key] = (held, closer, users - 1)
    else:
        del _open[key]
        closer()


@atexit.register
def _close_all() -> None:
    """Close local stores left open (e.g. by an adapter that never closed its index) while
    the interpreter can still run Qdrant's close; its finaliser fails later in shutdown."""
    with _lock:
        for _, close, _ in _open.values():
            close()
        _open.clear()
        _deferred.clear()


def acquire_shared(
    key: str, open_handle: Callable[[], Any], close: Callable[[Any], None]
) -> tuple[Any, Release]:
    """``(handle, release)`` for the folder ``key``: opened by ``open_handle`` for its first
    user in this process, closed by ``close`` when its last user releases it."""
    with _Locked():
        if key in _open:
            handle, closer, users = _open[key]
            _open[key] = (handle, closer, users + 1)
        else:
            handle = open_handle()
            _open[key] = (handle, lambda: close(handle), 1)
    released = False

    def release(from_gc: bool = False) -> None:
        """Let go of the folder (once); ``from_gc``: called by a finaliser, which may run
        inside this thread's own critical section, where it must not wait for the lock."""
        nonlocal released
        if released:
            return
        released = True
        if from_gc and _owner == threading.get_ident():
            _deferred.append(key)
            return
        with _Locked():
            _drop(key)

    return handle, release


def _closer(client: QdrantClient) -> Release:
    def close(from_gc: bool = False) -> None:
        client.close()

    return close


def acquire_client(
    *,
    url: str | None,
    api_key: str | None,
    path: str | os.PathLike[str] | None,
    timeout: int,
    must_exist: bool = False,
) -> tuple[QdrantClient, str, Release]:
    """``(client, location, release)`` for a server at ``url``, a local store at ``path``
    or (neither) a fresh in-memory store. ``must_exist`` (a read, or ``create=False``): a local
    store that is not there is refused before Qdrant's local mode would create its files."""
    if url is not None and path is not None:
        raise ValueError("pass url= (a Qdrant server) or path= (a local store), not both")
    if url is not None:
        with translate_errors("connect", url):
            # Version checks cost a request and only warn; failures surface as our errors below.
            client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        return client, url.rstrip("/"), _closer(client)
    if path is None:
        client = QdrantClient(":memory:")
        return client, ":memory:", _closer(client)
    key = str(Path(path).resolve())
    if must_exist:
        check_local_store(Path(key))

    def open_local() -> QdrantClient:
        try:
            return QdrantClient(path=key)
        except RuntimeError as exc:  # "Storage folder ... is already accessed by another instance"
            raise IndexLockedError(
                f"the local Qdrant store at {key} is open in another process ({exc}); local mode allows "
                "one process per folder — close it there, or use a Qdrant server for concurrent users."
            ) from exc

    client, release = acquire_shared(key, open_local, QdrantClient.close)
    return client, f"qdrant://{key}", release


LOCAL_STORE_MARKER = "meta.json"
"""The file Qdrant's local mode keeps at the top of its folder (and creates on open)."""


def check_local_store(folder: Path) -> None:
    """Refuse to open ``folder`` for reading unless Qdrant's local mode already keeps a store
    there: opening it would write ``meta.json`` and ``.lock`` (a read never writes), and a
    mistyped ``qdrant:///`` path, even one inside an embedded index's folder, would silently
    become an empty store."""
    if (folder / LOCAL_STORE_MARKER).is_file():
        return
    hint = (
        "check the path, or index into it first (`mmembed index FILES --index qdrant:///FOLDER/COLLECTION`)"
    )
    for candidate in (folder, *folder.parents):
        if (candidate / "manifest.json").is_file():
            hint = (
                f"{candidate} is an embedded mmembed index: pass it as `--index {candidate}` (no qdrant:///)"
            )
            break
        if (candidate / "mmembed.json").is_file() and (candidate / "shard").is_dir():
            hint = f"{candidate} looks like a qdrant-edge shard: open it as qdrant-edge://{candidate}"
            break
    raise IndexNotFoundError(
        f"no Qdrant local store at {folder} (a qdrant:///FOLDER/COLLECTION URI names a folder holding "
        f"Qdrant's {LOCAL_STORE_MARKER}): {hint}. Nothing was written."
    )
