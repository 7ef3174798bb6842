"""``benchmarks/storage.py`` (the exact scan per storage codec) at a tiny size: it runs and
reports each codec's bytes per token. Numbers are meaningless at this size; speed is never
asserted. (``scale.py``'s storage rows run in test_benchmarks_run.py.)"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


def test_storage_benchmark_prints_each_codec(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("storage_benchmark", SCRIPT.parent / "storage.py")
    assert spec is not None and spec.loader is not None
    storage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(storage)
    monkeypatch.setattr(sys, "argv", ["storage.py", "--pages", "20", "--page-tokens", "16", "--rounds", "2"])
    storage.main()
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^(float16|int8|float32)\s+(\d+)\s", out, re.MULTILINE))
    assert rows == {"float16": "256", "int8": "132", "float32": "512"}, out
