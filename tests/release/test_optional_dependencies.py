"""Optional dependencies are extras, and a missing one says which extra to install."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_sample_pdfs_without_reportlab_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "reportlab" or m.startswith("reportlab.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "reportlab", None)  # import reportlab -> ImportError
    monkeypatch.delitem(sys.modules, "mmembed.loaders.sample_pdfs", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'mmembed-core\[examples\]'"):
        importlib.import_module("mmembed.loaders.sample_pdfs")
    monkeypatch.delitem(sys.modules, "mmembed.loaders.sample_pdfs", raising=False)


def test_core_declares_reportlab_only_as_the_examples_extra() -> None:
    project = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]
    assert not [r for r in project["dependencies"] if r.startswith("reportlab")]
    assert [r for r in project["optional-dependencies"]["examples"] if r.startswith("reportlab")]
