"""``PDFPageImageLoader``: one LangChain ``Document`` per PDF page, the page image in metadata."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from .images import IMAGE_BASE64, IMAGE_MIME_TYPE, IMAGE_PATH, ImageFormat, encode_image, mime_type

if TYPE_CHECKING:
    from mmembed.loaders import LoadIssue, Page

logger = logging.getLogger(__name__)

ImageMode = Literal["base64", "path", "both"]
PathLike = str | os.PathLike[str]


def page_metadata(
    *, source: str, page: int, total_pages: int | None, content_hash: str, page_id: str
) -> dict[str, Any]:
    """The metadata keys every page ``Document`` of this package carries.

    ``source`` and ``page`` are LangChain's usual keys; ``page`` is **1-based** (the
    number printed on the page, as everywhere in mmembed) — LangChain's ``PyPDFLoader``
    counts from 0.
    """
    meta: dict[str, Any] = {"source": source, "page": page}
    if total_pages is not None:
        meta["total_pages"] = total_pages
    meta["content_hash"] = content_hash
    meta["id"] = page_id
    return meta


def source_paths(file_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """A loader's ``file_path`` (one path or several) as a list of path strings."""
    if isinstance(file_path, (str, os.PathLike)):
        return [os.fspath(file_path)]
    return [os.fspath(p) for p in file_path]


class PDFPageImageLoader(BaseLoader):
    """Load PDFs (or page images, or folders of them) as one ``Document`` per page.

    Pages are rendered as images by mmembed's loader (pypdfium2, no OCR) and loaded
    lazily, one page at a time. Each ``Document`` has:

    - ``id``: the page id mmembed's index uses (content hash + page number);
    - ``page_content``: ``""``, or the PDF's own text layer with ``extract_text=True``
      (never OCR: a scanned page without a text layer, an image file or an Office file
      gives ``""``);
    - ``metadata``: ``source``, ``page`` (1-based), ``total_pages``, ``content_hash``,
      ``id``, and the page image as ``image_base64`` + ``image_mime_type`` and/or
      ``image_path`` (a file written to ``image_dir``), plus any ``metadata`` you pass.

    Files that cannot be read (corrupt, encrypted without password, unsupported) do not
    stop the load: they are logged as warnings and listed in :attr:`issues` (one
    :class:`mmembed.loaders.LoadIssue` per problem, naming the file and the fix).
    Pass ``strict=True`` to raise on the first one instead.

    Example:
        .. code-block:: python

            from langchain_mmembed import PDFPageImageLoader

            loader = PDFPageImageLoader("reports/", dpi=144, extract_text=True)
            for doc in loader.lazy_load():
                print(doc.metadata["source"], doc.metadata["page"], len(doc.page_content))
            for issue in loader.issues:
                print("skipped:", issue)
    """

    def __init__(
        self,
        file_path: PathLike | Sequence[PathLike],
        *,
        image: ImageMode = "base64",
        image_dir: PathLike | None = None,
        image_format: ImageFormat = "png",
        dpi: int = 144,
        max_pixels: int | None = None,
        page_range: int | str | tuple[int, int] | None = None,
        password: str | Mapping[str, str] | None = None,
        extract_text: bool = False,
        strict: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """
        Args:
            file_path: A PDF, an image, a folder (searched recursively) or a list of them.
            image: Where the page image goes: ``"base64"`` (in metadata), ``"path"`` (a file
                in ``image_dir``) or ``"both"``.
            image_dir: Folder for page image files; required when ``image`` includes a path.
            image_format: ``"png"`` (lossless, default) or ``"jpeg"`` (smaller).
            dpi: Render resolution.
            max_pixels: Cap on each page's pixel count (big pages are rendered smaller).
            page_range: 1-based pages to load from each file: ``3``, ``"1-3,7"``, ``(1, 3)``.
            password: Password for encrypted PDFs, or a ``{path: password}`` map.
            extract_text: Put the PDF's text layer in ``page_content`` (no OCR).
            strict: Raise on the first unreadable file instead of reporting it.
            metadata: Extra metadata added to every page.
        """
        if image not in ("base64", "path", "both"):
            raise ValueError(f"image must be 'base64', 'path' or 'both', got {image!r}")
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
        if image in ("path", "both") and image_dir is None:
            raise ValueError(
                f"image={image!r} writes page images to files: pass image_dir=<folder> "
                "(or use image='base64' to keep them in metadata)"
            )
        self.file_path = file_path
        self.image = image
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.image_format: ImageFormat = image_format
        self.dpi = dpi
        self.max_pixels = max_pixels
        self.page_range = page_range
        self.password = password
        self.extract_text = extract_text
        self.strict = strict
        self.metadata = dict(metadata or {})
        self.issues: list[LoadIssue] = []
        """Files / pages skipped by the last (or current) load, each naming the file and the fix."""

    def lazy_load(self) -> Iterator[Document]:
        """Yield one ``Document`` per page, rendering one page at a time."""
        import mmembed

        self.issues = []
        stream = mmembed.load_pages(
            source_paths(self.file_path),
            dpi=self.dpi,
            max_pixels=self.max_pixels,
            page_range=self.page_range,
            password=self.password,
            strict=self.strict,
            metadata=self.metadata or None,
        )
        text_reader = _text_reader(self.password) if self.extract_text else None
        if self.image_dir is not None:
            self.image_dir.mkdir(parents=True, exist_ok=True)
        reported = 0
        try:
            with stream:  # stops the render worker if the caller stops early
                for page in stream:
                    try:
                        yield self._document(page, text_reader)
                    finally:
                        page.release()
                    reported = self._report(stream.issues, reported)
        finally:
            self._report(stream.issues, reported)
            if text_reader is not None:
                text_reader.close()

    def _report(self, issues: Sequence[LoadIssue], reported: int) -> int:
        for issue in issues[reported:]:
            logger.warning("PDFPageImageLoader skipped %s", issue)
            self.issues.append(issue)
        return len(issues)

    def _document(self, page: Page, text_reader: Any) -> Document:
        meta = {
            **page.metadata,
            **page_metadata(
                source=page.source,
                page=page.page,
                total_pages=page.page_count,
                content_hash=page.content_hash,
                page_id=page.id,
            ),
        }
        encoded = encode_image(page.image, self.image_format)
        if self.image in ("base64", "both"):
            meta[IMAGE_BASE64] = base64.b64encode(encoded).decode("ascii")
            meta[IMAGE_MIME_TYPE] = mime_type(self.image_format)
        if self.image in ("path", "both") and self.image_dir is not None:
            suffix = "png" if self.image_format == "png" else "jpg"
            target = self.image_dir / f"{page.id}.{suffix}"
            target.write_bytes(encoded)
            meta[IMAGE_PATH] = str(target)
            meta.setdefault(IMAGE_MIME_TYPE, mime_type(self.image_format))
        text = text_reader.text(page.source, page.page) if text_reader is not None else ""
        return Document(id=page.id, page_content=text, metadata=meta)


def _text_reader(password: str | Mapping[str, str] | None) -> Any:
    from mmembed.loaders.pdf_text import PdfTextReader

    return PdfTextReader(password=password)
