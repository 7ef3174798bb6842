"""CLI bounds from issue 15: --max-pixels / --max-image-pixels exist and work, a skipped page
is recorded so an unchanged file is not re-encoded, and untrusted names never reach the
terminal raw. Tiny ColQwen2.5 checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mmembed.cli import main
from mmembed.index import open_index


def two_page_pdf(path: Path) -> Path:
    small = Image.new("RGB", (200, 150), "white")
    large = Image.new("RGB", (1200, 900), "gray")
    small.save(path, save_all=True, append_images=[large], resolution=72)
    return path


def test_skipped_page_is_recorded_and_names_are_escaped(
    tmp_path: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    evil = two_page_pdf(docs / "report\x1b[2J\x1b[31m.pdf")
    index = tmp_path / "idx"
    argv = ["index", str(docs), "--index", str(index), "--model", str(tiny_colqwen2_5), "-q"]
    argv += ["--dpi", "48", "--max-image-pixels", "100000"]  # page 2 renders to 800x600: skipped
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "\x1b" not in first.out + first.err
    assert "\\x1b[2J" in first.out and "page 2" in first.out
    with open_index(index, readonly=True) as ix:
        records = sorted(ix.records(), key=lambda r: r.page)
        assert [(r.page, r.n_vectors > 0) for r in records] == [(1, True), (2, False)]
        assert "skipped" in records[1].metadata
    assert main(argv) == 0  # unchanged: nothing is rendered or encoded again
    second = capsys.readouterr().out
    assert "1 unchanged file(s) skipped" in second and "\x1b" not in second

    assert main(["search", "report", "--index", str(index), "-k", "5"]) == 0
    found = capsys.readouterr().out
    assert "\x1b" not in found and "\\x1b[31m" in found and found.count("page ") == 1  # skipped page: no hit

    # --max-pixels caps rendering (the same file re-indexed into another folder)
    other = tmp_path / "idx2"
    assert (
        main(
            [
                "index",
                str(evil),
                "--index",
                str(other),
                "--model",
                str(tiny_colqwen2_5),
                "-q",
                "--dpi",
                "48",
                "--max-pixels",
                "5000",
            ]
        )
        == 0
    )
    capsys.readouterr()
    with open_index(other, readonly=True) as ix:
        pages = {r.page: r for r in ix.records()}
    assert set(pages) == {1, 2} and all(r.n_vectors > 0 for r in pages.values())
    with pytest.raises(SystemExit) as usage:
        main(["index", str(evil), "--index", str(other), "--max-pixels", "0"])
    assert usage.value.code == 2
