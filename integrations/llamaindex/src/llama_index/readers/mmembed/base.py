"""PDFPageImageReader: PDFs, images and folders as one ``ImageDocument`` per page."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.readers.base import BasePydanticReader
from llama_index.core.schema import ImageDocument

from .pages import HIDDEN_KEYS, IMAGE_MIMETYPES, image_to_base64, page_image_file, page_metadata

logger = logging.getLogger(__name__)

SourceArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class PDFPageImageReader(BasePydanticReader):
    """Read PDFs, images and folders of them as page images, one ``ImageDocument`` per page.

    Rendering uses mmembed's page loader (pypdfium2, page by page), so pages stream with
    bounded memory. Each document's id is the page's mmembed id (content hash + page
    number) and its metadata carries ``file_path``, ``file_name``, ``page_label``,
    ``page_number``, ``page_count`` and ``content_hash`` (see :mod:`.pages`).

    A file that cannot be read (corrupt, encrypted without password, unsupported type) is
    skipped with a logged warning and listed in :attr:`issues`; ``strict=True`` raises
    instead. The page image is held as base64 (``image_mode="base64"``) or written once
    to ``image_dir`` and referenced by path (``image_mode="path"``).

    >>> docs = PDFPageImageReader(dpi=144).load_data("reports/")  # doctest: +SKIP
    """

    is_remote: bool = False
    dpi: float = Field(default=144, gt=0, description="Rendering resolution of PDF pages.")
    max_pixels: int | None = Field(
        default=None, description="Downscale pages larger than this many pixels (None: no limit)."
    )
    page_range: str | None = Field(
        default=None, description="1-based pages to read from each document, e.g. '1-3,7' (None: all)."
    )
    include: list[str] | None = Field(default=None, description="Glob patterns of files to read in folders.")
    exclude: list[str] | None = Field(default=None, description="Glob patterns of files to skip in folders.")
    strict: bool = Field(
        default=False, description="Raise on the first unreadable file instead of skipping it."
    )
    image_mode: Literal["base64", "path"] = Field(
        default="base64", description="Keep each page image as base64 text or as a file in image_dir."
    )
    image_format: Literal["PNG", "JPEG"] = Field(default="PNG", description="Encoding of page images.")
    image_dir: str | None = Field(
        default=None,
        description="Folder for page image files when image_mode='path' (default: a private per-user cache, ~/.cache/mmembed/page-images, created 0700; files are named by a hash of page id and settings).",
    )

    _password: str | dict[str, str] | None = PrivateAttr(default=None)
    _issues: list[Any] = PrivateAttr(default_factory=list)

    def __init__(self, *, password: str | dict[str, str] | None = None, **data: Any) -> None:
        """``password`` (one for all PDFs, or a map file -> password) is never serialised."""
        super().__init__(**data)
        self._password = password

    @classmethod
    def class_name(cls) -> str:
        return "PDFPageImageReader"

    @property
    def issues(self) -> list[Any]:
        """``mmembed.LoadIssue`` of every file or page skipped by the last load."""
        return list(self._issues)

    def lazy_load_data(  # type: ignore[override]
        self,
        file_path: SourceArg,
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> Iterator[ImageDocument]:
        """One ``ImageDocument`` per page of ``file_path`` (a file, a folder or a list of them).

        ``extra_info`` is added to every page's metadata (the page's own keys win).
        """
        if fs is not None:
            raise NotImplementedError(
                "PDFPageImageReader reads local files only; copy the files locally first "
                "(fsspec filesystems are not supported)."
            )
        import mmembed

        sources: Any = list(file_path) if isinstance(file_path, list | tuple) else file_path
        self._issues = []
        stream = mmembed.load_pages(
            sources,
            dpi=self.dpi,
            max_pixels=self.max_pixels,
            page_range=self.page_range,
            password=self._password,
            include=self.include,
            exclude=self.exclude,
            strict=self.strict,
        )
        reported = 0
        try:
            for page in stream:
                reported = self._report(stream.issues, reported)
                yield self._document(page, extra_info)
        finally:
            stream.close()  # stops the render-ahead worker if the caller stopped early
            self._report(stream.issues, reported)
            self._issues = list(stream.issues)

    def load_data(  # type: ignore[override]
        self,
        file_path: SourceArg,
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> list[ImageDocument]:
        """All pages of ``file_path`` at once (see :meth:`lazy_load_data`)."""
        return list(self.lazy_load_data(file_path, extra_info=extra_info, fs=fs))

    def _report(self, issues: Sequence[Any], already: int) -> int:
        for issue in issues[already:]:
            logger.warning("PDFPageImageReader skipped %s", issue)
        return len(issues)

    def _document(self, page: Any, extra_info: dict[str, Any] | None) -> ImageDocument:
        metadata = page_metadata(
            page.source,
            page.page,
            page.content_hash,
            page_count=page.page_count,
            extra={**(extra_info or {}), **page.metadata},
        )
        image_fields: dict[str, Any] = {"image_mimetype": IMAGE_MIMETYPES[self.image_format]}
        try:
            if self.image_mode == "path":
                path = page_image_file(
                    lambda: page.image,
                    page.id,
                    dpi=self.dpi,
                    max_pixels=self.max_pixels,
                    image_format=self.image_format,
                    folder=self.image_dir,
                )
                image_fields["image_path"] = str(path)
            else:
                image_fields["image"] = image_to_base64(page.image, self.image_format)
        finally:
            page.release()  # the document holds the encoded image now
        return ImageDocument(
            id_=page.id,
            text="",
            metadata=metadata,
            excluded_embed_metadata_keys=list(HIDDEN_KEYS),
            excluded_llm_metadata_keys=list(HIDDEN_KEYS),
            **image_fields,
        )
