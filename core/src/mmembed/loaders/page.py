"""One page of one document: identity, settings and a (lazily rendered) RGB image."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from PIL import Image

from ..types import clean_text, page_id

logger = logging.getLogger(__name__)

Renderer = Callable[[], Image.Image]
T = TypeVar("T")


class LazyItem(Generic[T]):
    """What a page and a media segment share: identity (source, number, count, content hash)
    and a value made on demand by the loader (rendered or decoded), cached until released."""

    __slots__ = (
        "__weakref__",
        "_lock",
        "_make",
        "_value",
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
        make: Callable[[], T],
    ) -> None:
        self.source = source
        """Absolute path of the file, or the name a bytes / file-like source was given."""
        self.page = page
        """1-based number inside the file (page, TIFF frame or media segment)."""
        self.page_count = page_count
        """How many there are in the whole file (not only the selected ones)."""
        self.content_hash = content_hash
        """sha256 hex digest of the source file's bytes."""
        self.render = render
        """The loader's settings for this item and the size / span it came out at."""
        self.metadata = metadata
        """Caller metadata given to the loader."""
        self._make = make
        self._value: T | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        """Stable id from (content hash, number): the same bytes and number always give the same id."""
        return page_id(self.content_hash, self.page)

    def _get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value

    @property
    def is_rendered(self) -> bool:
        return self._value is not None

    def release(self) -> None:
        """Drop the cached value to free its memory; the next access makes it again."""
        with self._lock:
            self._value = None


class Page(LazyItem[Image.Image]):
    """A page coming out of :func:`mmembed.loaders.load_pages`.

    The image is rendered by the loader's background worker (``prefetch > 0``) or on
    first access of :attr:`image` (``prefetch=0``); it is cached until :meth:`release`,
    after which the next access renders it again. ``render`` holds the render settings:
    backend, dpi/scale, max_pixels and the output ``width``/``height``.
    """

    __slots__ = ("_text_reader",)

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
        text_reader: Callable[[], str] | None = None,
    ) -> None:
        self._text_reader = text_reader
        super().__init__(
            source=source,
            page=page,
            page_count=page_count,
            content_hash=content_hash,
            render=render,
            metadata=metadata,
            make=renderer,
        )

    @property
    def image(self) -> Image.Image:
        """The page as an RGB image (rendered now if needed; raises ``LoadError`` if it cannot be)."""
        return self._get()

    @property
    def has_text_layer(self) -> bool:
        """Whether the page's kind carries a text layer (PDF, Office; not images)."""
        return self._text_reader is not None

    @property
    def text(self) -> str:
        """The page's own text layer, cleaned for storage (invalid UTF-8 and control characters
        replaced, bounded by :data:`mmembed.types.MAX_TEXT_CHARS`); ``""`` for an image, a
        scan without a text layer, or a text layer PDFium cannot read (logged). Never OCR."""
        if self._text_reader is None:
            return ""
        where = f"page {self.page} of {self.source}"
        try:
            raw = self._text_reader()
        except Exception as exc:  # a damaged text layer must not cost the page its image
            logger.warning("%s: its text layer cannot be read (%s); stored without text", where, exc)
            return ""
        return clean_text(raw, where=where)

    def load(self) -> Page:
        """Render now (if not yet) and return ``self``."""
        _ = self.image
        return self

    def __repr__(self) -> str:
        state = "rendered" if self.is_rendered else "lazy"
        return (
            f"Page(source={self.source!r}, page={self.page}/{self.page_count}, "
            f"hash={self.content_hash[:12]}…, {state})"
        )
