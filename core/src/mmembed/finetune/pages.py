"""Page images for training, rendered from the files the index recorded.

Training re-encodes pages with the model being trained, so it needs the pages themselves,
not their stored vectors (nor the thumbnail: far below the model's resolution). A page whose
file is gone or changed since indexing is refused with what to do.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from PIL import Image

from ..types import MMEmbedError, PageRecord

CACHE_PAGES = 512
"""Rendered pages kept in memory (a page is reused by every batch it is a negative in)."""


class PageImages:
    """``images[page_id]`` -> the page rendered at ``dpi`` (a small LRU cache)."""

    def __init__(self, records: Mapping[str, PageRecord], *, dpi: float, cache: int = CACHE_PAGES) -> None:
        self.records = records
        self.dpi = dpi
        self.cache = cache
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._checked: dict[str, str] = {}

    def __getitem__(self, page_id: str) -> Image.Image:
        image = self._images.get(page_id)
        if image is not None:
            self._images.move_to_end(page_id)
            return image
        image = self._render(self.records[page_id])
        self._images[page_id] = image
        if len(self._images) > self.cache:
            self._images.popitem(last=False)
        return image

    def check(self, page_id: str) -> None:
        """Raise now (before any training) if the page's file cannot be rendered as indexed."""
        self._check_file(self.records[page_id])

    def _check_file(self, record: PageRecord) -> None:
        from ..loaders.sources import SourceItem, digest

        path = Path(record.source)
        if not path.is_file():
            raise MMEmbedError(
                f"page {record.page} of {record.source} is in the index but its file is gone; training "
                "re-encodes pages, so put the file back at that path (or re-index from where it is now)"
            )
        if record.source not in self._checked:
            self._checked[record.source] = digest(SourceItem(name=record.source, path=path)).content_hash
        if self._checked[record.source] != record.content_hash:
            raise MMEmbedError(
                f"{record.source} changed since it was indexed, so page {record.page} may not be the page the "
                "pairs name. Re-index it (`mmembed index <file> --index <folder>`), then train again."
            )

    def _render(self, record: PageRecord) -> Image.Image:
        from ..loaders import render_page

        self._check_file(record)
        return render_page(record.source, record.page, dpi=self.dpi)
