"""One time segment of one recording: identity like a page, and a lazily decoded clip."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .page import LazyItem

if TYPE_CHECKING:
    from ..types import MediaClip

ClipDecoder = Callable[[], "MediaClip"]


class MediaSegment(LazyItem["MediaClip"]):
    """A stretch of an audio or video file coming out of :func:`mmembed.loaders.load_documents`.

    It has the identity fields of :class:`~mmembed.loaders.Page` — ``source``, ``page`` (the
    1-based segment number), ``page_count`` (segments in the recording), ``content_hash``,
    ``id``, ``metadata`` — plus ``start`` / ``end`` seconds, and its :attr:`clip` (16 kHz mono
    sound and/or sampled RGB frames) decoded by the loader's worker or on first access.
    """

    __slots__ = ()

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
        # ``render``: decode settings — ``media``, ``start``, ``end``, ``duration``,
        # ``sample_rate``, ``fps``, ``frames``, ``width``/``height``, codecs.
        super().__init__(
            source=source,
            page=page,
            page_count=page_count,
            content_hash=content_hash,
            render=render,
            metadata=metadata,
            make=decoder,
        )

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
        return self._get()

    def load(self) -> MediaSegment:
        """Decode now (if not yet) and return ``self``."""
        _ = self.clip
        return self

    def __repr__(self) -> str:
        state = "decoded" if self.is_rendered else "lazy"
        return (
            f"MediaSegment(source={self.source!r}, segment={self.page}/{self.page_count}, "
            f"{self.start:.1f}-{self.end:.1f}s, {self.media}, hash={self.content_hash[:12]}…, {state})"
        )
