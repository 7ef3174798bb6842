"""One open mmembed index per folder per process.

mmembed's index allows one writer per folder, and its writer lock belongs to an open
handle. A Haystack pipeline easily holds several store objects for one folder (the writer,
the retriever and the ranker each deserialise their own copy), so they share a handle.
The handle closes when the last store using it lets go of it.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path

from mmembed.index import IndexNotFoundError, LocalIndex
from mmembed.types import EncoderInfo

_lock = threading.Lock()
_open: weakref.WeakValueDictionary[str, LocalIndex] = weakref.WeakValueDictionary()


def _key(path: str) -> str:
    return os.path.realpath(Path(path).expanduser())


def shared_index(
    path: str, *, create_with: EncoderInfo | None = None, dtype: str = "float16"
) -> LocalIndex | None:
    """The process's handle on the index at ``path``; created with ``create_with`` when the
    folder holds none, else ``None`` when there is no index yet."""
    key = _key(path)
    with _lock:
        index = _open.get(key)
        if index is not None:
            return index
        try:
            index = LocalIndex(key, create_with, create=create_with is not None, dtype=dtype)
        except IndexNotFoundError:
            if create_with is not None:
                raise
            return None
        _open[key] = index
        return index
