"""A PDF page's own text layer (pypdfium2's text page) — never OCR.

Framework loaders that put text in a document's content (e.g. LangChain's
``page_content``) read it here so no adapter touches PDF code. A scanned page without a
text layer, and any non-PDF source (an image), give ``""``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import issue_error
from .pdf import PDFIUM_LOCK, document_page_text, looks_like_pdf


def _is_pdf(path: Path) -> bool:
    with path.open("rb") as f:
        return looks_like_pdf(f.read(1024))


class PdfTextReader:
    """Reads page text layers, keeping the last opened PDF open (pages arrive file by file).

    >>> with PdfTextReader() as reader:  # doctest: +SKIP
    ...     reader.text("report.pdf", 1)
    """

    def __init__(self, password: str | Mapping[str, str] | None = None) -> None:
        self.password = password
        self._source: str | None = None
        self._doc: Any = None  # pypdfium2.PdfDocument, or None for a non-PDF source

    def _password_for(self, source: str) -> str | None:
        if self.password is None or isinstance(self.password, str):
            return self.password
        for key in (source, os.path.abspath(source), os.path.basename(source)):
            if key in self.password:
                return self.password[key]
        return None

    def _open(self, source: str) -> Any:
        if source == self._source:
            return self._doc
        self.close()
        path = Path(source)
        if not path.is_file():
            raise issue_error(
                source,
                "cannot read the text layer: the file does not exist",
                "Check the path.",
                code="missing",
            )
        doc = None
        # PDFium is not thread-safe: the loader's render worker may be running next to us.
        if _is_pdf(path):
            import pypdfium2 as pdfium

            try:
                doc = pdfium.PdfDocument(path, password=self._password_for(source))
            except pdfium.PdfiumError as exc:
                raise issue_error(
                    source,
                    f"cannot read the text layer ({exc})",
                    "Check that the file is a valid PDF and pass password= if it is encrypted.",
                    code="corrupt_pdf",
                ) from exc
        self._source, self._doc = source, doc
        return doc

    def text(self, source: str | os.PathLike[str], page: int) -> str:
        """Text of 1-based ``page`` of ``source`` (``""`` for an image or a page without text)."""
        name = os.fspath(source)
        with PDFIUM_LOCK:
            doc = self._open(name)
            if doc is None:
                return ""
            if not 1 <= page <= len(doc):
                raise issue_error(
                    name,
                    f"has {len(doc)} page(s), no page {page}",
                    "Page numbers are 1-based.",
                    code="page_range",
                    page=page,
                )
            return document_page_text(doc, page - 1)

    def close(self) -> None:
        with PDFIUM_LOCK:
            if self._doc is not None:
                self._doc.close()
            self._source, self._doc = None, None

    def __enter__(self) -> PdfTextReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def page_text(
    source: str | os.PathLike[str], page: int, *, password: str | Mapping[str, str] | None = None
) -> str:
    """Text layer of one 1-based page (``""`` for an image or a page without text). No OCR."""
    with PdfTextReader(password=password) as reader:
        return reader.text(source, page)
