"""Audio and video files as time segments, decoded with PyAV (FFmpeg bundled in the wheel).

Long because :class:`MediaFile` follows one recording from probe to decoded segments, and
the PyAV helpers below it serve only that path.

A recording is probed once (streams, codecs, duration, frame size) and cut into segments
of ``segment_seconds``; each segment is decoded only when asked for — the file is reopened,
seeked to the segment's start and decoded up to its end — so a two-hour file never sits in
memory: at most the segments prefetched by the stream do. Sound is resampled to 16 kHz
mono float32; frames are sampled at ``fps`` (at most ``max_frames`` per segment, spread
evenly when a segment is too long for that) and scaled down to ``max_frame_pixels``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .errors import LoadError, issue_error

if TYPE_CHECKING:
    from ..types import MediaClip

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".webm", ".mkv", ".mov", ".avi"})
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS

SAMPLE_RATE = 16_000
"""Sound is resampled to this rate (what Qwen2.5-Omni's audio encoder takes)."""
DEFAULT_FPS = 2.0
DEFAULT_MAX_FRAMES = 64
DEFAULT_AUDIO_SEGMENT_SECONDS = 120.0
"""1,920,000 samples at 16 kHz: inside Omni-Embed-Nemotron's 2,048,000-sample audio limit."""
DEFAULT_VIDEO_SEGMENT_SECONDS = 30.0
"""60 frames at the default 2 fps: inside the 64-frame limit."""
DEFAULT_MAX_FRAME_PIXELS = 640 * 640
DEFAULT_MAX_MEDIA_SECONDS = 24 * 3600.0
STREAM_MODES = ("auto", "audio", "video")
_MIN_TAIL_SECONDS = 0.5

MEDIA_KEYS = ("media", "start", "end", "duration")
"""Metadata keys every media segment carries, in the index and in every framework adapter:
``media`` (``"audio"`` or ``"video"``), ``start`` / ``end`` (seconds into the recording)
and ``duration`` (of the whole recording)."""

MEDIA_GLOBS = tuple(f"*{extension}" for extension in sorted(MEDIA_EXTENSIONS))
"""``include`` patterns that keep only recordings in a folder walk."""

_INSTALL_HINT = "pip install 'mmembed-core[media]'"


def require_av() -> ModuleType:
    """The ``av`` module (PyAV), or an actionable error when the extra is not installed."""
    try:
        import av
    except ImportError as exc:
        from ..types import MMEmbedError

        raise MMEmbedError(
            f"audio and video loading needs PyAV (FFmpeg bundled in its wheel): {_INSTALL_HINT}"
        ) from exc
    return av


@dataclass(frozen=True)
class MediaSettings:
    """How recordings are cut and decoded (validated on construction)."""

    segment_seconds: float | None = None
    """Segment length; ``None`` picks 120 s for sound only and 30 s when frames are decoded."""
    fps: float = DEFAULT_FPS
    max_frames: int = DEFAULT_MAX_FRAMES
    streams: str = "auto"
    """``"auto"`` (every stream the file has), ``"audio"`` (sound only; a video file gives
    its sound track) or ``"video"`` (frames only; a file without pictures is an issue)."""
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    max_media_seconds: float = DEFAULT_MAX_MEDIA_SECONDS

    def __post_init__(self) -> None:
        if self.segment_seconds is not None and not self.segment_seconds > 0:
            raise ValueError(
                f"segment_seconds must be > 0 (or None for the default), got {self.segment_seconds!r}"
            )
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps!r}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames!r}")
        if self.streams not in STREAM_MODES:
            raise ValueError(f"media streams must be one of {', '.join(STREAM_MODES)}, got {self.streams!r}")
        if self.max_frame_pixels < 1:
            raise ValueError(f"max_frame_pixels must be >= 1, got {self.max_frame_pixels!r}")
        if not self.max_media_seconds > 0:
            raise ValueError(f"max_media_seconds must be > 0, got {self.max_media_seconds!r}")


@dataclass(frozen=True)
class MediaProbe:
    """What one recording holds, read from its container without decoding it."""

    duration: float
    audio_codec: str | None
    video_codec: str | None
    width: int = 0
    height: int = 0


class MediaFile:
    """One recording opened for segment-by-segment loading (the media sibling of ``PdfPages``)."""

    def __init__(
        self,
        source: str,
        settings: MediaSettings,
        *,
        path: Path | None = None,
        data: bytes | None = None,
        max_image_pixels: int | None = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self._path, self._data = path, data
        self.notes: list[LoadError] = []
        """Problems that do not stop the file loading (e.g. a video without sound)."""
        self.probe = self._probe(max_image_pixels)
        self.use_audio = self.probe.audio_codec is not None and settings.streams != "video"
        self.use_video = self.probe.video_codec is not None and settings.streams != "audio"
        self.kind = "video" if self.use_video else "audio"
        default = DEFAULT_VIDEO_SEGMENT_SECONDS if self.use_video else DEFAULT_AUDIO_SEGMENT_SECONDS
        self.segment_seconds = settings.segment_seconds or default
        count = max(1, math.ceil(self.probe.duration / self.segment_seconds - 1e-9))
        tail = self.probe.duration - (count - 1) * self.segment_seconds
        if count > 1 and tail < min(_MIN_TAIL_SECONDS, self.segment_seconds / 4):
            count -= 1  # a sliver (codec padding) joins the previous segment rather than stand alone
        self.page_count = count

    def _open(self) -> Any:
        av = require_av()
        target: Any = str(self._path) if self._path is not None else io.BytesIO(self._data or b"")
        try:
            return av.open(target, mode="r", metadata_errors="ignore")
        except av.error.FFmpegError as exc:
            raise issue_error(
                self.source,
                f"cannot be opened as audio or video ({_ffmpeg_reason(exc)})",
                "The file is damaged, truncated or not a recording; re-export or re-download it, or leave it out",
                code="corrupt_media",
            ) from exc

    def _probe(self, max_image_pixels: int | None) -> MediaProbe:
        settings = self.settings
        with self._open() as container:
            audio = container.streams.audio[0] if container.streams.audio else None
            video = _picture_stream(container)
            if audio is None and video is None:
                raise issue_error(
                    self.source,
                    "holds no audio or video stream",
                    "Give a recording with sound or pictures, or leave it out",
                    code="no_media_streams",
                )
            for stream in (audio, video):
                if stream is not None and _decoder_name(stream) is None:
                    raise issue_error(
                        self.source,
                        f"uses a {stream.type} codec FFmpeg cannot decode",
                        "Convert it, e.g. `ffmpeg -i IN -c:a flac -c:v libvpx-vp9 OUT.mkv`, or leave it out",
                        code="unsupported_codec",
                    )
            if settings.streams == "video" and video is None:
                raise issue_error(
                    self.source,
                    "holds sound only, and video mode was asked for",
                    "Index it with streams='auto' or 'audio' (CLI: --media-streams auto), or leave it out",
                    code="no_video_track",
                )
            if settings.streams == "audio" and audio is None:
                raise issue_error(
                    self.source,
                    "has no audio track, and audio mode was asked for",
                    "Index it with streams='auto' or 'video' (CLI: --media-streams auto), or leave it out",
                    code="no_audio_track",
                )
            if video is not None and audio is None and settings.streams == "auto":
                self.notes.append(
                    issue_error(
                        self.source,
                        "has no audio track; it is indexed from its pictures only",
                        "Nothing to do if the video is silent",
                        code="video_without_audio",
                    )
                )
            width = height = 0
            if video is not None and settings.streams != "audio":
                width, height = int(video.codec_context.width or 0), int(video.codec_context.height or 0)
                if max_image_pixels is not None and width * height > max_image_pixels:
                    raise issue_error(
                        self.source,
                        f"has {width} × {height} frames, above max_image_pixels={max_image_pixels:_}",
                        "If you trust the file, raise max_image_pixels; otherwise leave it out",
                        code="video_too_large",
                    )
                if width <= 0 or height <= 0:
                    raise issue_error(
                        self.source,
                        f"declares {width} × {height} frames",
                        "The video stream is damaged; re-export it, or load its sound with streams='audio'",
                        code="corrupt_media",
                    )
            duration = _duration(container, audio, video)
        if duration is None or duration <= 0:
            raise issue_error(
                self.source,
                "is empty (zero-length recording)",
                "Re-export or re-record it, or leave it out",
                code="empty_media",
            )
        if duration > settings.max_media_seconds:
            raise issue_error(
                self.source,
                f"lasts {duration / 3600:.1f} h, above max_media_seconds={settings.max_media_seconds:g}",
                "If the file is right, raise max_media_seconds; a wrong duration means a damaged header: re-mux it",
                code="media_too_long",
            )
        return MediaProbe(
            duration=duration,
            audio_codec=_decoder_name(audio) if audio is not None else None,
            video_codec=_decoder_name(video) if video is not None else None,
            width=width,
            height=height,
        )

    def span(self, index: int) -> tuple[float, float]:
        """``(start, end)`` seconds of the 0-based segment ``index``."""
        start = index * self.segment_seconds
        if index == self.page_count - 1:
            return start, self.probe.duration
        return start, min(self.probe.duration, start + self.segment_seconds)

    def plan(self, index: int) -> tuple[dict[str, Any], Callable[[], MediaClip]]:
        start, end = self.span(index)
        frame_count = 0
        fps = 0.0
        if self.use_video:
            frame_count = max(
                1, min(self.settings.max_frames, math.ceil((end - start) * self.settings.fps - 0.25))
            )
            fps = frame_count / (end - start)
        width, height = _fit(self.probe.width, self.probe.height, self.settings.max_frame_pixels)
        settings: dict[str, Any] = {
            "backend": "pyav",
            "media": self.kind,
            "start": round(start, 6),
            "end": round(end, 6),
            "duration": round(self.probe.duration, 6),
            "sample_rate": SAMPLE_RATE if self.use_audio else None,
            "fps": round(fps, 6) if self.use_video else None,
            "frames": frame_count,
            "width": width if self.use_video else None,
            "height": height if self.use_video else None,
            "audio_codec": self.probe.audio_codec if self.use_audio else None,
            "video_codec": self.probe.video_codec if self.use_video else None,
        }

        def decode() -> MediaClip:
            return self._decode(index + 1, start, end, frame_count, (width, height))

        return settings, decode

    def _decode(
        self, number: int, start: float, end: float, frame_count: int, size: tuple[int, int]
    ) -> MediaClip:
        from ..types import MediaClip

        av = require_av()
        targets = [start + (i + 0.5) * (end - start) / frame_count for i in range(frame_count)]
        chunks: list[np.ndarray] = []
        frames: list[Image.Image] = []
        damage: list[Exception] = []  # packets FFmpeg could not read or decode (a damaged stretch)
        try:
            with self._open() as container:
                audio = container.streams.audio[0] if self.use_audio else None
                video = _picture_stream(container) if self.use_video else None
                streams = [s for s in (audio, video) if s is not None]
                anchor = audio if audio is not None else video
                assert anchor is not None
                if start > 0:
                    # Seek to the last keyframe before ``start``; frames before it are dropped below.
                    container.seek(int(start / anchor.time_base), stream=anchor, backward=True)
                resampler = (
                    av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) if audio else None
                )
                audio_done, video_done = audio is None, video is None
                held: Any = None  # the latest picture at or before the next target time
                for frame in _decode_frames(container, streams, damage):
                    time = frame.time
                    if time is None:
                        continue
                    if isinstance(frame, av.AudioFrame) and not audio_done:
                        assert resampler is not None
                        for chunk in resampler.resample(frame):
                            chunks.append(_clip_audio(chunk, start, end))
                        audio_done = time >= end
                    elif isinstance(frame, av.VideoFrame) and not video_done:
                        while len(frames) < frame_count and time > targets[len(frames)] and held is not None:
                            frames.append(_to_image(held, size))
                        held = frame
                        video_done = len(frames) >= frame_count or time >= end
                    if audio_done and video_done:
                        break
                if resampler is not None and not audio_done:
                    for chunk in resampler.resample(None):
                        chunks.append(_clip_audio(chunk, start, end))
                while video is not None and held is not None and len(frames) < frame_count:
                    frames.append(_to_image(held, size))  # the last picture holds to the end
        except LoadError:
            raise
        except av.error.FFmpegError as exc:
            raise issue_error(
                self.source,
                f"could not be decoded ({_ffmpeg_reason(exc)})",
                "The recording is damaged or truncated here; re-export it, or skip the segment with page_range",
                code="decode_failed",
                page=number,
            ) from exc
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)  # (samples,)
        if (self.use_audio and samples.size == 0) or (self.use_video and not frames):
            why = f" ({_ffmpeg_reason(damage[-1])})" if damage else ""
            raise issue_error(
                self.source,
                f"has nothing decodable between {format_time(start)} and {format_time(end)}{why}",
                "The file is probably truncated; re-export or re-download it",
                code="decode_failed",
                page=number,
            )
        return MediaClip(
            audio=samples if self.use_audio else None,
            sample_rate=SAMPLE_RATE,
            frames=tuple(frames),
            fps=frame_count / (end - start) if frames else 0.0,
            start=start,
            end=end,
        )

    def close(self) -> None:
        """Nothing stays open: each segment opens the file itself."""


def _decode_frames(container: Any, streams: list[Any], damage: list[Exception]) -> Iterator[Any]:
    """Decoded frames of ``streams`` in file order; a packet that fails to decode is skipped and
    a demuxing failure ends the walk, both noted in ``damage`` (what decoded before is kept)."""
    av = require_av()
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            damage.append(exc)
            return
        try:
            decoded = packet.decode()
        except av.error.FFmpegError as exc:
            damage.append(exc)
            continue
        yield from decoded


def _clip_audio(chunk: Any, start: float, end: float) -> np.ndarray:
    """The samples of a resampled mono frame that fall inside ``[start, end)``."""
    samples = chunk.to_ndarray().reshape(-1).astype(np.float32, copy=False)  # (samples,)
    first = chunk.time if chunk.time is not None else start
    lo = max(0, round((start - first) * SAMPLE_RATE))
    hi = max(0, round((end - first) * SAMPLE_RATE))
    return samples[lo:hi]


def _to_image(frame: Any, size: tuple[int, int]) -> Image.Image:
    width, height = size
    return frame.to_image(width=width, height=height) if width and height else frame.to_image()


def _picture_stream(container: Any) -> Any:
    """The first real video stream (cover art in audio files is an attached picture, not video)."""
    for stream in container.streams.video:
        if not stream.disposition & 0x0400:  # AV_DISPOSITION_ATTACHED_PIC
            return stream
    return None


def _decoder_name(stream: Any) -> str | None:
    try:
        context = stream.codec_context
    except Exception:
        return None
    if context is None or context.codec is None or context.name in ("", "none"):
        return None
    try:
        if not context.codec.is_decoder:
            return None
    except AttributeError:
        pass
    return str(context.name)


def _duration(container: Any, audio: Any, video: Any) -> float | None:
    if container.duration is not None and container.duration > 0:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    for stream in (audio, video):
        if stream is not None and stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    # No duration in the header: walk the packets once (no decoding) to find the last timestamp.
    av = require_av()
    last = 0.0
    try:
        for packet in container.demux(*[s for s in (audio, video) if s is not None]):
            if packet.pts is not None and packet.time_base is not None:
                last = max(last, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    except av.error.FFmpegError:
        pass  # a damaged tail: what was read so far is the duration
    return last


def _fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    if width <= 0 or height <= 0 or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _ffmpeg_reason(exc: Exception) -> str:
    reason = getattr(exc, "strerror", None) or str(exc)
    return str(reason).split(": '", 1)[0].strip() or type(exc).__name__


def format_time(seconds: float) -> str:
    """``H:MM:SS.s`` (``M:SS.s`` under an hour), as shown in search results."""
    minutes, secs = divmod(max(0.0, seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:04.1f}"
    return f"{minutes}:{secs:04.1f}"
