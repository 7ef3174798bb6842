"""PDF pages through pypdfium2 (PDFium): open, check, render — one page at a time.

PDFium is not thread-safe, not even across different documents, so every call into it
goes through :data:`PDFIUM_LOCK`; documents are closed explicitly under that lock rather
than left to the garbage collector of whichever thread drops them last.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from .errors import LoadError, issue_error, unreadable_error

PDFIUM_LOCK = threading.RLock()

# PDFium's FPDF_GetLastError codes (fpdfview.h).
_ERR_UNKNOWN, _ERR_FILE, _ERR_FORMAT, _ERR_PASSWORD, _ERR_SECURITY = 1, 2, 3, 4, 5

REPAIR_HINT = (
    "Re-download or re-export it, try repairing it (`qpdf damaged.pdf repaired.pdf`), "
    "or leave it out of the input"
)


@dataclass(frozen=True)
class RenderPlan:
    """How one page will be rasterised: the scale (pixels per PDF point) and output size."""

    scale: float
    width: int
    height: int


def plan_render(
    source: str,
    page: int,
    size_pt: tuple[float, float],
    *,
    dpi: float,
    max_pixels: int | None,
    max_image_pixels: int | None,
) -> RenderPlan:
    """Pick the render scale of a page of ``size_pt`` points; raise ``LoadError`` when the
    page has no area or would render larger than ``max_image_pixels``."""
    width_pt, height_pt = size_pt
    if not (width_pt > 0 and height_pt > 0 and math.isfinite(width_pt * height_pt)):
        raise issue_error(
            source,
            f"has an invalid page size ({width_pt:g} × {height_pt:g} pt)",
            "The page box is broken; repair the file (`qpdf damaged.pdf repaired.pdf`) or skip the page "
            "with page_range",
            code="bad_page_size",
            page=page,
        )
    scale = dpi / 72.0
    if max_pixels is not None:
        scale = min(scale, math.sqrt(max_pixels / (width_pt * height_pt)))
        while scale > 0 and math.ceil(width_pt * scale) * math.ceil(height_pt * scale) > max_pixels:
            scale *= 0.995  # ceil() rounding can overshoot the budget by a row or column
    width, height = math.ceil(width_pt * scale), math.ceil(height_pt * scale)
    if max_image_pixels is not None and width * height > max_image_pixels:
        raise issue_error(
            source,
            f"is {width_pt / 72:.4g} × {height_pt / 72:.4g} in; at {dpi:g} dpi that renders to "
            f"{width} × {height} = {width * height / 1e6:.0f} M pixels, above max_image_pixels="
            f"{max_image_pixels:_}",
            "Pass max_pixels=… (e.g. 2_000_000) to render big pages downscaled, lower dpi, or raise "
            "max_image_pixels if you really want it this large",
            code="page_too_large",
            page=page,
        )
    return RenderPlan(scale=scale, width=max(width, 1), height=max(height, 1))


def describe_content(head: bytes) -> str:
    """A short guess at what a file that is not a PDF actually is, from its first bytes."""
    probe = head.lstrip()[:16]
    lowered = probe.lower()
    guesses = [
        (b"<!doctype html", "an HTML page (a failed download?)"),
        (b"<html", "an HTML page (a failed download?)"),
        (b"<?xml", "an XML file"),
        (b"{", "a JSON / text file"),
        (b"\x89png", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"gif8", "a GIF image"),
        (b"pk\x03\x04", "a ZIP archive (an Office document?)"),
        (b"\xd0\xcf\x11\xe0", "an old Office document"),
        (b"ii*\x00", "a TIFF image"),
        (b"mm\x00*", "a TIFF image"),
    ]
    for magic, label in guesses:
        if lowered.startswith(magic):
            return label
    return f"data starting with {probe[:12]!r}"


def looks_like_pdf(head: bytes) -> bool:
    # The spec allows junk before the header; PDFium accepts the marker in the first 1 KiB.
    return b"%PDF-" in head[:1024]


class PdfHandle:
    """An on-demand PDFium document of one source, by path or bytes.

    :meth:`open` is idempotent, :meth:`close` frees PDFium's memory, and :meth:`render`
    reopens the document if it was closed, so pages can be rendered again later.
    """

    def __init__(
        self,
        source: str,
        *,
        path: Path | None = None,
        data: bytes | None = None,
        password: str | None = None,
        head: bytes = b"",
    ) -> None:
        if (path is None) == (data is None):
            raise ValueError("give exactly one of path or data")
        self.source = source
        self.path = path
        self.data = data
        self._password = password
        self.password_used: str | None = password
        """The password that opened the document (``None`` when it needed none)."""
        self._head = head
        self._cell: list[Any] = [None]  # the open PdfDocument, shared with the finaliser
        self._page_count: int | None = None
        weakref.finalize(self, _close_document, self._cell)

    @property
    def page_count(self) -> int:
        if self._page_count is None:
            self.open()
        assert self._page_count is not None
        return self._page_count

    def open(self) -> None:
        with PDFIUM_LOCK:
            if self._cell[0] is not None:
                return
            doc = self._load(self._password)
            doc.init_forms()  # so that form-field appearances are drawn
            self._cell[0] = doc
            self._page_count = len(doc)

    def _load(self, password: str | None) -> pdfium.PdfDocument:
        target: Path | bytes = self.path if self.path is not None else self.data  # type: ignore[assignment]
        try:
            return pdfium.PdfDocument(target, password=password)
        except pdfium.PdfiumError as exc:
            has_no_pages, code = _diagnose(target, password)
            if has_no_pages:
                raise self._no_pages() from exc
            if code == _ERR_PASSWORD and password is not None:
                # An owner-password-only PDF opens without a password, but not with a wrong one.
                try:
                    doc = pdfium.PdfDocument(target, password=None)
                except pdfium.PdfiumError:
                    pass
                else:
                    self.password_used = None
                    return doc
            raise self._open_error(code, password) from exc
        except OSError as exc:
            raise unreadable_error(self.source, exc) from exc

    def _no_pages(self) -> LoadError:
        return issue_error(
            self.source,
            "has no pages",
            "Nothing to index here; re-export the document or leave it out of the input",
            code="no_pages",
        )

    def _open_error(self, code: int | None, password: str | None) -> LoadError:
        head = self._head or self._read_head()
        if code == _ERR_PASSWORD:
            if password is None:
                return issue_error(
                    self.source,
                    "is encrypted and no password was given",
                    "Pass password='…' (or password={path: '…'} for several files; CLI: --password)",
                    code="encrypted",
                )
            return issue_error(
                self.source,
                "is encrypted and the password given does not open it",
                "Check the password for this file (password={path: '…'} sets one per file)",
                code="wrong_password",
            )
        if code == _ERR_SECURITY:
            return issue_error(
                self.source,
                "uses an encryption scheme PDFium does not support",
                "Decrypt it first (e.g. `qpdf --decrypt --password=… in.pdf out.pdf`)",
                code="unsupported_encryption",
            )
        if not head:
            return issue_error(
                self.source, "is empty (0 bytes)", "Re-download or re-export it", code="empty_file"
            )
        if not looks_like_pdf(head):
            return issue_error(
                self.source,
                f"is not a PDF: it looks like {describe_content(head)}",
                "Give it its real extension, re-download it, or leave it out of the input",
                code="not_pdf",
            )
        return issue_error(
            self.source,
            "is damaged or truncated (PDFium: "
            + {_ERR_FILE: "file error", _ERR_FORMAT: "data format error"}.get(code or 1, "unknown error")
            + ")",
            REPAIR_HINT,
            code="corrupt_pdf",
        )

    def _read_head(self) -> bytes:
        if self.data is not None:
            return self.data[:1024]
        try:
            assert self.path is not None
            with open(self.path, "rb") as file:
                return file.read(1024)
        except OSError:
            return b""

    def page_size(self, index: int) -> tuple[float, float]:
        """Width and height in PDF points of the 0-based page ``index`` (as displayed)."""
        with PDFIUM_LOCK:
            self.open()
            try:
                width, height = self._cell[0].get_page_size(index)
            except pdfium.PdfiumError as exc:
                raise self._page_error(index, exc) from exc
            return float(width), float(height)

    def render(self, index: int, scale: float) -> Image.Image:
        """Rasterise the 0-based page ``index`` at ``scale`` pixels per point as an RGB image."""
        with PDFIUM_LOCK:
            self.open()
            page = bitmap = None
            try:
                page = self._cell[0][index]
                bitmap = page.render(scale=scale, may_draw_forms=True)
                image = bitmap.to_pil()
            except (pdfium.PdfiumError, ValueError, MemoryError) as exc:
                raise self._page_error(index, exc) from exc
            finally:
                if bitmap is not None:
                    bitmap.close()
                if page is not None:
                    page.close()
        return image if image.mode == "RGB" else image.convert("RGB")

    def text(self, index: int) -> str:
        """Text layer of the 0-based page ``index`` as extracted (``""`` without one)."""
        with PDFIUM_LOCK:
            self.open()
            return document_page_text(self._cell[0], index)

    def _page_error(self, index: int, exc: BaseException) -> LoadError:
        return issue_error(
            self.source,
            f"could not be rendered ({type(exc).__name__}: {exc})",
            "The page is probably damaged: repair the file (`qpdf damaged.pdf repaired.pdf`) or skip "
            "the page with page_range",
            code="render_failed",
            page=index + 1,
        )

    def close(self) -> None:
        _close_document(self._cell)


def _diagnose(target: Path | bytes, password: str | None) -> tuple[bool, int]:
    """Why PDFium refused a document: ``(True, 0)`` when it opens but has no page, else
    ``(False, error code)``. pypdfium2's own ``err_code`` cannot tell: for a zero-page file
    it reports whatever error the *previous* failed document left behind."""
    secret = None if password is None else (password + "\x00").encode("utf-8")
    if isinstance(target, Path):
        raw = pdfium_c.FPDF_LoadDocument((str(target) + "\x00").encode("utf-8"), secret)
    else:
        raw = pdfium_c.FPDF_LoadMemDocument64(target, len(target), secret)
    if not raw:
        return False, int(pdfium_c.FPDF_GetLastError())
    try:
        return pdfium_c.FPDF_GetPageCount(raw) < 1, _ERR_UNKNOWN
    finally:
        pdfium_c.FPDF_CloseDocument(raw)


def _close_document(cell: list[Any]) -> None:
    with PDFIUM_LOCK:
        doc, cell[0] = cell[0], None
        if doc is not None:
            doc.close()


def document_page_text(doc: Any, index: int) -> str:
    """Text layer of the 0-based page ``index`` of an open ``pypdfium2.PdfDocument``, as
    PDFium extracts it (CRLF line ends made plain newlines). Caller holds ``PDFIUM_LOCK``.
    The one place mmembed reads a text layer: LangChain's ``page_content`` and the index's
    text search both come from here."""
    pdf_page = doc[index]
    try:
        textpage = pdf_page.get_textpage()
        try:
            return str(textpage.get_text_bounded()).replace("\r\n", "\n")
        finally:
            textpage.close()
    finally:
        pdf_page.close()
