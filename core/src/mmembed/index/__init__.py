"""Page indexes: the :class:`IndexBackend` protocol and its default, embedded implementation.

>>> index = open_index("my_index", encoder_info)          # doctest: +SKIP
>>> index.add([PageInput(embedding, "a.pdf", 1, sha256)])  # doctest: +SKIP
>>> index.search(query_embeddings, k=5, where={"source": "a.pdf"})  # doctest: +SKIP

``open_index(path, shared=True)`` hands every user of a folder in one process a handle on
the same open index (see :mod:`mmembed.index.shared`). ``open_backend(location)`` opens a
folder or a backend URI such as ``qdrant://host:6333/pages`` (see :mod:`mmembed.index.locations`).

The on-disk format is documented in ``docs/index-format.md``.
"""

from __future__ import annotations

from .errors import (
    DuplicatePageError,
    FilterError,
    IndexClosedError,
    IndexDamagedError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    IndexOptionError,
    IndexReadOnlyError,
    IndexWriteError,
    InvalidPageError,
)
from .format import FORMAT_VERSION
from .local import LocalIndex, open_index
from .locations import open_backend, uri_scheme
from .protocol import Filter, IndexBackend, PageInput, page_id
from .shared import SharedIndex

__all__ = [
    "FORMAT_VERSION",
    "DuplicatePageError",
    "Filter",
    "FilterError",
    "IndexBackend",
    "IndexClosedError",
    "IndexDamagedError",
    "IndexFormatError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexOptionError",
    "IndexReadOnlyError",
    "IndexWriteError",
    "InvalidPageError",
    "LocalIndex",
    "PageInput",
    "SharedIndex",
    "open_backend",
    "open_index",
    "page_id",
    "uri_scheme",
]
