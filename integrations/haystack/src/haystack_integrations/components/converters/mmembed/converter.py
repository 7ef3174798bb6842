"""``PDFToPageImageDocuments``: files → one Haystack ``Document`` per page image."""

from __future__ import annotations

import io
import mimetypes
import os
from pathlib import Path
from typing import Any, Literal

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.components.converters.utils import normalize_metadata
from haystack.dataclasses import ByteStream
from haystack.utils import Secret, deserialize_secrets_inplace
from haystack_integrations.document_stores.mmembed.documents import (
    CONTENT_HASH,
    FILE_PATH,
    PAGE_COUNT,
    PAGE_NUMBER,
    RENDER_META_KEY,
)

from mmembed.loaders import BytesSource, LoadIssue, Page, load_pages

ImageFormat = Literal["jpeg", "png"]
_MIME = {"jpeg": "image/jpeg", "png": "image/png"}


@component
class PDFToPageImageDocuments:
    """Turns PDFs (and images, folders, Office files) into page documents, without OCR.

    Every page becomes a ``Document`` whose id is mmembed's page id (stable for the same
    file bytes and page) and whose ``meta`` holds ``file_path`` and ``page_number`` —
    Haystack's convention, so ``DocumentToImageContent`` can render the page for a chat
    model — plus ``page_count`` and ``content_hash`` (sha256 of the file). With
    ``include_image=True`` the rendered page is also attached as an image ``ByteStream``
    blob (always for ``ByteStream`` sources, which have no file to render from later).

    Files that cannot be read (corrupt, encrypted, unsupported, missing) do not stop the
    run: each is reported in the ``issues`` output with the reason and what to do.

    ```python
    from haystack_integrations.components.converters.mmembed import PDFToPageImageDocuments

    converter = PDFToPageImageDocuments(dpi=144)
    result = converter.run(sources=["report.pdf", "scans/"])
    result["documents"][0].meta  # {'file_path': '/abs/report.pdf', 'page_number': 1, 'page_count': 12, ...}
    result["issues"]             # [{'source': ..., 'page': None, 'message': '...: is encrypted ...'}]
    ```
    """

    def __init__(
        self,
        *,
        dpi: float = 144,
        include_image: bool = False,
        image_format: ImageFormat = "jpeg",
        page_range: str | None = None,
        password: Secret | None = None,
    ) -> None:
        """
        :param dpi: Resolution PDF pages are rendered at (144 → 1224 × 1584 px for US Letter).
        :param include_image: Attach each rendered page as an image blob (grows documents and,
            once written, the store; the embedder can render pages from ``file_path`` instead).
        :param image_format: ``"jpeg"`` or ``"png"`` for attached images.
        :param page_range: 1-based pages to keep from each file, e.g. ``"1-3,7,10-"``.
        :param password: Password for encrypted PDFs, as a Haystack ``Secret``
            (e.g. ``Secret.from_env_var("PDF_PASSWORD")``).
        """
        if image_format not in _MIME:
            raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
        self.dpi = dpi
        self.include_image = include_image
        self.image_format = image_format
        self.page_range = page_range
        self.password = password

    def to_dict(self) -> dict[str, Any]:
        """Serialise the component."""
        return default_to_dict(
            self,
            dpi=self.dpi,
            include_image=self.include_image,
            image_format=self.image_format,
            page_range=self.page_range,
            password=self.password.to_dict() if self.password is not None else None,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PDFToPageImageDocuments:
        """Deserialise the component."""
        init_parameters = dict(data.get("init_parameters", {}))  # leave the caller's dict as it was
        deserialize_secrets_inplace(init_parameters, keys=["password"])
        return default_from_dict(cls, {**data, "init_parameters": init_parameters})

    @component.output_types(documents=list[Document], issues=list[dict[str, Any]])
    def run(
        self,
        sources: list[str | Path | ByteStream] | str | Path | ByteStream,
        meta: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Convert ``sources`` into page documents.

        :param sources: File paths, folders (walked recursively) or ``ByteStream`` objects; a
            single one is accepted too (``run(sources="report.pdf")``).
        :param meta: Metadata for every page: one dict for all sources, or one per source.
        :returns: ``documents`` (one per page, in order) and ``issues`` (one dict per file or
            page that could not be loaded: ``source``, ``page``, ``reason``, ``hint``, ``code``
            and a one-line ``message``).
        """
        if isinstance(sources, str | os.PathLike | ByteStream):
            sources = [sources]  # one source, not a sequence of characters
        metas = normalize_metadata(meta, sources_count=len(sources))
        password = self.password.resolve_value() if self.password is not None else None
        documents: list[Document] = []
        issues: list[dict[str, Any]] = []
        for source, source_meta in zip(sources, metas, strict=True):
            loadable, attach, bytestream_meta = _loadable(source)
            with load_pages(
                loadable, dpi=self.dpi, page_range=self.page_range, password=password, prefetch=0
            ) as stream:
                for page in stream:
                    documents.append(
                        self._document(page, {**bytestream_meta, **source_meta}, self.include_image or attach)
                    )
                issues += [_issue(i) for i in stream.issues]
        return {"documents": documents, "issues": issues}

    def _document(self, page: Page, meta: dict[str, Any], attach_image: bool) -> Document:
        facts = {
            FILE_PATH: page.source,
            PAGE_NUMBER: page.page,
            PAGE_COUNT: page.page_count,
            CONTENT_HASH: page.content_hash,
        }
        blob = None
        if attach_image:
            buffer = io.BytesIO()
            page.image.save(
                buffer,
                format=self.image_format.upper(),
                **({"quality": 90} if self.image_format == "jpeg" else {}),
            )
            blob = ByteStream(data=buffer.getvalue(), mime_type=_MIME[self.image_format], meta=dict(facts))
            page.release()
        # How the page was rendered travels with it: the embedder renders it the same way.
        return Document(id=page.id, blob=blob, meta={**meta, **facts, RENDER_META_KEY: {"dpi": self.dpi}})


def _loadable(source: str | Path | ByteStream) -> tuple[Any, bool, dict[str, Any]]:
    """``(what load_pages takes, whether the image must be attached, the source's own meta)``."""
    if isinstance(source, ByteStream):
        name = str(source.meta.get(FILE_PATH) or source.meta.get("file_name") or "document")
        extension = mimetypes.guess_extension(source.mime_type or "") if source.mime_type else None
        if extension and not Path(name).suffix:  # the type comes from the name: give it the declared one
            name += extension
        # No file on disk to render from later: the page image travels with the document.
        return BytesSource(str(name), source.data), True, dict(source.meta)
    if isinstance(source, str | os.PathLike):
        return os.fspath(source), False, {}
    raise TypeError(f"sources must be file paths, folders or ByteStream objects, got {type(source).__name__}")


def _issue(issue: LoadIssue) -> dict[str, Any]:
    return {
        "source": issue.source,
        "page": issue.page,
        "reason": issue.reason,
        "hint": issue.hint,
        "code": issue.code,
        "message": str(issue),
    }
