"""Loader settings, validated once before any file is touched."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from .media import MediaSettings

DEFAULT_DPI = 144
# Pillow's own decompression-bomb threshold: ~89 M pixels (about 256 MB as RGB).
DEFAULT_MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
BACKENDS = ("pypdfium2", "pdf2image")

MetadataArg = Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None
PasswordArg = str | Mapping[Any, str] | None
SkipArg = Callable[[str, str], bool] | None
PageRangeArg = int | str | range | tuple[int, int] | Iterable[int] | None


@dataclass(frozen=True)
class PageSelection:
    """Which 1-based pages to load from each document (``None`` bounds are open)."""

    spans: tuple[tuple[int, int | None], ...]
    text: str

    def select(self, page_count: int) -> list[int]:
        """The selected page numbers that exist in a ``page_count``-page document, in order."""
        chosen: set[int] = set()
        for start, end in self.spans:
            last = page_count if end is None else min(end, page_count)
            chosen.update(range(start, last + 1))
        return sorted(chosen)

    def __str__(self) -> str:
        return self.text


_SPAN = re.compile(r"^\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?$")


def parse_page_range(value: PageRangeArg) -> PageSelection | None:
    """Normalise a ``page_range`` argument.

    Accepted: ``None`` (all pages); an int (one page); a string such as ``"1-3,7,10-"``
    (``10-`` = page 10 to the end); a ``range`` of page numbers; a ``(first, last)`` tuple
    (inclusive); any other iterable of page numbers. Page numbers are 1-based.
    """
    if value is None:
        return None
    spans: list[tuple[int, int | None]] = []
    if isinstance(value, bool):
        raise ValueError(f"page_range must be page numbers, not {value!r}")
    if isinstance(value, int):
        spans.append((value, value))
    elif isinstance(value, str):
        for part in value.split(","):
            match = _SPAN.match(part)
            if not match:
                raise ValueError(
                    f"page_range {value!r}: cannot read {part!r}; use e.g. '1-3,7,10-' (1-based pages)"
                )
            start = int(match.group(1))
            if match.group(2) is None:
                spans.append((start, start))
            else:
                spans.append((start, int(match.group(3)) if match.group(3) else None))
    elif isinstance(value, range):
        if value.step != 1:
            spans.extend((p, p) for p in value)
        elif len(value):
            spans.append((value.start, value.stop - 1))
    elif isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        spans.append((value[0], value[1]))
    else:
        spans.extend((int(p), int(p)) for p in value)
    for start, end in spans:
        if start < 1 or (end is not None and end < start):
            raise ValueError(f"page_range {value!r}: pages are numbered from 1 and spans must be first<=last")
    if not spans:
        raise ValueError(f"page_range {value!r} selects no page")
    return PageSelection(spans=tuple(spans), text=_describe(spans))


def _describe(spans: Sequence[tuple[int, int | None]]) -> str:
    parts = []
    for start, end in spans:
        if end == start:
            parts.append(str(start))
        else:
            parts.append(f"{start}-{'' if end is None else end}")
    return ",".join(parts)


@dataclass(frozen=True)
class LoaderOptions:
    """Everything :func:`mmembed.loaders.load_pages` can be told (see its docstring).

    Validated and normalised on construction (``ValueError`` / ``TypeError`` on a wrong
    setting): ``page_range`` becomes a :class:`PageSelection`, globs become tuples.
    """

    dpi: float = DEFAULT_DPI
    max_pixels: int | None = None
    page_range: PageSelection | PageRangeArg = None
    password: PasswordArg = None
    include: str | Iterable[str] | None = ()
    exclude: str | Iterable[str] | None = ()
    include_hidden: bool = False
    backend: str = "pypdfium2"
    strict: bool = False
    metadata: MetadataArg = None
    prefetch: int = 4
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    skip: SkipArg = None
    office_timeout: float = 180.0
    media: bool = False
    """Load audio and video files as :class:`MediaSegment` items (``load_documents`` sets it)."""
    media_settings: MediaSettings = field(default_factory=MediaSettings)
    media_refusal: str | None = None
    """Why media files are left out when ``media`` is off (shown in their issue)."""
    _password_map: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.dpi or self.dpi <= 0:
            raise ValueError(f"dpi must be > 0, got {self.dpi!r}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1 or None, got {self.max_pixels!r}")
        if self.max_image_pixels is not None and self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1 or None, got {self.max_image_pixels!r}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown PDF backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if not isinstance(self.media_settings, MediaSettings):
            raise TypeError("media_settings must be a MediaSettings")
        if self.metadata is not None and not (callable(self.metadata) or isinstance(self.metadata, Mapping)):
            raise TypeError("metadata must be a dict or a callable(source) -> dict")
        if self.skip is not None and not callable(self.skip):
            raise TypeError("skip must be a callable(source, content_hash) -> bool")
        if isinstance(self.password, Mapping):
            for key, value in self.password.items():
                self._password_map[str(key)] = value
                self._password_map[os.path.abspath(os.fspath(key))] = value
        elif self.password is not None and not isinstance(self.password, str):
            raise TypeError("password must be a str or a dict {path: password}")
        if not isinstance(self.page_range, PageSelection):
            object.__setattr__(self, "page_range", parse_page_range(self.page_range))
        object.__setattr__(self, "include", _globs(self.include))
        object.__setattr__(self, "exclude", _globs(self.exclude))
        object.__setattr__(self, "dpi", float(self.dpi))

    @property
    def pages(self) -> PageSelection | None:
        """The normalised ``page_range``."""
        assert self.page_range is None or isinstance(self.page_range, PageSelection)
        return self.page_range

    @property
    def include_globs(self) -> tuple[str, ...]:
        return _globs(self.include)

    @property
    def exclude_globs(self) -> tuple[str, ...]:
        return _globs(self.exclude)

    def replace(self, **changes: Any) -> LoaderOptions:
        return replace(self, **changes)

    def password_for(self, source: str) -> str | None:
        """The password to try for ``source`` (by exact key, absolute path, then file name)."""
        if isinstance(self.password, str):
            return self.password
        if not self._password_map:
            return None
        for key in (source, os.path.abspath(source), os.path.basename(source)):
            if key in self._password_map:
                return self._password_map[key]
        return None

    def metadata_for(self, source: str) -> dict[str, Any]:
        if self.metadata is None:
            return {}
        value = self.metadata(source) if callable(self.metadata) else self.metadata
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise TypeError(f"the metadata callable returned {type(value).__name__} for {source}, not a dict")
        return dict(value)


def _globs(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(pattern) for pattern in value)
