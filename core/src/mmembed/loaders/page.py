"""One page of one document: identity, settings and a (lazily rendered) RGB image."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PIL import Image

from ..types import page_id

Renderer = Callable[[], Image.Image]


class Page:
    """A page coming out of :func:`mmembed.loaders.load_pages`.

    The image is rendered by the loader's background worker (``prefetch > 0``) or on
    first access of :attr:`image` (``prefetch=0``); it is cached until :meth:`release`,
    after which the next access renders it again.
    """

    __slots__ = (
        "__weakref__",
        "_image",
        "_lock",
        "_renderer",
        "content_hash",
        "metadata",
        "page",
        "page_count",
        "render",
        "source",
    )

    def __init__(
        self,
        *,
        source: str,
        page: int,
        page_count: int,
        content_hash: str,
        render: dict[str, Any],
        metadata: dict[str, Any],
        renderer: Renderer,
    ) -> None:
        self.source = source
        """Absolute path of the file, or the name a bytes / file-like source was given."""
        self.page = page
        """1-based page number (frame number for multi-page TIFF)."""
        self.page_count = page_count
        """Number of pages in the whole document (not only the selected ones)."""
        self.content_hash = content_hash
        """sha256 hex digest of the source file's bytes."""
        self.render = render
        """Render settings: backend, dpi/scale, max_pixels and the output ``width``/``height``."""
        self.metadata = metadata
        """Caller metadata given to the loader."""
        self._renderer = renderer
        self._image: Image.Image | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        """Stable id from (content hash, page): the same bytes and page always give the same id."""
        return page_id(self.content_hash, self.page)

    @property
    def image(self) -> Image.Image:
        """The page as an RGB image (rendered now if needed; raises ``LoadError`` if it cannot be)."""
        with self._lock:
            if self._image is None:
                self._image = self._renderer()
            return self._image

    @property
    def is_rendered(self) -> bool:
        return self._image is not None

    def load(self) -> Page:
        """Render now (if not yet) and return ``self``."""
        _ = self.image
        return self

    def release(self) -> None:
        """Drop the cached image to free its memory; :attr:`image` renders it again if asked."""
        with self._lock:
            self._image = None

    def __repr__(self) -> str:
        state = "rendered" if self._image is not None else "lazy"
        return (
            f"Page(source={self.source!r}, page={self.page}/{self.page_count}, "
            f"hash={self.content_hash[:12]}…, {state})"
        )
