"""Optional second PDF rasteriser: poppler's ``pdftoppm`` through ``pdf2image``.

Page count, page sizes and password checks still come from PDFium (a core dependency);
only the pixels come from poppler, one page per call so memory stays bounded.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from .errors import issue_error

INSTALL_POPPLER = (
    "Install poppler: `apt-get install -y poppler-utils` (macOS: `brew install poppler`), "
    "or use backend='pypdfium2' (the default, no system dependency)"
)


def check_poppler() -> None:
    """Raise ``LoadError`` naming the fix when ``pdf2image`` or poppler is missing."""
    try:
        import pdf2image  # noqa: F401
    except ImportError as exc:
        raise issue_error(
            "backend 'pdf2image'",
            "the pdf2image package is not installed",
            "pip install 'mmembed-core[pdf2image]', or use backend='pypdfium2' (the default)",
            code="missing_dependency",
        ) from exc
    missing = [tool for tool in ("pdftoppm", "pdfinfo") if shutil.which(tool) is None]
    if missing:
        raise issue_error(
            "backend 'pdf2image'",
            f"poppler is not installed ({' and '.join(missing)} not found on PATH)",
            INSTALL_POPPLER,
            code="missing_dependency",
        )


def render_with_poppler(
    source: str,
    index: int,
    dpi: float,
    *,
    path: Path | None,
    data: bytes | None,
    password: str | None,
) -> Image.Image:
    """Page ``index`` (0-based) rendered by ``pdftoppm`` at ``dpi``, as RGB."""
    import pdf2image
    from pdf2image import exceptions as pdf2image_errors

    options: dict[str, Any] = {
        "dpi": dpi,
        "first_page": index + 1,
        "last_page": index + 1,
        "userpw": password,
        "thread_count": 1,
    }
    try:
        if path is not None:
            images = pdf2image.convert_from_path(str(path), **options)
        else:
            images = pdf2image.convert_from_bytes(data or b"", **options)
    except pdf2image_errors.PDFInfoNotInstalledError as exc:
        raise issue_error(
            source, "poppler is not installed", INSTALL_POPPLER, code="missing_dependency", page=index + 1
        ) from exc
    except (pdf2image_errors.PDFPageCountError, pdf2image_errors.PDFSyntaxError, OSError) as exc:
        raise issue_error(
            source,
            f"poppler could not render it ({exc})",
            "The page is probably damaged: repair the file or use backend='pypdfium2'",
            code="render_failed",
            page=index + 1,
        ) from exc
    if not images:
        raise issue_error(
            source,
            "poppler rendered nothing for this page",
            "Repair the file or use backend='pypdfium2'",
            code="render_failed",
            page=index + 1,
        )
    image = images[0]
    return image if image.mode == "RGB" else image.convert("RGB")
