"""Page loaders: documents in, RGB page images out — streaming, and safe on bad input.

The one loader API shared by the CLI, the pipeline and every framework adapter::

    from mmembed.loaders import load_pages

    with load_pages("reports/", include="*.pdf", dpi=144) as stream:
        for page in stream:
            encode(page.image)          # PIL RGB image, rendered ahead by a worker thread
            page.release()              # free it (keeps memory bounded by the prefetch depth)
    print(stream.summary())             # pages/files loaded + one line per problem

What loads: PDF (every page, rendered with pypdfium2; ``backend="pdf2image"`` uses
poppler instead), PNG / JPEG / WebP / BMP / GIF (first frame) / TIFF (one page per
frame) with EXIF orientation applied and every pixel mode converted to RGB (alpha
composited on white), Office files through LibreOffice headless when ``soffice`` is
installed, folders (recursive), bytes, ``(name, bytes)``, :class:`BytesSource`, binary
file-like objects, and any iterable of these.

Audio and video (WAV, FLAC, MP3, Ogg, M4A; MP4, WebM, MKV, MOV) load through
:func:`load_documents`, the same stream with recordings cut into :class:`MediaSegment`
items (``start`` / ``end`` seconds, a lazily decoded ``.clip``) beside the pages; needs
``pip install 'mmembed-core[media]'`` (PyAV). :func:`load_pages` reports them as issues.

Bad input never ends the run: each bad file or page becomes a :class:`LoadIssue` in
``stream.issues`` (file, page, reason, what to do) and every good page is still loaded;
``strict=True`` raises :class:`LoadError` on the first problem instead.
"""

from __future__ import annotations

import os
from typing import Any

from PIL import Image

from .documents import open_document
from .errors import LoadError, LoadIssue, issue_error
from .images import make_thumbnail, to_rgb
from .media import (
    DEFAULT_AUDIO_SEGMENT_SECONDS,
    DEFAULT_FPS,
    DEFAULT_MAX_FRAME_PIXELS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_MEDIA_SECONDS,
    DEFAULT_VIDEO_SEGMENT_SECONDS,
    MEDIA_GLOBS,
    MEDIA_KEYS,
    MediaSettings,
    format_time,
)
from .options import (
    DEFAULT_DPI,
    DEFAULT_MAX_IMAGE_PIXELS,
    LoaderOptions,
    MetadataArg,
    PageRangeArg,
    PasswordArg,
    SkipArg,
)
from .page import Page
from .poppler import check_poppler
from .segment import MediaSegment
from .sources import SUPPORTED, BytesSource, SourceItem, iter_sources, kind_of, read_head, sniff_kind
from .stream import DocumentStream, Item, PageStream

__all__ = [
    "DEFAULT_AUDIO_SEGMENT_SECONDS",
    "DEFAULT_DPI",
    "DEFAULT_FPS",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_VIDEO_SEGMENT_SECONDS",
    "MEDIA_GLOBS",
    "MEDIA_KEYS",
    "BytesSource",
    "DocumentStream",
    "Item",
    "LoadError",
    "LoadIssue",
    "LoaderOptions",
    "MediaSegment",
    "MediaSettings",
    "Page",
    "PageStream",
    "format_time",
    "load_documents",
    "load_pages",
    "make_thumbnail",
    "render_page",
    "to_rgb",
]


def load_pages(
    sources: Any,
    *,
    dpi: float = DEFAULT_DPI,
    max_pixels: int | None = None,
    page_range: PageRangeArg = None,
    password: PasswordArg = None,
    include: str | list[str] | tuple[str, ...] | None = None,
    exclude: str | list[str] | tuple[str, ...] | None = None,
    include_hidden: bool = False,
    backend: str = "pypdfium2",
    strict: bool = False,
    metadata: MetadataArg = None,
    prefetch: int = 4,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    skip: SkipArg = None,
    office_timeout: float = 180.0,
) -> PageStream:
    """Stream the pages of ``sources`` lazily, file by file and page by page.

    Args:
        sources: a path (file or folder), bytes, ``(name, bytes)``, :class:`BytesSource`, a
            binary file-like object (its ``.name`` names it), or an iterable of these.
        dpi: PDF render resolution (144 → 1224 × 1584 for US Letter).
        max_pixels: cap on each page's pixel count; larger pages are rendered (PDF) or
            resized (images) down to fit, keeping the aspect ratio.
        page_range: 1-based pages to load from each document: ``3``, ``"1-3,7,10-"``,
            ``(1, 3)`` (inclusive), ``range(1, 4)`` or a list of page numbers.
        password: for encrypted PDFs; one ``str`` for all, or ``{path_or_name: password}``.
        include, exclude: case-insensitive globs for folder walks, matched on the path
            relative to the folder (``drafts/*``) or the file name (``*.pdf``).
        include_hidden: also walk files and folders whose name starts with ``.``.
        backend: ``"pypdfium2"`` (default) or ``"pdf2image"`` (needs poppler).
        strict: raise :class:`LoadError` on the first problem instead of recording it.
        metadata: dict merged into each ``Page.metadata``, or ``callable(source) -> dict``.
        prefetch: pages rendered ahead in a background thread; ``0`` renders lazily on
            first access of ``page.image`` in the caller's thread.
        max_image_pixels: decompression-bomb guard: an image, or a PDF page at the chosen
            dpi, above this many pixels is refused (``None`` disables the guard).
        skip: ``callable(source, content_hash) -> bool``; ``True`` leaves the file out
            unrendered (counted in ``stream.files_skipped``), e.g. for unchanged files.
        office_timeout: seconds allowed for one LibreOffice conversion.

    Raises ``ValueError`` / ``TypeError`` for invalid settings and :class:`LoadError` at
    once when ``backend="pdf2image"`` but poppler or pdf2image is missing.
    """
    options = LoaderOptions(
        dpi=dpi,
        max_pixels=max_pixels,
        page_range=page_range,
        password=password,
        include=include,
        exclude=exclude,
        include_hidden=include_hidden,
        backend=backend,
        strict=strict,
        metadata=metadata,
        prefetch=prefetch,
        max_image_pixels=max_image_pixels,
        skip=skip,
        office_timeout=office_timeout,
    )
    return PageStream(sources, options)


def load_documents(
    sources: Any,
    *,
    segment_seconds: float | None = None,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    media_streams: str = "auto",
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    max_media_seconds: float = DEFAULT_MAX_MEDIA_SECONDS,
    **page_options: Any,
) -> DocumentStream[Item]:
    """Like :func:`load_pages`, and audio / video files too, as :class:`MediaSegment` items.

    One stream, in file order: a folder mixing PDFs, images and recordings gives ``Page``
    and ``MediaSegment`` items (tell them apart with ``isinstance``). Each segment is decoded
    (16 kHz mono sound, RGB frames) by the prefetch worker or on first access of ``.clip``.

    Args:
        segment_seconds: length of each segment; ``None`` gives
            120 s for sound only (1,920,000 samples, inside Omni-Embed-Nemotron's 2,048,000)
            and 30 s when frames are decoded (60 frames at 2 fps, inside its 64).
        fps: frames sampled per second of video.
        max_frames: at most this many frames per segment (spread evenly when ``fps`` ×
            segment length is more).
        media_streams: ``"auto"`` (what the file has), ``"audio"`` (sound only) or ``"video"``
            (frames only; audio-only files become ``no_video_track`` issues).
        max_frame_pixels: frames are scaled down to at most this many pixels.
        max_media_seconds: recordings declaring a longer duration are refused (``media_too_long``).
        page_options: every :func:`load_pages` option (``page_range`` selects segments of
            recordings; ``max_image_pixels`` also guards video frame sizes).
    """
    settings = MediaSettings(
        segment_seconds=segment_seconds,
        fps=fps,
        max_frames=max_frames,
        streams=media_streams,
        max_frame_pixels=max_frame_pixels,
        max_media_seconds=max_media_seconds,
    )
    options = LoaderOptions(media=True, media_settings=settings, **_page_options(page_options))
    return DocumentStream(sources, options)


def _page_options(given: dict[str, Any]) -> dict[str, Any]:
    allowed = set(LoaderOptions.__dataclass_fields__) - {"media", "media_settings", "media_refusal"}
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise TypeError(f"load_documents() got unknown option(s) {', '.join(unknown)}")
    return given


def render_page(
    source: Any,
    page: int,
    *,
    dpi: float = DEFAULT_DPI,
    max_pixels: int | None = None,
    password: PasswordArg = None,
    backend: str = "pypdfium2",
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> Image.Image:
    """Render one 1-based ``page`` of one PDF / image / Office file as an RGB image.

    ``source`` is a file path, ``(name, bytes)`` or :class:`BytesSource`. Raises
    :class:`LoadError` (naming the file and page, and what to do) when it cannot.
    """
    options = LoaderOptions(
        dpi=dpi,
        max_pixels=max_pixels,
        password=password,
        backend=backend,
        max_image_pixels=max_image_pixels,
        prefetch=0,
    )
    if backend == "pdf2image":
        check_poppler()
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        raise ValueError(f"render_page needs one file, and {os.fspath(source)} is a folder")
    items = list(iter_sources([source], options))
    if len(items) != 1:
        raise ValueError("render_page needs exactly one file")
    item = items[0]
    if isinstance(item, LoadIssue):
        raise LoadError(item)
    kind = _kind(item)
    if kind == "media":
        raise issue_error(
            item.name,
            "is an audio / video file, not a document with pages",
            "Load its segments with load_documents() (each has a decoded .clip)",
            code="not_a_page",
            page=page,
        )
    document = open_document(item, kind, _head(item), options)
    try:
        if not 1 <= page <= document.page_count:
            raise issue_error(
                item.name,
                f"has no page {page} (it has {document.page_count})",
                f"Ask for a page between 1 and {document.page_count}",
                code="no_such_page",
                page=page,
            )
        _, renderer = document.plan(page - 1)
        return renderer()
    finally:
        document.close()


def _head(item: SourceItem) -> bytes:
    try:
        return read_head(item)
    except OSError as exc:
        raise issue_error(
            item.name, f"cannot be read ({exc.strerror or exc})", "Check the path", code="unreadable"
        ) from exc


def _kind(item: SourceItem) -> str:
    kind = kind_of(item.extension) or sniff_kind(_head(item))
    if kind is None:
        raise issue_error(
            item.name,
            f"has an unsupported file type {item.extension or '(no extension)'}",
            f"Supported: {SUPPORTED}",
            code="unsupported",
        )
    return kind
