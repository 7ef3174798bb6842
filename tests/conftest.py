"""Session fixtures shared by the whole suite: tiny random checkpoints, built once.

``tiny_colqwen2_5`` is a full ColQwen2.5 checkpoint folder (layout of the published
ones, ~3 MB, random weights); ``tiny_colqwen2_5_lora`` is a PEFT LoRA adapter folder over
its own tiny base. Both load with ``mmembed.encoders.load_encoder(path)`` exactly like a
real checkpoint would; embeddings are meaningless but deterministic.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_colqwen2_5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmembed_testing import make_tiny_checkpoint

    return make_tiny_checkpoint("colqwen2_5", tmp_path_factory.mktemp("tiny") / "colqwen2.5-tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_colqwen2_5_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmembed_testing import make_tiny_checkpoint

    return make_tiny_checkpoint("colqwen2_5", tmp_path_factory.mktemp("tiny_lora"), seed=1, lora=True)


@pytest.fixture(scope="session")
def tiny_nomic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(text, vision)``: tiny nomic-embed-text-v1.5 and nomic-embed-vision-v1.5 folders (published
    layout, width 768, random weights). Load the vision one with ``text_model=str(text)``."""
    from mmembed_testing import make_tiny_checkpoint

    folder = tmp_path_factory.mktemp("tiny_nomic")
    return (
        make_tiny_checkpoint("nomic_text_v1_5", folder / "text", seed=0),
        make_tiny_checkpoint("nomic_v1_5", folder / "vision", seed=0),
    )
