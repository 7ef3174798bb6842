"""What commands print: untrusted text escaped for the terminal, a hit's place in its source."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..types import SearchHit


def safe(text: object) -> str:
    """``text`` with control characters escaped (``\\x1b``): file names and stored metadata
    are untrusted, and printed raw an escape sequence would clear or recolour the terminal."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in str(text)
    )


def safe_lines(text: str) -> str:
    """:func:`safe` for each line of a multi-line report."""
    return "\n".join(safe(line) for line in text.split("\n"))


def where(hit: SearchHit) -> str:
    """``page 3`` for a page, ``0:30.0–1:00.0`` (start–end in the recording) for a media segment."""
    from ..loaders import format_time

    span = hit.time_span
    if span is None:
        return f"page {hit.page}"
    return f"{format_time(span[0])}–{format_time(span[1])} ({hit.metadata.get('media', 'media')})"
