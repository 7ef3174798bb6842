"""A folder of recordings (plus one PDF-free image and a damaged file) and an index of it
built with the test-only ToneColourEncoder, shared by the framework adapter tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from media_encoder import ToneColourEncoder
from PIL import Image

import mmembed
from mmembed.loaders.sample_media import tone, write_media

SPAN_KEYS = ("media", "start", "end", "duration", "media_path")


def write_talks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_media(folder / "lecture.wav", audio=np.concatenate([tone(440, 2.0), tone(3000, 2.0)]))
    write_media(folder / "clip.mkv", audio=tone(150, 2.0), colours=[(255, 0, 0), (255, 0, 0)])
    Image.new("RGB", (40, 30), (0, 0, 255)).save(folder / "poster.png")
    (folder / "broken.mp3").write_bytes(b"ID3" + bytes(300))
    return folder


def build_index(folder: Path, index_path: Path) -> ToneColourEncoder:
    encoder = ToneColourEncoder()
    with mmembed.open_index(index_path, encoder=encoder.info) as index:
        report = mmembed.index_documents(folder, index, encoder, segment_seconds=2.0)
    assert report.segments_indexed == 3, report.summary()
    return encoder
