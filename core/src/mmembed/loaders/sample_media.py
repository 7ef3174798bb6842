"""Deterministic synthetic recordings (PyAV) for the example, the tests and benchmarks.

Tones, seeded noise and solid-colour frames, written through FFmpeg's real encoders, so
the media loaders decode genuine WAV / FLAC / MP3 / Ogg / M4A / MP4 / WebM / MKV / MOV files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .media import require_av

# Extension -> (container format, audio codec, video codec); the codecs are FFmpeg's built-in
# ones, so every PyAV wheel can write them.
_FORMATS: dict[str, tuple[str, str, str | None]] = {
    ".wav": ("wav", "pcm_s16le", None),
    ".flac": ("flac", "flac", None),
    ".mp3": ("mp3", "libmp3lame", None),
    ".ogg": ("ogg", "libopus", None),
    ".m4a": ("ipod", "aac", None),
    ".mp4": ("mp4", "aac", "mpeg4"),
    ".mov": ("mov", "aac", "mpeg4"),
    ".mkv": ("matroska", "flac", "mpeg4"),
    ".webm": ("webm", "libopus", "libvpx"),
}

Colour = tuple[int, int, int]


def tone(
    frequency: float, seconds: float, *, sample_rate: int = 16_000, amplitude: float = 0.5
) -> np.ndarray:
    """A sine wave ``(samples,)`` float32."""
    t = np.arange(round(seconds * sample_rate), dtype=np.float64) / sample_rate  # (samples,)
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def noise(seconds: float, *, sample_rate: int = 16_000, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """Seeded white noise ``(samples,)`` float32 (a stand-in for speech-like broadband sound)."""
    rng = np.random.default_rng(seed)
    return (amplitude * rng.uniform(-1.0, 1.0, round(seconds * sample_rate))).astype(np.float32)


def write_media(
    path: str | os.PathLike[str],
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    colours: Sequence[Colour] = (),
    seconds_per_colour: float = 1.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
) -> Path:
    """Write ``audio`` (mono float32 samples) and/or solid-colour frames (each colour held for
    ``seconds_per_colour``) to ``path``; the container and codecs follow its extension."""
    av = require_av()
    out = Path(path)
    try:
        container_format, audio_codec, video_codec = _FORMATS[out.suffix.lower()]
    except KeyError:
        raise ValueError(f"cannot write {out.suffix!r}; choose one of {', '.join(_FORMATS)}") from None
    if colours and video_codec is None:
        raise ValueError(f"{out.suffix} holds audio only; give no colours or pick .mp4/.webm/.mkv/.mov")
    if audio is None and not colours:
        raise ValueError("give audio, colours or both")
    with av.open(str(out), mode="w", format=container_format) as container:
        video_stream = audio_stream = None
        if colours:
            assert video_codec is not None
            video_stream = container.add_stream(video_codec, rate=fps)
            video_stream.width, video_stream.height = size
            video_stream.pix_fmt = "yuv420p"
        if audio is not None:
            audio_rate = 48_000 if audio_codec in ("libopus",) else sample_rate
            audio_stream = container.add_stream(audio_codec, rate=audio_rate)
            audio_stream.layout = "mono"
        if video_stream is not None:
            frames_per_colour = max(1, round(seconds_per_colour * fps))
            index = 0
            for colour in colours:
                pixels = np.empty((size[1], size[0], 3), dtype=np.uint8)  # (height, width, rgb)
                pixels[:] = colour
                for _ in range(frames_per_colour):
                    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                    frame.pts, frame.time_base = index, Fraction(1, fps)
                    container.mux(video_stream.encode(frame))
                    index += 1
            container.mux(video_stream.encode(None))
        if audio_stream is not None and audio is not None:
            _write_audio(av, container, audio_stream, audio, sample_rate)
    return out


def _write_audio(av: Any, container: Any, stream: Any, audio: np.ndarray, sample_rate: int) -> None:
    resampler = av.AudioResampler(format=stream.format, layout="mono", rate=stream.rate)
    samples = np.clip(audio.astype(np.float32), -1.0, 1.0)  # (samples,)
    chunk = 4096
    for offset in range(0, len(samples), chunk):
        frame = av.AudioFrame.from_ndarray(
            samples[None, offset : offset + chunk], format="flt", layout="mono"
        )
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, offset, Fraction(1, sample_rate)
        for resampled in resampler.resample(frame):
            container.mux(stream.encode(resampled))
    for resampled in resampler.resample(None):
        container.mux(stream.encode(resampled))
    container.mux(stream.encode(None))
