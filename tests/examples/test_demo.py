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


def test_demo_default_model_fits_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = load_demo()
    monkeypatch.delenv("MMEMBED_MODEL", raising=False)
    assert demo.choose_model(None, False)[0] == "vidore/colSmol-256M"
    why = demo.choose_model(None, False)[1]
    assert (
        "no GPU" in why and "quality per measured CPU second" in why and "ModernVBERT/colmodernvbert" in why
    )
    assert demo.choose_model(None, True)[0] == "nomic-ai/colnomic-embed-multimodal-3b"
    assert demo.choose_model("my/model", True) == ("my/model", "given with --model")  # --model wins
    monkeypatch.setenv("MMEMBED_MODEL", "env/model")
    assert demo.choose_model(None, True)[0] == "env/model"
    assert demo.choose_model("my/model", False)[0] == "my/model"


def test_demo_says_which_model_first(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    demo = load_demo()
    monkeypatch.delenv("MMEMBED_MODEL", raising=False)
    monkeypatch.setattr(demo, "load_model", lambda name, cache: (_ for _ in ()).throw(SystemExit(name)))
    with pytest.raises(SystemExit, match=r"colSmol-256M|colnomic"):
        demo.main(["--data", str(tmp_path / "data"), "--index", str(tmp_path / "idx")])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("model: ") and "--model picks another" in first
