"""The `mmembed` command line, run in-process (shared encoder cache) and once as a script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmembed.cli import main
from mmembed.loaders.sample_pdfs import write_sample_pdfs


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    write_sample_pdfs(folder)
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def built_index(
    tmp_path: Path, sample_dir: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    docs = tmp_path / "docs"
    shutil.copytree(sample_dir, docs)
    index = tmp_path / "idx"
    # Low dpi: these tests check the plumbing, and rendering + encoding dominate their time.
    code, out, _ = run(
        capsys,
        "index",
        str(docs),
        "--index",
        str(index),
        "--model",
        str(tiny_colqwen2_5),
        "-q",
        "--dpi",
        "48",
    )
    assert code == 0, out
    return index


def test_index_info_search_json(
    built_index: Path, capsys: pytest.CaptureFixture[str], tiny_colqwen2_5: Path
) -> None:
    code, out, _ = run(capsys, "info", "--index", str(built_index), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["pages"] >= 6
    assert info["model"] == str(tiny_colqwen2_5)
    assert info["dim"] == 128
    assert info["bytes"] > 0

    code, out, _ = run(capsys, "search", "--index", str(built_index), "solar capacity", "-k", "4", "--json")
    assert code == 0
    hits = json.loads(out)
    assert len(hits) == 4
    assert set(hits[0]) >= {"id", "score", "source", "page", "metadata"}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h["page"] >= 1 for h in hits)


def test_search_filter_restricts_to_one_source(
    built_index: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out, _ = run(capsys, "search", "--index", str(built_index), "anything", "-k", "50", "--json")
    sources = sorted({h["source"] for h in json.loads(out)})
    assert len(sources) >= 3
    code, out, _ = run(
        capsys,
        "search",
        "--index",
        str(built_index),
        "anything",
        "-k",
        "50",
        "--json",
        "--filter",
        f"source={sources[0]}",
    )
    assert code == 0
    hits = json.loads(out)
    assert hits and {h["source"] for h in hits} == {sources[0]}
    # A relative path names the same file.
    monkeypatch.chdir(Path(sources[0]).parent)
    code, out, _ = run(
        capsys,
        "search",
        "--index",
        str(built_index),
        "x",
        "-k",
        "50",
        "--json",
        "--filter",
        f"source={Path(sources[0]).name}",
    )
    assert code == 0 and {h["source"] for h in json.loads(out)} == {sources[0]}
    code, out, _ = run(
        capsys,
        "search",
        "--index",
        str(built_index),
        "x",
        "-k",
        "50",
        "--json",
        "--where",
        '{"page": {"$lte": 1}}',
    )
    assert code == 0
    assert {h["page"] for h in json.loads(out)} == {1}


def test_reindex_unchanged_is_noop_and_changed_file_is_replaced(
    built_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_colqwen2_5: Path
) -> None:
    docs = tmp_path / "docs"
    _, out, _ = run(capsys, "info", "--index", str(built_index), "--json")
    pages_before = json.loads(out)["pages"]
    code, out, _ = run(capsys, "index", str(docs), "--index", str(built_index), "-q", "--dpi", "48")
    assert code == 0
    assert "indexed 0 page(s)" in out
    assert "3 unchanged file(s)" in out

    # Change one file: a two-page PDF replaces it.
    target = sorted(docs.glob("*.pdf"))[0]
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(target))
    for i in range(2):
        c.drawString(72, 720, f"replacement page {i + 1}")
        c.showPage()
    c.save()
    code, out, _ = run(capsys, "index", str(docs), "--index", str(built_index), "-q", "--dpi", "48")
    assert code == 0, out
    assert "1 changed file(s) replaced" in out
    _, out, _ = run(capsys, "search", "--index", str(built_index), "q", "-k", "100", "--json")
    hits = json.loads(out)
    assert sorted(h["page"] for h in hits if h["source"] == str(target.resolve())) == [1, 2]
    _, out, _ = run(capsys, "info", "--index", str(built_index), "--json")
    assert json.loads(out)["pages"] < pages_before


def test_delete_by_source_and_id(built_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "search", "--index", str(built_index), "q", "-k", "100", "--json")
    hits = json.loads(out)
    one_source = hits[0]["source"]
    expected = sum(h["source"] == one_source for h in hits)
    code, out, _ = run(capsys, "delete", "--index", str(built_index), "--source", one_source)
    assert code == 0 and f"deleted {expected} page(s)" in out
    other = next(h for h in hits if h["source"] != one_source)
    code, out, _ = run(capsys, "delete", "--index", str(built_index), "--id", other["id"])
    assert code == 0 and "deleted 1 page(s)" in out
    _, out, _ = run(capsys, "info", "--index", str(built_index), "--json")
    assert json.loads(out)["pages"] == len(hits) - expected - 1


def test_bad_files_are_reported_and_good_ones_kept(
    tmp_path: Path, sample_dir: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "mixed"
    docs.mkdir()
    good = sorted(sample_dir.glob("*.pdf"))[0]
    shutil.copy(good, docs / "good.pdf")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not really a pdf")
    index = tmp_path / "idx"
    code, out, _ = run(
        capsys, "index", str(docs), "--index", str(index), "--model", str(tiny_colqwen2_5), "-q"
    )
    assert code == 0
    assert "broken.pdf" in out and "skipped" in out
    assert "1 problem(s)" in out

    code, _, err = run(
        capsys,
        "index",
        str(docs / "broken.pdf"),
        "--index",
        str(tmp_path / "idx2"),
        "--model",
        str(tiny_colqwen2_5),
        "-q",
    )
    assert code == 1 and "nothing could be indexed" in err

    code, _, err = run(
        capsys,
        "index",
        str(docs),
        "--index",
        str(tmp_path / "idx3"),
        "--model",
        str(tiny_colqwen2_5),
        "-q",
        "--strict",
    )
    assert code == 1
    assert "broken.pdf" in err and len(err.strip().splitlines()) == 1


def test_errors_have_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["search"])
    assert usage.value.code == 2
    capsys.readouterr()
    code, _, err = run(capsys, "search", "--index", str(tmp_path / "missing"), "q")
    assert code == 1 and "no index at" in err
    code, _, err = run(
        capsys, "index", str(tmp_path), "--index", str(tmp_path / "i"), "--model", str(tmp_path / "nope")
    )
    assert code == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_models_lists_colqwen2_5(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0
    families = {m["family"] for m in json.loads(out)}
    assert "colqwen2_5" in families


def test_console_script_runs(built_index: Path) -> None:
    exe = Path(sys.executable).with_name("mmembed")
    result = subprocess.run(
        [str(exe), "info", "--index", str(built_index)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "pages" in result.stdout


def test_first_stage_flags(
    tmp_path: Path, sample_dir: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = tmp_path / "binary"
    one = sorted(sample_dir.glob("*.pdf"))[0]
    argv = ["index", str(one), "--index", str(index), "--model", str(tiny_colqwen2_5), "-q", "--dpi", "48"]
    code, out, _ = run(capsys, *argv, "--first-stage", "binary")
    assert code == 0, out
    assert list((index / "segments").glob("*.bits")), "binary codes written beside the vectors"
    _, out, _ = run(capsys, "info", "--index", str(index), "--json")
    assert json.loads(out)["first_stage"] == "binary"
    _, out, _ = run(capsys, "info", "--index", str(index))
    assert "first_stage: binary" in out

    searches = {}
    for extra in ([], ["--exact"], ["--candidates", "1"]):
        code, out, _ = run(capsys, "search", "--index", str(index), "solar", "-k", "2", "--json", *extra)
        assert code == 0, out
        searches[" ".join(extra)] = [(h["id"], h["score"]) for h in json.loads(out)]
    # Scores are exact whichever way the pages were shortlisted.
    exact = dict(searches["--exact"])
    for hits in searches.values():
        assert len(hits) == 2 and all(abs(s - exact.get(i, s)) < 1e-4 for i, s in hits)
    assert searches[""] == searches["--exact"]  # the default shortlist holds this small index

    code, _, err = run(capsys, *argv, "--first-stage", "none")
    assert code != 0 and "applies when an index is created" in err
