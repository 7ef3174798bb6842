"""``benchmarks/scale.py``'s storage rows (int8, pooling) on a tiny index: each mode is built
from the exact index's pages and reports bytes/page, recall@10 against the exact ranking
and one latency per query. Numbers are meaningless at this size; speed is never asserted."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

from mmembed.index import PageInput, open_index

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


def test_storage_rows_measure_each_mode(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    g = torch.Generator().manual_seed(0)
    pages = [torch.nn.functional.normalize(torch.randn(24, scale.DIM, generator=g), dim=1) for _ in range(30)]
    queries = [p[:6] + 0.05 * torch.randn(6, scale.DIM, generator=g) for p in pages[:4]]
    with open_index(tmp_path / "exact", scale.ENC) as exact:
        exact.add([PageInput(p, "a.txt", i + 1, "0" * 64) for i, p in enumerate(pages)])
        exact_ids = [[h.id for h in hits] for hits in exact.search(queries, k=10)]
        rows = scale.storage_rows(exact, tmp_path, scale.STORAGE_MODES, queries, exact_ids)
    assert [r[0] for r in rows] == [f"exact scan, {m}" for m in scale.STORAGE_MODES]
    by_name = {name: (per_page, recall, lat) for name, per_page, recall, lat in rows}
    assert by_name["exact scan, int8"][1] >= 0.9  # int8 keeps the exact ranking on this easy set
    for per_page, recall, lat in by_name.values():
        assert per_page > 0 and 0.0 <= recall <= 1.0 and len(lat) == len(queries)
    assert not any((tmp_path / m).exists() for m in scale.STORAGE_MODES)  # cleaned up


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
