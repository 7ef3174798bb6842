"""How an mmembed page looks inside LlamaIndex: metadata keys and image conversions.

The reader, the retriever and the reranker all describe a page with the same metadata, so a
node produced by any of them (or copied by a LlamaIndex node parser) can be traced back to
its file, its page and its stored vectors:

- ``file_path`` — absolute path of the source file (core's ``source``);
- ``file_name`` — its base name;
- ``page_label`` — the 1-based page number as a string (LlamaIndex's PDF convention);
- ``page_number`` — the same number as an int;
- ``page_count`` — pages in the whole document;
- ``content_hash`` — sha256 of the file's bytes. ``(content_hash, page_number)`` gives the
  page's id in any mmembed index (:func:`mmembed.index.protocol.page_id`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from mmembed.types import MMEmbedError

FILE_PATH = "file_path"
FILE_NAME = "file_name"
PAGE_LABEL = "page_label"
PAGE_NUMBER = "page_number"
PAGE_COUNT = "page_count"
CONTENT_HASH = "content_hash"

# Bookkeeping keys that neither an embedding model nor an LLM needs to read.
HIDDEN_KEYS = [PAGE_NUMBER, PAGE_COUNT, CONTENT_HASH]

IMAGE_MIMETYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}


def page_metadata(
    source: str,
    page: int,
    content_hash: str,
    page_count: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata of one page: caller metadata first, then the page's own keys."""
    metadata = dict(extra or {})
    metadata.update(
        {
            FILE_PATH: source,
            FILE_NAME: os.path.basename(source),
            PAGE_LABEL: str(page),
            PAGE_NUMBER: page,
            CONTENT_HASH: content_hash,
        }
    )
    if page_count is not None:
        metadata[PAGE_COUNT] = page_count
    return metadata


def page_number_of(metadata: Mapping[str, Any]) -> int | None:
    """The 1-based page number recorded in ``metadata`` (``page_number``, ``page_label`` or ``page``)."""
    for key in (PAGE_NUMBER, PAGE_LABEL, "page"):
        value = metadata.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
    return None


def page_id_of(metadata: Mapping[str, Any]) -> str | None:
    """The mmembed page id implied by ``content_hash`` + page number, if both are present."""
    from mmembed.index.protocol import page_id

    content_hash = metadata.get(CONTENT_HASH)
    page = page_number_of(metadata)
    if not isinstance(content_hash, str) or not content_hash or page is None:
        return None
    return page_id(content_hash, page)


def image_to_base64(image: Image.Image, image_format: str = "PNG") -> str:
    """Base64 text of ``image`` encoded as PNG or JPEG (what ``ImageNode.image`` holds)."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def bytes_to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sniff_mimetype(data: bytes) -> str:
    """MIME type of stored thumbnail bytes (PNG or JPEG)."""
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"


def default_image_dir() -> Path:
    """A per-user private cache (``$XDG_CACHE_HOME/mmembed/page-images``, created 0700):
    a shared temp folder would let another user plant or read page images."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mmembed" / "page-images"


def _private_folder(directory: Path) -> Path:
    """Create ``directory`` (0700) if missing; refuse one another user could write to."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise MMEmbedError(
            f"page image folder {directory} is not a private folder of this user (a link, owned by "
            "someone else, or writable by others); give image_dir a folder only you can write to."
        )
    return directory


def _trusted_image(path: Path) -> bool:
    """An existing cache file is used only if it is our own regular file and a readable image."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        return False
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, ValueError, SyntaxError):
        return False
    return True


def page_image_file(
    render: Callable[[], Image.Image],
    page_id: str,
    *,
    dpi: float,
    max_pixels: int | None = None,
    image_format: str = "PNG",
    folder: str | os.PathLike[str] | None = None,
) -> Path:
    """Path of the page's image file in ``folder``, rendering and writing it only if missing.

    The name is a hash of the page id and the render settings, so no id can point outside
    ``folder`` and an existing file (checked to be ours and an image) holds exactly this page.
    """
    directory = _private_folder(Path(folder) if folder else default_image_dir())
    key = f"{page_id}\0{dpi:g}\0{max_pixels or 0}\0{image_format.upper()}"
    target = directory / f"{hashlib.sha256(key.encode()).hexdigest()}.{image_format.lower()}"
    if not _trusted_image(target):
        fd, partial = tempfile.mkstemp(dir=directory, suffix=".partial")  # 0600, never a half file
        try:
            with os.fdopen(fd, "wb") as out:
                render().save(out, format=image_format)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
    return target


def open_image(image: str | os.PathLike[str] | io.BytesIO | bytes | Image.Image) -> Image.Image:
    """An RGB PIL image from what LlamaIndex passes around (a path, a ``BytesIO`` or raw bytes)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    where = str(image) if isinstance(image, str | os.PathLike) else "in-memory image"
    try:
        handle = io.BytesIO(image) if isinstance(image, bytes) else image
        with Image.open(handle) as opened:
            return opened.convert("RGB")
    except FileNotFoundError as error:
        raise MMEmbedError(f"image file not found: {where}. Check the path.") from error
    except (OSError, ValueError) as error:
        raise MMEmbedError(
            f"cannot read {where} as an image ({error}). Embeddings take image files or bytes; "
            "turn PDF pages into page images with llama_index.readers.mmembed.PDFPageImageReader."
        ) from error
