"""Where an index lives: a folder (the embedded index) or a URI another backend serves.

``open_backend("my_index", ...)`` opens the embedded index; ``open_backend("qdrant://host:6333/pages", ...)``
opens whatever backend registered the ``qdrant`` scheme under the ``mmembed.index_backends``
entry-point group (``mmembed-qdrant`` does). The CLI and the adapters open indexes through
this one function, so every one of them accepts a URI the same way as a folder.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from ..types import EncoderInfo, MMEmbedError

if TYPE_CHECKING:
    from .protocol import IndexBackend

ENTRY_POINT_GROUP = "mmembed.index_backends"
_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# A backend's package to install, for the schemes mmembed knows about.
KNOWN_SCHEMES = {
    "qdrant": "mmembed-qdrant",
    "qdrants": "mmembed-qdrant",
    "qdrant-edge": "mmembed-qdrant[edge]",
}


def uri_scheme(location: str | os.PathLike[str]) -> str | None:
    """The scheme of ``location`` when it is a backend URI (``qdrant://...``), else ``None``."""
    if not isinstance(location, str):
        return None
    match = _URI.match(location)
    return match.group(1).lower() if match and match.group(1).lower() != "file" else None


def open_backend(
    location: str | os.PathLike[str],
    encoder: EncoderInfo | None = None,
    *,
    create: bool = True,
    readonly: bool = False,
    shared: bool = False,
    **options: Any,
) -> IndexBackend:
    """Open the index at ``location`` — a folder, or a URI such as
    ``qdrant://host:6333/collection`` — creating it when missing (needs ``encoder``).

    An existing index must hold ``encoder``'s vectors (:class:`EncoderMismatchError`).
    ``shared`` applies to folders (see :func:`open_index`); ``options`` go to the backend
    (for a folder: ``storage``, ``pooling``, ``dtype``, ``keep_thumbnails``)."""
    # Imported here: uri_scheme (the CLI's folder-or-URI test) stays free of torch.
    from .local import open_index
    from .protocol import IndexBackend

    scheme = uri_scheme(location)
    if scheme is None:
        return open_index(location, encoder, create=create, readonly=readonly, shared=shared, **options)
    openers = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
    if not openers:
        package = KNOWN_SCHEMES.get(scheme)
        hint = f"pip install '{package}'" if package else "install the package that provides it"
        raise MMEmbedError(f"no index backend handles {scheme}:// URIs such as {location!r}; {hint}")
    opener = openers[0].load()
    backend = opener(location, encoder, create=create, readonly=readonly, **options)
    if not isinstance(backend, IndexBackend):
        raise MMEmbedError(
            f"the {scheme}:// backend returned a {type(backend).__name__}, not an IndexBackend"
        )
    return backend
