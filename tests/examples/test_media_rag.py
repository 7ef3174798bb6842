"""examples/media_rag.py on a tiny random Omni-Embed-Nemotron checkpoint (the encoder lands
with the Omni-Embed-Nemotron family; until then this test is skipped, saying so)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_media_rag_indexes_and_searches_generated_recordings(tmp_path, capsys):
    from mmembed_testing import make_tiny_checkpoint
    from mmembed_testing.checkpoints import tiny_families

    if "omni_embed_nemotron" not in tiny_families():
        pytest.skip("no tiny omni_embed_nemotron checkpoint in mmembed_testing yet (the encoder's branch)")
    checkpoint = make_tiny_checkpoint("omni_embed_nemotron", tmp_path / "omni")
    spec = importlib.util.spec_from_file_location("media_rag", ROOT / "examples" / "media_rag.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    args = ["--model", str(checkpoint), "--data", str(tmp_path / "data"), "--index", str(tmp_path / "idx")]
    assert example.main([*args, "-k", "2", "a whistle"]) == 0
    out = capsys.readouterr().out
    # lecture 12 s -> 3 segments, product 6 s -> 2, silent 2 s -> 1 (indexed from its pictures)
    assert "indexed 6 page(s) (6 audio/video segment(s)) from 3 file(s)" in out
    assert "silent.webm: has no audio track" in out
    hits = [line for line in out.splitlines() if line.startswith("  1. ") or line.startswith("  2. ")]
    assert len(hits) == 2 and all("–" in line for line in hits)  # every hit shows start–end


def load_example(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    return example


def test_media_rag_without_weights_falls_back_and_writes_nothing_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, with no weights: a message and the tiny stand-in (as the demo does), not a
    raw CheckpointNotFoundError; the recordings and the index go to a temporary folder."""
    monkeypatch.chdir(tmp_path)
    example = load_example("media_rag")
    assert example.main(["--model", str(tmp_path / "no-such-checkpoint"), "-k", "1", "a whistle"]) == 0  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert "could not be loaded here" in out and "TINY RANDOM" in out and "  1. " in out
    assert list(tmp_path.iterdir()) == []  # no media_data/ or media_index/ left behind


@pytest.mark.parametrize("name", ["llamaindex_pdf_rag", "langchain_pdf_rag", "haystack_pdf_rag"])
def test_framework_examples_say_what_the_tiny_model_needs(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With only the framework package installed (no mmembed-testing), a run without --model
    says what to install or pass instead of ModuleNotFoundError."""
    monkeypatch.setitem(sys.modules, "mmembed_testing", None)  # an import of it raises ImportError
    example = load_example(name)
    with pytest.raises(SystemExit, match="pip install mmembed-testing, or pass --model"):
        example.tiny_checkpoint(tmp_path / "tiny")  # type: ignore[attr-defined]
