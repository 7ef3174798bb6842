"""One open :class:`LocalIndex` per index folder per process, shared by reference-counted handles.

Long because :class:`SharedIndex` forwards every :class:`~mmembed.index.IndexBackend` method with
its full typed signature and docstring (about 200 lines of plain delegation); the sharing
logic itself (registry, reference counts, fork safety) is the first half.

The writer lock of an index belongs to one open ``LocalIndex``, so two independently opened
handles on one folder in one process conflict as soon as both write. Applications often hold
several users of one folder (an indexer, a retriever and a reranker; a framework that
deserialises its own copy of a store for each pipeline component). ``open_index(path,
shared=True)`` gives each of them a :class:`SharedIndex` handle on the single ``LocalIndex``
this process keeps for the folder (keyed by its real path), so they all read and write
through it. The ``LocalIndex`` is closed, and its writer lock released, when the last handle
is closed (or garbage-collected).

Other *processes* still get :class:`~mmembed.index.IndexLockedError` when they try to write
while this one holds the lock. A child created by ``fork`` starts with an empty registry, so
it never writes through the parent's lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ..scoring import EmbeddingsLike
from ..types import EncoderInfo, PageRecord, SearchHit
from . import format as fmt
from .errors import IndexClosedError, IndexReadOnlyError
from .filters import Filter
from .protocol import IndexBackend, PageInput

__all__ = ["SharedIndex", "open_shared", "shared_handles"]


class SharedTarget(IndexBackend, Protocol):
    """What a :class:`SharedIndex` needs of the index it shares (a
    :class:`mmembed.index.LocalIndex`; this module does not import it, which would be a circle)."""

    path: Path
    created_now: bool

    @property
    def manifest(self) -> fmt.Manifest: ...
    @property
    def dtype(self) -> str: ...
    @property
    def storage(self) -> str: ...
    @property
    def pooling(self) -> int: ...
    @property
    def keep_thumbnails(self) -> bool: ...
    @property
    def first_stage(self) -> str | None: ...
    def check_options(self, *, storage: str | None = None, pooling: int | None = None) -> None: ...
    def info(self) -> dict[str, Any]: ...
    def lock_for_writing(self) -> None: ...
    def upsert(self, pages: Sequence[PageInput], *, pooled: bool = False) -> list[str]: ...
    def compact(self) -> int: ...
    def extend_graph(self, *, force: bool = True) -> int: ...
    def search(
        self,
        queries: EmbeddingsLike | None,
        k: int = 10,
        where: Filter | None = None,
        *,
        candidates: int | None = None,
        exact: bool = False,
        mode: str = "visual",
        texts: Sequence[str] | str | None = None,
        alpha: float | None = None,
        rrf_k: int | None = None,
        dedupe: str | float | None = None,
    ) -> list[list[SearchHit]]: ...
    def search_text(
        self, texts: Sequence[str] | str, k: int = 10, where: Filter | None = None
    ) -> list[list[SearchHit]]: ...
    def prepare_text_store(self, tokenizer: str | None = None) -> dict[str, bool]: ...
    def pages_without_text(self) -> list[tuple[str, str, int, str]]: ...
    def store_texts(self, texts: Sequence[tuple[str, str]]) -> int: ...
    def get_texts(self, ids: Sequence[str]) -> list[str | None]: ...


Opener = Callable[..., SharedTarget]
"""Opens the folder's index: ``opener(key, encoder, create=..., storage=..., pooling=...,
dtype=..., keep_thumbnails=..., first_stage=...)`` (the ``LocalIndex`` class)."""


@dataclass
class _Entry:
    """The process's open index for one folder and how many handles use it."""

    key: str
    index: SharedTarget
    handles: int = 0
    identity: tuple[int, int] | None = None  # (device, inode) of the folder when it was opened

    def replaced(self) -> bool:
        """The folder was deleted (and maybe recreated) since it was opened: this index is a ghost."""
        return self.identity is not None and folder_identity(self.key) != self.identity


_registry_lock = threading.Lock()
_registry: dict[str, _Entry] = {}
_owner: int | None = None  # thread inside a registry critical section
_deferred: list[_Entry] = []  # releases from __del__ run while the registry was mid-change


def _forget_after_fork() -> None:
    """In a forked child, the parent's open indexes (and its writer lock) are not ours."""
    global _registry_lock, _registry, _owner, _deferred
    _registry_lock, _registry, _owner, _deferred = threading.Lock(), {}, None, []


os.register_at_fork(after_in_child=_forget_after_fork)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    global _owner
    with _registry_lock:
        _owner = threading.get_ident()
        try:
            yield
        finally:
            while _deferred:  # the registry is consistent again: finish deferred releases
                with contextlib.suppress(Exception):
                    _drop(_deferred.pop())
            _owner = None


def folder_identity(key: str) -> tuple[int, int] | None:
    """``(device, inode)`` of a folder, ``None`` when it does not exist."""
    try:
        stat = os.stat(key)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def folder_key(path: str | os.PathLike[str]) -> str:
    """Registry key of an index folder: its real absolute path (symlinks resolved)."""
    return os.path.realpath(Path(path).expanduser())


def open_shared(
    path: str | os.PathLike[str],
    encoder: EncoderInfo | None = None,
    *,
    create: bool = True,
    readonly: bool = False,
    storage: str | None = None,
    pooling: int | None = None,
    dtype: str | None = None,
    keep_thumbnails: bool = True,
    first_stage: str | None = None,
    opener: Opener,
    text_tokenizer: str | None = "unicode61",
) -> SharedIndex:
    """A new handle on the process's ``LocalIndex`` for ``path`` (opened with ``opener``, or
    created when ``create`` and not ``readonly``, if no handle on that folder is open yet).

    ``encoder``, when given, must match the stored encoder (``EncoderMismatchError``).
    ``storage`` and ``pooling`` apply at creation and are checked against an existing index
    (already open or not), like :func:`~mmembed.index.open_index`; ``dtype``,
    ``keep_thumbnails`` and ``first_stage`` only apply when the index is created. The shared
    ``LocalIndex`` is always opened writer-capable (opening takes no lock); a ``readonly``
    handle refuses writes itself, so readers and writers of one folder share one index.
    """
    key = folder_key(path)
    with _locked():
        entry = _registry.get(key)
        if entry is not None and entry.replaced():
            # Deleted or replaced on disk: its handles keep the ghost until they let go; new ones
            # open the folder as it is now.
            del _registry[key]
            entry = None
        if entry is None:
            index = opener(
                key,
                encoder,
                create=create and not readonly,
                storage=storage,
                pooling=pooling,
                dtype=dtype,
                keep_thumbnails=keep_thumbnails,
                first_stage=first_stage,
                text_tokenizer=text_tokenizer,
            )
            entry = _registry[key] = _Entry(key, index, identity=folder_identity(key))
        else:
            if encoder is not None:
                entry.index.encoder.check_compatible(encoder, index_path=key)
            entry.index.check_options(storage=storage, pooling=pooling)
        entry.handles += 1
        return SharedIndex(entry, readonly=readonly)


def shared_handles(path: str | os.PathLike[str]) -> int:
    """How many open handles share this process's index for ``path`` (0: none is open)."""
    with _locked():
        entry = _registry.get(folder_key(path))
        return entry.handles if entry is not None else 0


def _drop(entry: _Entry) -> None:
    """One handle of ``entry`` let go; the caller holds the registry lock."""
    entry.handles -= 1
    if entry.handles > 0:
        return
    if _registry.get(entry.key) is entry:
        del _registry[entry.key]
    # Closed under the registry lock: a new opener of this folder must not open a second
    # LocalIndex while this one still holds the writer lock.
    entry.index.close()


def _release(handle: SharedIndex, *, from_gc: bool = False) -> None:
    if from_gc and _owner == threading.get_ident():
        # The garbage collector ran inside this thread's own registry critical section:
        # taking the lock would deadlock, so the release runs when that section ends.
        entry, handle._entry = handle._entry, None
        if entry is not None:
            _deferred.append(entry)
        return
    with _locked():
        entry, handle._entry = handle._entry, None
        if entry is not None:
            _drop(entry)


class SharedIndex:
    """A handle on the one :class:`LocalIndex` this process keeps open for a folder.

    Made by ``open_index(path, shared=True)``. It implements
    :class:`~mmembed.index.IndexBackend` (plus ``compact``, ``info`` and
    ``lock_for_writing``) by calling the shared index, which serialises concurrent calls
    from several threads. :meth:`close` closes this handle only; the index itself closes
    when its last handle does. A ``readonly`` handle raises
    :class:`~mmembed.index.IndexReadOnlyError` on writes.
    """

    def __init__(self, entry: _Entry, *, readonly: bool) -> None:
        # Private: use open_index(path, shared=True), which counts the handle.
        self._entry: _Entry | None = entry
        self.readonly = readonly
        self.path: Path = entry.index.path

    # ------------------------------------------------------------------ plumbing

    @property
    def closed(self) -> bool:
        return self._entry is None

    @property
    def created_now(self) -> bool:
        """The folder became an index when this process opened it (see ``LocalIndex.created_now``)."""
        entry = self._entry
        return entry is not None and entry.index.created_now

    @property
    def replaced(self) -> bool:
        """The folder was deleted or replaced since this handle's index was opened: reopen it."""
        entry = self._entry
        return entry is not None and entry.replaced()

    def _index(self) -> SharedTarget:
        entry = self._entry
        if entry is None:
            raise IndexClosedError(
                f"this handle on the index at {self.path} was closed; open it again with open_index()."
            )
        return entry.index

    def _writable(self) -> SharedTarget:
        index = self._index()
        if self.readonly:
            raise IndexReadOnlyError(
                f"this handle on the index at {self.path} was opened with readonly=True; open one "
                "without readonly to add, delete or compact pages."
            )
        return index

    def close(self) -> None:
        """Close this handle (idempotent); the shared index closes with its last handle."""
        _release(self)

    def __enter__(self) -> SharedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            _release(self, from_gc=True)

    def __copy__(self) -> SharedIndex:
        """Another handle on the same index (frameworks deep-copy components)."""
        with _locked():
            entry = self._entry
            if entry is None:
                return SharedIndex._closed_copy(self)
            entry.handles += 1
            return SharedIndex(entry, readonly=self.readonly)

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedIndex:
        return self.__copy__()

    @staticmethod
    def _closed_copy(handle: SharedIndex) -> SharedIndex:
        copy = object.__new__(SharedIndex)
        copy._entry, copy.readonly, copy.path = None, handle.readonly, handle.path
        return copy

    def __reduce__(self) -> Any:
        raise TypeError(
            f"an open index handle ({self.path}) cannot be pickled or sent to another process; "
            "pass the folder path and open it there with open_index()."
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else "readonly" if self.readonly else "read-write"
        return f"SharedIndex({str(self.path)!r}, {state})"

    # ------------------------------------------------------------------ description

    @property
    def encoder(self) -> EncoderInfo:
        return self._index().encoder

    @property
    def manifest(self) -> fmt.Manifest:
        return self._index().manifest

    @property
    def dtype(self) -> str:
        return self._index().dtype

    @property
    def storage(self) -> str:
        return self._index().storage

    @property
    def pooling(self) -> int:
        return self._index().pooling

    @property
    def keep_thumbnails(self) -> bool:
        return self._index().keep_thumbnails

    @property
    def first_stage(self) -> str | None:
        return self._index().first_stage

    def info(self) -> dict[str, Any]:
        return self._index().info()

    # ------------------------------------------------------------------ writing

    def lock_for_writing(self) -> None:
        """Take the folder's writer lock for the shared index (held until its last handle closes)."""
        self._writable().lock_for_writing()

    def add(self, pages: Sequence[PageInput]) -> list[str]:
        return self._writable().add(pages)

    def upsert(self, pages: Sequence[PageInput], *, pooled: bool = False) -> list[str]:
        return self._writable().upsert(pages, pooled=pooled)

    def delete(self, ids: Sequence[str] | None = None, *, where: Filter | None = None) -> int:
        return self._writable().delete(ids, where=where)

    def compact(self) -> int:
        return self._writable().compact()

    def extend_graph(self, *, force: bool = True) -> int:
        return self._writable().extend_graph(force=force)

    # ------------------------------------------------------------------ reading

    def count(self, where: Filter | None = None) -> int:
        return self._index().count(where)

    def get(self, ids: Sequence[str]) -> list[PageRecord | None]:
        return self._index().get(ids)

    def get_embeddings(self, ids: Sequence[str]) -> list[torch.Tensor | None]:
        return self._index().get_embeddings(ids)

    def records(self, where: Filter | None = None) -> Iterator[PageRecord]:
        return self._index().records(where)

    def sources(self) -> dict[str, str]:
        return self._index().sources()

    def search(
        self,
        queries: EmbeddingsLike | None,
        k: int = 10,
        where: Filter | None = None,
        *,
        candidates: int | None = None,
        exact: bool = False,
        mode: str = "visual",
        texts: Sequence[str] | str | None = None,
        alpha: float | None = None,
        rrf_k: int | None = None,
        dedupe: str | float | None = None,
    ) -> list[list[SearchHit]]:
        return self._index().search(
            queries,
            k=k,
            where=where,
            candidates=candidates,
            exact=exact,
            mode=mode,
            texts=texts,
            alpha=alpha,
            rrf_k=rrf_k,
            dedupe=dedupe,
        )

    def search_text(
        self, texts: Sequence[str] | str, k: int = 10, where: Filter | None = None
    ) -> list[list[SearchHit]]:
        return self._index().search_text(texts, k=k, where=where)

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        return self._index().get_texts(ids)

    def prepare_text_store(self, tokenizer: str | None = None) -> dict[str, bool]:
        return self._writable().prepare_text_store(tokenizer)

    def pages_without_text(self) -> list[tuple[str, str, int, str]]:
        return self._index().pages_without_text()

    def store_texts(self, texts: Sequence[tuple[str, str]]) -> int:
        return self._writable().store_texts(texts)
