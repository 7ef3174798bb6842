"""Audio and video loading: every container decodes, segments carry their time span, one
stream mixes pages and recordings, and bad recordings become named issues (test media is
written by PyAV itself)."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed.loaders import (
    BytesSource,
    LoadError,
    MediaSegment,
    Page,
    load_documents,
    load_pages,
)
from mmembed.loaders.media import require_av
from mmembed.loaders.sample_media import noise, tone, write_media
from mmembed.types import MMEmbedError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def peak_hz(samples: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))  # (bins,)
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def mean_colour(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0)  # (3,)


@pytest.mark.parametrize("ext", [".wav", ".flac", ".mp3", ".ogg", ".m4a"])
def test_audio_formats_decode_to_16khz_mono_segments(tmp_path, ext):
    # 440 Hz for 1.5 s then 1000 Hz for 1.5 s: each 1.5 s segment must hear its own tone.
    path = write_media(tmp_path / f"tones{ext}", audio=np.concatenate([tone(440, 1.5), tone(1000, 1.5)]))
    with load_documents(path, segment_seconds=1.5) as stream:
        segments = list(stream)
    assert [s.page for s in segments] == [1, 2] and all(s.page_count == 2 for s in segments)
    assert all(isinstance(s, MediaSegment) and s.media == "audio" for s in segments)
    assert segments[0].start == 0.0 and segments[0].end == 1.5 and segments[1].start == 1.5
    assert segments[1].end == pytest.approx(3.0, abs=0.05)
    for segment, expected_hz in zip(segments, (440, 1000), strict=True):
        clip = segment.clip
        assert clip.audio is not None and clip.audio.dtype == np.float32 and clip.audio.ndim == 1
        assert clip.sample_rate == 16_000 and clip.frames == ()
        assert abs(len(clip.audio) - 1.5 * 16_000) < 0.1 * 16_000
        # the middle of the segment, away from codec edges
        middle = clip.audio[len(clip.audio) // 4 : 3 * len(clip.audio) // 4]
        assert peak_hz(middle) == pytest.approx(expected_hz, abs=20)
        assert (clip.start, clip.end) == (segment.start, segment.end)
    meta = segments[1].record_metadata()
    assert meta["media"] == "audio" and meta["start"] == 1.5 and meta["page_count"] == 2
    assert meta["duration"] == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".mkv", ".mov"])
def test_video_formats_give_frames_at_fps_and_their_sound_track(tmp_path, ext):
    path = write_media(
        tmp_path / f"colours{ext}",
        audio=tone(440, 4.0),
        colours=[RED, GREEN, BLUE, RED],
        seconds_per_colour=1.0,
    )
    with load_documents(path, segment_seconds=2.0, fps=2.0) as stream:
        first, second = list(stream)
    assert first.media == "video" and (first.start, first.end) == (0.0, 2.0)
    clip = first.clip
    assert clip.has_audio and clip.has_video and len(clip.frames) == 4 and clip.fps == 2.0
    colours = [mean_colour(frame) for frame in clip.frames]
    # frames sampled at 0.25, 0.75 s (red) and 1.25, 1.75 s (green)
    assert all(c[0] > 200 and c[1] < 50 for c in colours[:2])
    assert all(c[1] > 200 and c[0] < 50 for c in colours[2:])
    assert mean_colour(second.clip.frames[0])[2] > 200  # 2.25 s: blue
    assert abs(len(clip.audio) - 32_000) < 1_600  # type: ignore[arg-type]
    assert first.render["width"] == 64 and first.render["frames"] == 4


def test_frames_capped_by_max_frames_spread_over_the_segment_and_scaled(tmp_path):
    path = write_media(
        tmp_path / "long.mp4", colours=[RED, GREEN, BLUE], seconds_per_colour=2.0, size=(320, 240)
    )
    with load_documents(path, max_frames=3, fps=4.0, max_frame_pixels=80 * 60) as stream:
        (segment,) = list(stream)
    clip = segment.clip
    assert len(clip.frames) == 3 and clip.fps == pytest.approx(0.5)  # 3 frames over 6 s
    assert [int(np.argmax(mean_colour(f))) for f in clip.frames] == [0, 1, 2]  # red, green, blue
    assert clip.frames[0].size == (80, 60) and not clip.has_audio


def test_default_segment_lengths_fit_the_omni_model_limits(tmp_path):
    audio = write_media(tmp_path / "a.wav", audio=noise(1.0))
    video = write_media(tmp_path / "v.mp4", audio=noise(1.0), colours=[RED])
    with load_documents([audio, video]) as stream:
        a, v = list(stream)
    assert a.render["media"] == "audio" and a.render["frames"] == 0
    # 120 s of sound = 1,920,000 samples <= 2,048,000; 30 s of video at 2 fps = 60 frames <= 64
    from mmembed.loaders import DEFAULT_AUDIO_SEGMENT_SECONDS, DEFAULT_VIDEO_SEGMENT_SECONDS

    assert DEFAULT_AUDIO_SEGMENT_SECONDS * 16_000 <= 2_048_000 and DEFAULT_VIDEO_SEGMENT_SECONDS * 2 <= 64
    assert v.render["frames"] == 2 and v.render["fps"] == 2.0


def test_segments_decode_lazily_and_only_their_own_span(tmp_path):
    path = write_media(tmp_path / "ten.flac", audio=noise(10.0, seed=1))
    with load_documents(path, segment_seconds=1.0, prefetch=0) as stream:
        segments = list(stream)
    assert len(segments) == 10 and not any(s.is_rendered for s in segments)
    clip = segments[7].clip  # decoding segment 8 seeks there: it holds one second, not eight
    assert (clip.start, clip.end) == (7.0, 8.0) and abs(len(clip.audio) - 16_000) < 200  # type: ignore[arg-type]
    assert [s.is_rendered for s in segments].count(True) == 1
    segments[7].release()
    assert not segments[7].is_rendered


def test_one_folder_mixing_pdf_image_audio_and_video_loads_in_one_stream(tmp_path):
    from reportlab.pdfgen import canvas

    doc = canvas.Canvas(str(tmp_path / "a_report.pdf"), pagesize=(100, 100), invariant=1)
    for _ in range(2):
        doc.drawString(10, 50, "page")
        doc.showPage()
    doc.save()
    Image.new("RGB", (40, 30), BLUE).save(tmp_path / "b_scan.png")
    write_media(tmp_path / "c_talk.wav", audio=tone(300, 2.5))
    write_media(tmp_path / "d_clip.mp4", audio=tone(600, 1.0), colours=[GREEN])
    with load_documents(tmp_path, segment_seconds=1.0, dpi=36) as stream:
        items = list(stream)
    kinds = [(Path(i.source).name, type(i).__name__, i.page) for i in items]
    assert kinds == [
        ("a_report.pdf", "Page", 1),
        ("a_report.pdf", "Page", 2),
        ("b_scan.png", "Page", 1),
        ("c_talk.wav", "MediaSegment", 1),
        ("c_talk.wav", "MediaSegment", 2),
        ("c_talk.wav", "MediaSegment", 3),
        ("d_clip.mp4", "MediaSegment", 1),
    ]
    assert stream.pages_loaded == 3 and stream.segments_loaded == 4 and stream.files_loaded == 4
    assert not stream.issues
    assert len({i.id for i in items}) == len(items)
    # load_pages keeps its page-only contract: recordings are named issues, pages still load
    with load_pages(tmp_path, dpi=36) as pages:
        assert all(isinstance(p, Page) for p in pages)
    assert pages.pages_loaded == 3
    assert sorted(i.code for i in pages.issues) == ["media_not_loaded"] * 2
    assert "load_documents" in str(pages.issues[0])


def test_media_sniffed_without_extension_and_from_bytes(tmp_path):
    wav = write_media(tmp_path / "x.wav", audio=tone(440, 1.0)).read_bytes()
    (tmp_path / "recording").write_bytes(wav)
    with load_documents([tmp_path / "recording", BytesSource("memo.wav", wav + b"\0")]) as stream:
        items = list(stream)
    assert [Path(i.source).name for i in items] == ["recording", "memo.wav"]
    assert all(i.clip.has_audio for i in items)


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad_media")
    write_media(folder / "good.wav", audio=tone(440, 2.0))
    video = write_media(folder / "video.mp4", audio=tone(440, 2.0), colours=[RED, GREEN]).read_bytes()
    (folder / "truncated.mp4").write_bytes(video[: len(video) // 2])  # moov atom lost
    (folder / "garbage.mkv").write_bytes(np.random.default_rng(0).bytes(4000))
    with wave.open(str(folder / "zero.wav"), "wb") as empty:  # a header and no samples
        empty.setnchannels(1), empty.setsampwidth(2), empty.setframerate(16_000)
    mkv = write_media(folder / "tmp.mkv", audio=tone(440, 1.0), colours=[RED]).read_bytes()
    (folder / "tmp.mkv").unlink()
    (folder / "codec.mkv").write_bytes(mkv.replace(b"V_MPEG4/ISO/ASP", b"V_ZZZZZ/ISO/ASP"))
    write_media(folder / "silent.webm", colours=[BLUE, BLUE])
    flac = write_media(folder / "tmp.flac", audio=noise(3.0, seed=2)).read_bytes()
    (folder / "tmp.flac").unlink()
    (folder / "cut.flac").write_bytes(flac[: len(flac) // 2])  # the header promises 3 s
    return folder


def test_bad_recordings_are_named_issues_and_good_ones_still_load(bad_folder):
    with load_documents(bad_folder, segment_seconds=1.0) as stream:
        items = list(stream)
    codes = {(Path(i.source).name, i.code, i.page) for i in stream.issues}
    assert ("truncated.mp4", "corrupt_media", None) in codes
    assert ("garbage.mkv", "corrupt_media", None) in codes
    assert ("zero.wav", "empty_media", None) in codes
    assert ("codec.mkv", "unsupported_codec", None) in codes
    assert ("silent.webm", "video_without_audio", None) in codes  # a note: the video still loads
    assert ("cut.flac", "decode_failed", 3) in codes  # the lost tail, segment by segment
    loaded = {(Path(i.source).name, i.page) for i in items}
    assert {("good.wav", 1), ("good.wav", 2), ("video.mp4", 1), ("silent.webm", 1), ("cut.flac", 1)} <= loaded
    silent = next(i for i in items if i.source.endswith("silent.webm"))
    assert silent.clip.audio is None and silent.clip.has_video
    messages = {Path(i.source).name: str(i) for i in stream.issues if i.page is None}
    assert "truncated.mp4" in messages["truncated.mp4"] and "re-export" in messages["truncated.mp4"]
    assert "Convert it" in messages["codec.mkv"]


def test_strict_raises_on_a_bad_recording_but_not_on_a_note(bad_folder):
    with pytest.raises(LoadError, match=r"codec\.mkv: uses a video codec"):
        list(load_documents(bad_folder, strict=True, include="codec.mkv"))
    items = list(load_documents(bad_folder, strict=True, include="silent.webm"))
    assert len(items) == 1


def test_stream_modes_refuse_what_the_file_lacks(bad_folder):
    with load_documents(bad_folder, media_streams="video", include=["good.wav", "video.mp4"]) as stream:
        items = list(stream)
    assert [(Path(i.source).name, i.media, i.clip.has_audio) for i in items] == [
        ("video.mp4", "video", False)
    ]
    assert [(Path(i.source).name, i.code) for i in stream.issues] == [("good.wav", "no_video_track")]
    with load_documents(bad_folder, media_streams="audio", include=["silent.webm", "video.mp4"]) as stream:
        items = list(stream)
    assert [(Path(i.source).name, i.media, i.clip.has_video) for i in items] == [
        ("video.mp4", "audio", False)
    ]
    assert [(Path(i.source).name, i.code) for i in stream.issues] == [("silent.webm", "no_audio_track")]


def test_absurd_durations_and_frame_sizes_are_refused(bad_folder):
    with load_documents(bad_folder, include="video.mp4", max_media_seconds=1.0) as stream:
        assert list(stream) == []
    assert stream.issues[0].code == "media_too_long" and "max_media_seconds" in str(stream.issues[0])
    with load_documents(bad_folder, include="video.mp4", max_image_pixels=1000) as stream:
        assert list(stream) == []
    assert stream.issues[0].code == "video_too_large" and "64 × 48" in str(stream.issues[0])


def test_invalid_media_settings_and_missing_pyav_are_explained(monkeypatch):
    with pytest.raises(ValueError, match="segment_seconds"):
        load_documents([], segment_seconds=0)
    with pytest.raises(ValueError, match="media streams"):
        load_documents([], media_streams="both")
    with pytest.raises(TypeError, match="unknown option"):
        load_documents([], dip=72)
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MMEmbedError, match=r"pip install 'mmembed-core\[media\]'"):
        require_av()
