"""examples/llamaindex_pdf_rag.py runs end to end (tiny model, generated sample PDFs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_pdf_rag.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llamaindex_pdf_rag", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_example_runs_with_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    # No --model / --data: the script builds a tiny checkpoint and writes the sample PDFs itself.
    assert load_example().main(["--dpi", "48", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "scores are meaningless" in out and "sample PDFs" in out
    assert "MaxSim retrieval for" in out and "dense first stage + MaxSim rerank:" in out
    assert out.count(" page ") >= 4
    assert "0 file(s) skipped" in out and "0 encoded" in out


def test_example_takes_model_and_data(
    tiny_colqwen2_5: Path, sample_pdfs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--model", str(tiny_colqwen2_5), "--data", str(sample_pdfs[0]), "--index", str(tmp_path / "idx")]
    assert load_example().main([*args, "--dpi", "48", "--top-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "meaningless" not in out and "sample PDFs" not in out
    assert (tmp_path / "idx").is_dir()
