"""`mmembed index` on a folder mixing pages and recordings; `mmembed search` says where in
the recording a hit is (text and --json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from media_encoder import ToneColourEncoder
from PIL import Image

import mmembed.encoders
from mmembed.cli import main
from mmembed.loaders.sample_media import tone, write_media


@pytest.fixture
def talks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "talks"
    folder.mkdir()
    Image.new("RGB", (60, 40), (0, 0, 255)).save(folder / "poster.png")
    write_media(folder / "podcast.mp3", audio=np.concatenate([tone(300, 4.0), tone(3000, 4.0)]))
    write_media(folder / "demo.webm", colours=[(255, 0, 0)] * 2)  # no sound: a note, still indexed
    (folder / "broken.m4a").write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))
    monkeypatch.setattr(mmembed.encoders, "load_encoder", lambda name, **kw: ToneColourEncoder(name))
    return folder


def test_index_mixed_folder_and_search_shows_time_spans(talks, tmp_path, capsys):
    index = str(tmp_path / "idx")
    code = main(
        ["index", str(talks), "--index", index, "--model", "test/tone-colour", "-q", "--segment-seconds", "4"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "indexed 4 page(s) (3 audio/video segment(s)) from 3 file(s)" in out
    assert "broken.m4a: cannot be opened as audio or video" in out
    assert "demo.webm: has no audio track" in out

    assert main(["search", "a 3000 Hz whistle", "--index", index, "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "podcast.mp3  0:04.0–0:08.0 (audio)" in lines[0]
    assert main(["search", "red", "--index", index, "-k", "4", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert Path(hits[0]["source"]).name == "demo.webm" and (hits[0]["start"], hits[0]["end"]) == (0.0, 2.0)
    poster = next(h for h in hits if h["source"].endswith("poster.png"))
    assert "start" not in poster and poster["page"] == 1
    assert main(["search", "blue", "--index", index, "-k", "1"]) == 0
    assert "poster.png  page 1" in capsys.readouterr().out
