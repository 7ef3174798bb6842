"""Building a small page index for a test: one helper instead of the same try/finally everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mmembed
from mmembed.encoders import Encoder


def build_page_index(path: Path, encoder: Encoder, pdfs: Sequence[Path], *, dpi: float, pages: int) -> Path:
    """Index every page of ``pdfs`` into a new index at ``path`` (closed again); ``pages`` is
    how many must be indexed, without any issue."""
    index = mmembed.open_index(path, encoder=encoder.info)
    try:
        report = mmembed.index_documents(list(pdfs), index, encoder, dpi=dpi)
        assert report.pages_indexed == pages and not report.issues, report
    finally:
        index.close()
    return path
