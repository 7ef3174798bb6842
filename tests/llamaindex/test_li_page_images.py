"""Page image files of ``image_mode="path"`` (issue 15): names never leave the folder, the
default cache is private to the user, and an existing file is verified before it is trusted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from llama_index.readers.mmembed.pages import default_image_dir, page_image_file
from PIL import Image

from mmembed.types import MMEmbedError


def render() -> Image.Image:
    return Image.new("RGB", (40, 30), "red")


def test_page_id_cannot_escape_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    for evil in ("../outside/x", "/etc/passwd", "a/../../b", "..", "x\0y"):
        path = page_image_file(render, evil, dpi=72, folder=folder)
        assert path.parent == folder and path.is_file()
    assert not (tmp_path / "outside").exists()
    assert sorted(p.suffix for p in folder.iterdir()) == [".png"] * 5


def test_default_cache_is_private_and_planted_files_are_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = page_image_file(render, "page-1", dpi=72)
    assert path.parent == default_image_dir() and str(tmp_path) in str(path)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    path.write_bytes(b"planted, not an image")
    again = page_image_file(render, "page-1", dpi=72)
    with Image.open(again) as image:
        assert image.size == (40, 30)
    os.chmod(path.parent, 0o777)
    with pytest.raises(MMEmbedError, match="private"):
        page_image_file(render, "page-1", dpi=72)
