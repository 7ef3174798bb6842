"""Image files as pages: PNG, JPEG, WebP, BMP, GIF and multi-page TIFF, converted to RGB."""

from __future__ import annotations

import contextlib
import io
import math
import threading
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..pixels import MAX_PAGE_PIXELS, to_rgb
from .errors import issue_error, unreadable_error

# Formats whose extra frames are extra pages; for GIF / WebP / APNG only the first frame counts.
_MULTIPAGE_FORMATS = {"TIFF"}
MAX_DECODED_PIXELS = MAX_PAGE_PIXELS
"""Pages decoded from images are downscaled to at most this many pixels when no ``max_pixels``
is given (48 MB of RGB): above what the supported models take in (their processors downscale
further), while a batch of 9000 x 9000 scans holds 8 bounded pages instead of 8 x 243 MB (JPEGs
are decoded at the reduced scale directly; other formats are decoded one at a time and
downscaled before the next)."""
_EXIF_ORIENTATION = 0x0112


def _orientation(image: Image.Image) -> int | None:
    """EXIF orientation from the header only. (``PngImageFile.getexif()`` decodes the whole
    image to look for a late eXIf chunk, which would defeat the decompression-bomb check.)"""
    if image.format == "PNG":
        raw = image.info.get("exif")
        if not raw:
            return None
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(_EXIF_ORIENTATION)
    return image.getexif().get(_EXIF_ORIENTATION)


def fit_pixels(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most ``max_pixels`` pixels."""
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    return new_w, new_h


class ImageHandle:
    """One image file, opened on demand; each TIFF frame is a page, other formats have one."""

    def __init__(self, source: str, *, path: Path | None = None, data: bytes | None = None) -> None:
        if (path is None) == (data is None):
            raise ValueError("give exactly one of path or data")
        self.source = source
        self._path = path
        self._data = data
        # A multi-frame file stays open between renders: Pillow remembers where the frames
        # it has walked past start, whereas a fresh open seeks from frame 0 every time (a
        # 4000-frame TIFF took 211 s, quadratic). The lock serialises renders on it.
        self._frames: Image.Image | None = None
        self._lock = threading.Lock()

    def _open(self) -> Image.Image:
        target = self._path if self._path is not None else io.BytesIO(self._data or b"")
        try:
            return Image.open(target)
        except Image.DecompressionBombError as exc:
            raise issue_error(
                self.source,
                f"is larger than Pillow's own decompression-bomb limit ({exc})",
                "If you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS as well as max_image_pixels",
                code="image_too_large",
            ) from exc
        except UnidentifiedImageError as exc:
            raise issue_error(
                self.source,
                "is not an image Pillow can read (unknown or damaged format)",
                "Re-export it as PNG or JPEG, or leave it out of the input",
                code="corrupt_image",
            ) from exc
        except OSError as exc:
            raise unreadable_error(self.source, exc) from exc

    def probe(self) -> list[tuple[int, int]]:
        """Size of every page as displayed (after EXIF rotation), read from the headers
        alone, so that the pixel cap can be checked before anything is decoded."""
        image = self._open()
        with contextlib.ExitStack() as closing:
            closing.callback(image.close)
            try:
                frames = getattr(image, "n_frames", 1) if image.format in _MULTIPAGE_FORMATS else 1
                sizes = []
                for index in range(frames):
                    if index:
                        image.seek(index)
                    width, height = image.size
                    if _orientation(image) in (5, 6, 7, 8):
                        width, height = height, width
                    sizes.append((width, height))
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise issue_error(
                    self.source,
                    f"is damaged ({type(exc).__name__}: {exc})",
                    "Re-export or re-download it, or leave it out of the input",
                    code="corrupt_image",
                ) from exc
            if frames > 1:
                with self._lock:
                    if self._frames is None:  # keep it (and its frame positions) for render()
                        self._frames = image
                        closing.pop_all()
            return sizes

    @contextlib.contextmanager
    def _source(self) -> Iterator[Image.Image]:
        """The kept multi-frame image (under the lock), else a freshly opened file."""
        with self._lock:
            if self._frames is not None:
                yield self._frames
                return
        with self._open() as image:
            yield image

    def close(self) -> None:
        """Close the kept multi-frame file; later renders reopen the file themselves."""
        with self._lock:
            if self._frames is not None:
                self._frames.close()
                self._frames = None

    def render(self, index: int, max_pixels: int | None) -> Image.Image:
        """Decode page (frame) ``index`` as upright RGB, downscaled to ``max_pixels`` if set
        (else to :data:`MAX_DECODED_PIXELS`)."""
        max_pixels = MAX_DECODED_PIXELS if max_pixels is None else max_pixels
        with self._source() as image:
            try:
                if index or getattr(image, "n_frames", 1) > 1:
                    image.seek(index)
                target = fit_pixels(*image.size, max_pixels)
                if image.format == "JPEG" and target != image.size:
                    image.draft("RGB", target)  # decode at a reduced scale: faster, less memory
                image.load()
                upright = ImageOps.exif_transpose(image) or image
                rgb = to_rgb(upright)
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise issue_error(
                    self.source,
                    f"could not be decoded ({type(exc).__name__}: {exc})",
                    "The image is damaged or truncated; re-export or re-download it",
                    code="corrupt_image",
                    page=index + 1,
                ) from exc
        final = fit_pixels(*rgb.size, max_pixels)
        if final != rgb.size:
            rgb = rgb.resize(final, Image.Resampling.LANCZOS, reducing_gap=3.0)
        if rgb is image:  # never hand out the file-backed object
            rgb = rgb.copy()
        return rgb


def make_thumbnail(image: Image.Image, max_side: int = 256, *, quality: int = 80) -> bytes:
    """A small JPEG of ``image`` whose longer side is at most ``max_side`` pixels."""
    if max_side < 1:
        raise ValueError("max_side must be >= 1")
    small = to_rgb(image).copy()
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


__all__ = ["ImageHandle", "fit_pixels", "make_thumbnail", "to_rgb"]
