"""One time segment of one recording: identity like a page, and a lazily decoded clip."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..types import page_id

if TYPE_CHECKING:
    from ..encoders.base import MediaClip

ClipDecoder = Callable[[], "MediaClip"]


class MediaSegment:
    """A stretch of an audio or video file coming out of :func:`mmembed.loaders.load_documents`.

    It has the identity fields of :class:`~mmembed.loaders.Page` — ``source``, ``page`` (the
    1-based segment number), ``page_count`` (segments in the recording), ``content_hash``,
    ``id``, ``metadata`` — plus ``start`` / ``end`` seconds, and its :attr:`clip` (16 kHz mono
    sound and/or sampled RGB frames) decoded by the loader's worker or on first access.
    """

    __slots__ = (
        "__weakref__",
        "_clip",
        "_decoder",
        "_lock",
        "content_hash",
        "metadata",
        "page",
        "page_count",
        "render",
        "source",
    )

    def __init__(
        self,
        *,
        source: str,
        page: int,
        page_count: int,
        content_hash: str,
        render: dict[str, Any],
        metadata: dict[str, Any],
        decoder: ClipDecoder,
    ) -> None:
        self.source = source
        """Absolute path of the recording, or the name a bytes / file-like source was given."""
        self.page = page
        """1-based segment number."""
        self.page_count = page_count
        """Number of segments in the whole recording."""
        self.content_hash = content_hash
        """sha256 hex digest of the source file's bytes."""
        self.render = render
        """Decode settings: ``media``, ``start``, ``end``, ``duration``, ``sample_rate``, ``fps``,
        ``frames``, ``width``/``height``, codecs."""
        self.metadata = metadata
        """Caller metadata given to the loader."""
        self._decoder = decoder
        self._clip: MediaClip | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        """Stable id from (content hash, segment number), like a page's."""
        return page_id(self.content_hash, self.page)

    @property
    def media(self) -> str:
        """``"audio"`` or ``"video"`` (a video file loaded for its sound only is ``"audio"``)."""
        return str(self.render["media"])

    @property
    def start(self) -> float:
        """Seconds from the start of the recording to the start of this segment."""
        return float(self.render["start"])

    @property
    def end(self) -> float:
        return float(self.render["end"])

    @property
    def duration(self) -> float:
        """Length of the whole recording in seconds."""
        return float(self.render["duration"])

    def span_metadata(self) -> dict[str, Any]:
        """The :data:`~mmembed.loaders.media.MEDIA_KEYS` of this segment (what every framework
        adapter adds to its own source / page keys)."""
        return {"media": self.media, "start": self.start, "end": self.end, "duration": self.duration}

    def record_metadata(self) -> dict[str, Any]:
        """What the index and the framework adapters store about the segment: the caller's
        metadata plus ``page_count`` and the :data:`~mmembed.loaders.media.MEDIA_KEYS`."""
        return {**self.metadata, "page_count": self.page_count, **self.span_metadata()}

    @property
    def clip(self) -> MediaClip:
        """The decoded segment (decoded now if needed; raises ``LoadError`` if it cannot be)."""
        with self._lock:
            if self._clip is None:
                self._clip = self._decoder()
            return self._clip

    @property
    def is_rendered(self) -> bool:
        return self._clip is not None

    def load(self) -> MediaSegment:
        """Decode now (if not yet) and return ``self``."""
        _ = self.clip
        return self

    def release(self) -> None:
        """Drop the decoded clip to free its memory; :attr:`clip` decodes it again if asked."""
        with self._lock:
            self._clip = None

    def __repr__(self) -> str:
        state = "decoded" if self._clip is not None else "lazy"
        return (
            f"MediaSegment(source={self.source!r}, segment={self.page}/{self.page_count}, "
            f"{self.start:.1f}-{self.end:.1f}s, {self.media}, hash={self.content_hash[:12]}…, {state})"
        )
