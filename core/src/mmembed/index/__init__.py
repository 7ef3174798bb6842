"""Page indexes: the :class:`IndexBackend` protocol and its default, embedded implementation.

>>> index = open_index("my_index", encoder_info)          # doctest: +SKIP
>>> index.add([PageInput(embedding, "a.pdf", 1, sha256)])  # doctest: +SKIP
>>> index.search(query_embeddings, k=5, where={"source": "a.pdf"})  # doctest: +SKIP

``open_index(path, shared=True)`` hands every user of a folder in one process a handle on
the same open index (see :mod:`mmembed.index.shared`). ``open_backend(location)`` opens a
folder or a backend URI such as ``qdrant://host:6333/pages`` (see :mod:`mmembed.index.locations`).

The on-disk format is documented in ``docs/index-format.md``.

Importing this package is light (the errors only): every other public name is imported on
first use, so ``mmembed info`` reads a folder without loading torch (the vectors need it).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

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

# Public name -> the submodule it is imported from on first use.
_LAZY = {
    "FORMAT_VERSION": "format",
    "LocalIndex": "local",
    "open_index": "local",
    "open_backend": "locations",
    "uri_scheme": "locations",
    "Filter": "protocol",
    "IndexBackend": "protocol",
    "PageInput": "protocol",
    "page_id": "protocol",
    "SharedIndex": "shared",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        # A submodule (``mmembed.index.protocol``) stays reachable as an attribute, as when
        # this package imported them all.
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .format import FORMAT_VERSION
    from .local import LocalIndex, open_index
    from .locations import open_backend, uri_scheme
    from .protocol import Filter, IndexBackend, PageInput, page_id
    from .shared import SharedIndex
