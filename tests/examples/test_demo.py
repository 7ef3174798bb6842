"""`make demo`'s script, run in-process on the tiny checkpoint and through its fallback."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mmembed_demo", ROOT / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_demo_indexes_and_searches_with_a_given_model(
    tmp_path: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = load_demo()
    args = [
        "--model",
        str(tiny_colqwen2_5),
        "--data",
        str(tmp_path / "data"),
        "--index",
        str(tmp_path / "idx"),
    ]
    assert demo.main([*args, "-k", "2", "solar capacity"]) == 0
    out = capsys.readouterr().out
    assert "wrote 3 sample PDFs" in out
    assert "indexed 9 page(s) from 3 file(s)" in out
    assert "query: 'solar capacity'" in out
    assert "  2. " in out and "  3. " not in out
    assert "MEANINGLESS" not in out  # the model was given: no fallback

    # Second run: nothing re-rendered, same index.
    assert demo.main([*args, "-k", "2", "solar capacity"]) == 0
    assert "indexed 0 page(s)" in capsys.readouterr().out


def test_demo_falls_back_to_a_tiny_checkpoint_when_weights_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = load_demo()
    missing = tmp_path / "no-such-model"
    code = demo.main(
        [
            "--model", str(missing),
            "--data", str(tmp_path / "data"),
            "--index", str(tmp_path / "idx"),
            "--cache", str(tmp_path / "cache"),
            "-k", "1",
            "tomato soup",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert f"The weights of {str(missing)!r} could not be loaded here" in out
    assert "--model DIR" in out
    assert "SCORES ARE MEANINGLESS" in out
    assert "(tiny random model: meaningless scores)" in out
    assert (tmp_path / "cache" / "tiny-colqwen2_5" / "config.json").exists()
