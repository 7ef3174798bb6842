"""mmembed_testing's tiny checkpoints: deterministic, laid out like the published ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from mmembed_testing import make_tiny_checkpoint, tiny_families
from mmembed_testing.__main__ import main


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_gives_identical_files(tiny_colqwen2_5: Path, tmp_path: Path) -> None:
    again = make_tiny_checkpoint("colqwen2_5", tmp_path / "again", seed=0)
    assert _files(again) == _files(tiny_colqwen2_5)
    other = make_tiny_checkpoint("colqwen2_5", tmp_path / "other", seed=5)
    assert _files(other)["model.safetensors"] != _files(tiny_colqwen2_5)["model.safetensors"]


def test_merged_layout_matches_the_published_checkpoints(tiny_colqwen2_5: Path) -> None:
    config = json.loads((tiny_colqwen2_5 / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and config["architectures"] == ["ColQwen2_5"]
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= set(
        _files(tiny_colqwen2_5)
    )
    with safe_open(str(tiny_colqwen2_5 / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert {
        "custom_text_proj.weight",
        "model.embed_tokens.weight",
        "visual.patch_embed.proj.weight",
        "lm_head.weight",
    } <= keys
    assert not any(k.startswith("model.language_model.") for k in keys)


def test_lora_folder_points_at_its_base(tiny_colqwen2_5_lora: Path) -> None:
    config = json.loads((tiny_colqwen2_5_lora / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and "custom_text_proj" in config["target_modules"]
    assert Path(config["base_model_name_or_path"]) == tiny_colqwen2_5_lora.parent / "colqwen2.5-tiny-base"
    with safe_open(str(tiny_colqwen2_5_lora / "adapter_model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert "base_model.model.custom_text_proj.lora_B.weight" in keys
    assert not any("visual" in k for k in keys)  # the vidore regex only reaches the language model
    assert (tiny_colqwen2_5_lora / "tokenizer.json").is_file()  # adapters carry their processor files


def test_command_line_builds_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tiny", "colqwen2_5", str(tmp_path / "cli"), "--seed", "2"]) == 0
    assert Path(capsys.readouterr().out.strip()) == tmp_path / "cli"
    assert (tmp_path / "cli" / "model.safetensors").is_file()


def test_unknown_family_is_refused(tmp_path: Path) -> None:
    assert "colqwen2_5" in tiny_families()
    with pytest.raises(ValueError, match="colqwen2_5"):
        make_tiny_checkpoint("colpali_v9", tmp_path)
