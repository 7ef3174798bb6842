"""examples/haystack_pdf_rag.py runs end to end: generated sample PDFs, the suite's tiny
checkpoint (the example would otherwise build its own), small renders to stay quick."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "haystack_pdf_rag.py"


def test_example_indexes_retrieves_reranks_and_prompts(
    tiny_colqwen2_5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("haystack_pdf_rag_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    argv = [
        "--model",
        str(tiny_colqwen2_5),
        "--index",
        str(tmp_path / "index"),
        "--dpi",
        "36",
        "--top-k",
        "2",
    ]
    assert example.main(argv) == 0
    out = capsys.readouterr().out
    assert "indexed 9 page(s); the store holds 9" in out
    ranked = re.findall(r"^\s+\d\. (\S+\.pdf) page (\d) +score (-?\d+\.\d+)$", out, flags=re.MULTILINE)
    assert len(ranked) == 2
    assert "the prompt carries 2 page image(s)" in out
    assert (tmp_path / "index" / "manifest.json").is_file()  # a real mmembed index on disk
