"""Page images inside LangChain ``Document`` metadata, and back out of it.

A ``Document``'s ``page_content`` must be a string, so page images travel in metadata:

- ``image_base64`` + ``image_mime_type``: the encoded image itself;
- ``image_path``: a file on disk holding it.

:func:`image_content_blocks` turns retrieved pages into ``image_url`` content blocks
(base64 data URLs) for a multimodal chat message.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from PIL import Image

IMAGE_BASE64 = "image_base64"
IMAGE_MIME_TYPE = "image_mime_type"
IMAGE_PATH = "image_path"

ImageFormat = Literal["png", "jpeg"]

_MIME = {"png": "image/png", "jpeg": "image/jpeg"}
_SUFFIX_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


def encode_image(image: Image.Image, fmt: ImageFormat = "png", *, quality: int = 90) -> bytes:
    """PNG (lossless) or JPEG bytes of a PIL image."""
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def mime_type(fmt: ImageFormat) -> str:
    return _MIME[fmt]


def sniff_mime_type(data: bytes) -> str:
    """MIME type of encoded image bytes (thumbnails are JPEG, but do not rely on it)."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def decode_data_url(url: str) -> bytes:
    """Bytes of a ``data:<mime>;base64,<payload>`` URL."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64"):
        raise ValueError(f"expected a base64 data URL (data:image/png;base64,...), got {url[:40]!r}...")
    return base64.b64decode(payload)


def open_image_uri(uri: str) -> Image.Image:
    """An RGB image from a file path, ``file://`` URI or base64 data URL."""
    from PIL import Image

    if uri.startswith("data:"):
        raw = decode_data_url(uri)
        return Image.open(io.BytesIO(raw)).convert("RGB")
    path = Path(uri.removeprefix("file://"))
    if not path.is_file():
        raise FileNotFoundError(
            f"image {uri!r} not found: embed_image takes local image file paths or base64 data URLs"
        )
    with Image.open(path) as img:
        return img.convert("RGB")


def document_image_bytes(document: Document) -> tuple[bytes, str] | None:
    """The page image a document carries (bytes, MIME type), from base64 or a file."""
    meta = document.metadata
    b64 = meta.get(IMAGE_BASE64)
    if isinstance(b64, str) and b64:
        raw = base64.b64decode(b64)
        return raw, str(meta.get(IMAGE_MIME_TYPE) or sniff_mime_type(raw))
    path = meta.get(IMAGE_PATH)
    if isinstance(path, str) and path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"page image {path!r} of document {document.id or meta.get('source')!r} is missing; "
                "reload the PDF with PDFPageImageLoader"
            )
        raw = p.read_bytes()
        return raw, _SUFFIX_MIME.get(p.suffix.lower(), sniff_mime_type(raw))
    return None


def document_image(document: Document, *, lazy: bool = False) -> Image.Image | None:
    """The page image of ``document`` as a PIL image, or ``None`` if it carries none.

    ``lazy=True`` defers decoding the pixels until they are used (a reranker that finds
    the page's vectors in the index never needs them).
    """
    from PIL import Image

    found = document_image_bytes(document)
    if found is None:
        return None
    img = Image.open(io.BytesIO(found[0]))
    if not lazy:
        img.load()
    return img


def image_data_url(document: Document) -> str:
    """A ``data:`` URL of the document's page image (for an ``image_url`` content block)."""
    found = document_image_bytes(document)
    if found is None:
        raise ValueError(
            f"document {document.id or document.metadata.get('source')!r} carries no page image: "
            f"load it with PDFPageImageLoader or retrieve it with MMEmbedRetriever(image='thumbnail'|'page')"
        )
    return data_url(*found)


def image_content_blocks(documents: Iterable[Document], *, detail: str | None = None) -> list[dict[str, Any]]:
    """``image_url`` content blocks (base64 data URLs), one per document, for a chat message.

    >>> HumanMessage(content=[{"type": "text", "text": question}, *image_content_blocks(docs)])  # doctest: +SKIP
    """
    blocks: list[dict[str, Any]] = []
    for doc in documents:
        image_url: dict[str, Any] = {"url": image_data_url(doc)}
        if detail is not None:
            image_url["detail"] = detail
        blocks.append({"type": "image_url", "image_url": image_url})
    return blocks
