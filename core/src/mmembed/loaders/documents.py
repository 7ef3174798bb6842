"""One opened file of any supported kind, seen as numbered pages with a renderer each."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from typing import Any

from PIL import Image

from .errors import LoadError, issue_error
from .images import MAX_DECODED_PIXELS, ImageHandle, fit_pixels
from .office import convert_to_pdf
from .options import LoaderOptions
from .page import Renderer
from .pdf import PdfHandle, plan_render
from .poppler import render_with_poppler
from .sources import SourceItem


class Document(ABC):
    """A file opened for page-by-page loading."""

    source: str

    @property
    @abstractmethod
    def page_count(self) -> int: ...

    @abstractmethod
    def plan(self, index: int) -> tuple[dict[str, Any], Renderer]:
        """Render settings and a renderer of the 0-based page ``index``; raises
        ``LoadError`` when that page cannot be loaded (e.g. absurd size)."""

    @abstractmethod
    def close(self) -> None:
        """Free what the open file holds; renderers handed out stay usable (they reopen)."""


class PdfPages(Document):
    def __init__(
        self, handle: PdfHandle, options: LoaderOptions, extra: dict[str, Any] | None = None
    ) -> None:
        self.source = handle.source
        self._handle = handle
        self._options = options
        self._extra = extra or {}
        handle.open()

    @property
    def page_count(self) -> int:
        return self._handle.page_count

    def plan(self, index: int) -> tuple[dict[str, Any], Renderer]:
        options = self._options
        plan = plan_render(
            self.source,
            index + 1,
            self._handle.page_size(index),
            dpi=options.dpi,
            max_pixels=options.max_pixels,
            max_image_pixels=options.max_image_pixels,
        )
        settings: dict[str, Any] = {
            "backend": options.backend,
            "dpi": options.dpi,
            "max_pixels": options.max_pixels,
            "scale": round(plan.scale, 6),
            "width": plan.width,
            "height": plan.height,
            **self._extra,
        }
        render: Callable[[], Image.Image]
        if options.backend == "pdf2image":
            render = partial(
                render_with_poppler,
                self.source,
                index,
                plan.scale * 72.0,
                path=self._handle.path,
                data=self._handle.data,
                password=self._handle.password_used,
            )
        else:
            render = partial(self._handle.render, index, plan.scale)
        return settings, guarded(self.source, index + 1, render)

    def close(self) -> None:
        self._handle.close()


class ImagePages(Document):
    def __init__(self, handle: ImageHandle, options: LoaderOptions) -> None:
        self.source = handle.source
        self._handle = handle
        self._options = options
        self._sizes = handle.probe()

    @property
    def page_count(self) -> int:
        return len(self._sizes)

    def plan(self, index: int) -> tuple[dict[str, Any], Renderer]:
        width, height = self._sizes[index]
        cap = self._options.max_image_pixels
        if cap is not None and width * height > cap:
            raise issue_error(
                self.source,
                f"is {width} × {height} = {width * height / 1e6:.0f} M pixels, above "
                f"max_image_pixels={cap:_} (decompression-bomb guard)",
                "If you trust the file, raise max_image_pixels (CLI: --max-image-pixels); otherwise "
                "leave it out",
                code="image_too_large",
                page=index + 1 if len(self._sizes) > 1 else None,
            )
        limit = MAX_DECODED_PIXELS if self._options.max_pixels is None else self._options.max_pixels
        out_w, out_h = fit_pixels(width, height, limit)  # what render() gives
        settings = {
            "backend": "pillow",
            "max_pixels": self._options.max_pixels,
            "width": out_w,
            "height": out_h,
        }
        render = partial(self._handle.render, index, self._options.max_pixels)
        return settings, guarded(self.source, index + 1, render)

    def close(self) -> None:
        """Close a multi-frame file kept open between renders (single images keep nothing)."""
        self._handle.close()


def guarded(source: str, page: int, render: Callable[[], Image.Image]) -> Renderer:
    """``render`` with any unexpected failure turned into a ``LoadError`` naming the page."""

    def run() -> Image.Image:
        try:
            return render()
        except LoadError:
            raise
        except Exception as exc:
            raise issue_error(
                source,
                f"could not be rendered (unexpected {type(exc).__name__}: {exc})",
                "The page is probably damaged; repair or re-export the file, or skip the page with page_range",
                code="render_failed",
                page=page,
            ) from exc

    return run


def open_document(item: SourceItem, kind: str, head: bytes, options: LoaderOptions) -> Document:
    """Open ``item`` as a ``kind`` (``pdf`` / ``image`` / ``office``) document; raises ``LoadError``."""
    if kind == "image":
        return ImagePages(ImageHandle(item.name, path=item.path, data=item.data), options)
    if kind == "office":
        pdf_bytes = convert_to_pdf(item.name, path=item.path, data=item.data, timeout=options.office_timeout)
        handle = PdfHandle(item.name, data=pdf_bytes, password=options.password_for(item.name))
        return PdfPages(handle, options, extra={"converted_with": "libreoffice"})
    if kind == "pdf":
        handle = PdfHandle(
            item.name, path=item.path, data=item.data, password=options.password_for(item.name), head=head
        )
        return PdfPages(handle, options)
    raise ValueError(f"unknown document kind {kind!r}")
