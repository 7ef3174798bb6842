"""Hybrid retrieval from the command line (index --no-text / --backfill-text / --text-tokenizer,
search --mode / --alpha / --rrf-k, info, eval --mode comparing modes) and from `mmembed serve`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmembed.cli import main
from mmembed.loaders.sample_pdfs import write_sample_pdfs

DPI = "18"


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sorted(write_sample_pdfs(tmp_path_factory.mktemp("cli_hybrid_pdfs")))


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path, pdfs: list[Path]) -> Path:
    folder = tmp_path_factory.mktemp("cli_hybrid") / "index"
    args = ["index", *map(str, pdfs), "--index", str(folder), "--model", str(tiny_colqwen2_5)]
    assert main([*args, "--dpi", DPI, "--quiet"]) == 0
    return folder


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_search_modes_from_the_cli(index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hits = _json(capsys, ["search", "income statement", "--index", str(index), "--mode", "text", "--json"])
    assert "quarterly_financial_report" in hits[0]["source"] and hits[0]["page"] == 2
    assert hits[0]["matches"] == [{"side": "text", "rank": 1, "score": hits[0]["score"]}]
    hybrid = _json(
        capsys, ["search", "income statement", "--index", str(index), "--mode", "hybrid", "-k", "9", "--json"]
    )
    assert len(hybrid) == 9 and {m["side"] for h in hybrid for m in h["matches"]} == {"visual", "text"}
    weighted = _json(
        capsys,
        ["search", "income statement", "--index", str(index), "--mode", "hybrid", "--alpha", "0", "--json"],
    )
    assert weighted[0]["page"] == 2 and weighted[0]["score"] == pytest.approx(1.0)
    capsys.readouterr()
    assert (
        main(["search", "income statement", "--index", str(index), "--mode", "hybrid", "--rrf-k", "10"]) == 0
    )
    assert "text#1" in capsys.readouterr().out
    visual = _json(capsys, ["search", "income statement", "--index", str(index), "--json"])
    assert "matches" not in visual[0]  # default output unchanged


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--alpha", "0.5"], "--alpha and --rrf-k tune --mode hybrid"),
        (["--mode", "hybrid", "--alpha", "3"], "alpha must be"),
    ],
)
def test_bad_mode_arguments_are_named(
    index: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as usage:  # a usage error: exit 2, before the index opens
        main(["search", "revenue", "--index", str(index), *extra])
    assert usage.value.code == 2
    assert message in capsys.readouterr().err


def test_info_counts_pages_with_text(index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = _json(capsys, ["info", "--index", str(index), "--json"])
    assert info["pages_with_text"] == 9 and info["text_tokenizer"] == "unicode61"


def test_no_text_then_backfill_text(
    tmp_path: Path, tiny_colqwen2_5: Path, pdfs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "index"
    copy = tmp_path / "docs"
    copy.mkdir()
    files = [Path(shutil.copy(p, copy)) for p in pdfs]
    argv = ["index", *map(str, files), "--index", str(folder), "--model", str(tiny_colqwen2_5)]
    assert main([*argv, "--dpi", DPI, "--quiet", "--no-text", "--text-tokenizer", "trigram"]) == 0
    assert _json(capsys, ["info", "--index", str(folder), "--json"])["pages_with_text"] == 0
    files[0].write_bytes(files[0].read_bytes() + b"\n% changed\n")  # no longer the indexed bytes
    capsys.readouterr()
    assert main(["index", "--backfill-text", "--index", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "6 page(s) got text" in out and f"skipped: {files[0].resolve()}" in out
    info = _json(capsys, ["info", "--index", str(folder), "--json"])
    assert info["pages_with_text"] == 6 and info["text_tokenizer"] == "trigram"
    with pytest.raises(SystemExit) as usage:  # neither paths nor --backfill-text: a usage error
        main(["index", "--index", str(folder)])
    assert usage.value.code == 2
    assert "give the files or folders" in capsys.readouterr().err


def test_eval_compares_modes_of_one_index(
    index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "queries.tsv").write_text(
        "q1\tcondensed income statement\nq2\tgrid integration and storage\n"
    )
    (tmp_path / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\tquarterly_financial_report.pdf#2\t1\nq2\tsolar_energy_report.pdf#3\t1\n"
    )
    argv = ["eval", "--index", str(index), "--queries", str(tmp_path / "queries.tsv")]
    argv += [
        "--qrels",
        str(tmp_path / "qrels.tsv"),
        "--mode",
        "visual",
        "text",
        "hybrid",
        "-k",
        "9",
        "--json",
    ]
    reports = _json(capsys, argv)
    by_mode = {r["name"].rsplit("[", 1)[1].rstrip("]"): r["metrics"] for r in reports}
    assert set(by_mode) == {"visual", "text", "hybrid"}
    assert by_mode["text"]["RR@10"] == pytest.approx(1.0)  # both answers are in the text
    assert by_mode["hybrid"]["R@5"] >= max(by_mode["visual"]["R@5"], by_mode["text"]["R@5"]) - 1e-9


def test_serve_has_a_mode_selector(index: Path) -> None:
    pytest.importorskip("fastapi", reason="mmembed-core[serve] is not installed")
    from fastapi.testclient import TestClient

    from mmembed.serve import create_app, open_server

    server = open_server(index)
    try:
        client = TestClient(create_app(server), base_url="http://127.0.0.1:8000")  # a Host serve allows
        body = client.get("/search", params={"q": "income statement", "k": 3, "mode": "text"}).json()
        assert body["mode"] == "text" and body["hits"][0]["page"] == 2
        assert body["hits"][0]["matches"][0]["side"] == "text"
        hybrid = client.get("/search", params={"q": "income statement", "k": 3, "mode": "hybrid"}).json()
        assert len(hybrid["hits"]) == 3
        assert client.get("/search", params={"q": "x", "mode": "fuzzy"}).status_code == 422
        assert 'id="mode"' in client.get("/").text
    finally:
        server.index.close()


def test_migrate_keeps_the_page_text(index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "copy"
    assert main(["migrate", "--from", str(index), "--to", str(target)]) == 0
    assert _json(capsys, ["info", "--index", str(target), "--json"])["pages_with_text"] == 9
    hits = _json(capsys, ["search", "income statement", "--index", str(target), "--mode", "text", "--json"])
    assert hits[0]["page"] == 2
