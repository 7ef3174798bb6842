"""Session fixtures for the model-zoo tests: tiny checkpoints of every issue-4 family,
each built once per test session, on first use.

``tiny_checkpoint(family, lora=False)`` returns the folder to load: a full (merged)
checkpoint, or for ``lora=True`` the PEFT adapter folder (its base sits next to it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

TinyFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> TinyFactory:
    from mmembed_testing import make_tiny_checkpoint

    built: dict[tuple[str, bool], Path] = {}

    def make(family: str, *, lora: bool = False) -> Path:
        key = (family, lora)
        if key not in built:
            folder = tmp_path_factory.mktemp(f"tiny_{family}{'_lora' if lora else ''}")
            built[key] = make_tiny_checkpoint(family, folder / family, seed=0, lora=lora)
        return built[key]

    return make
