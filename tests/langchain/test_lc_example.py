"""examples/langchain_pdf_rag.py runs end to end with its defaults (tiny model, generated PDFs).

It runs in this process (its ``main``) so that torch and transformers, already imported
by the suite, are not imported a second time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_pdf_rag.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("langchain_pdf_rag", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_end_to_end_with_its_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _load_example()
    # Default --model and --data; a low dpi only keeps the run short.
    assert example.main(["-k", "2", "--dpi", "24", "--index", str(tmp_path / "index")]) == 0

    out = capsys.readouterr().out
    assert "tiny RANDOM" in out and "meaningless" in out  # the default model says what it is
    assert "generated sample PDFs" in out
    assert "loaded 9 page(s) from 3 file(s)" in out
    assert (tmp_path / "index").is_dir()
    page_lines = [line for line in out.splitlines() if line.startswith("  ") and " page " in line]
    assert len(page_lines) == 2 and all("score" in line for line in page_lines)
    assert "shown 2 page image(s)" in out  # the retrieved pages reached the chat model
