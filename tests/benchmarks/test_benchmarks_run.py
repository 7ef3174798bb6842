"""The benchmark scripts run end to end on tiny sizes and print their ratios.

Their numbers are meaningless at these sizes (and speed is never asserted in tests); this
only keeps the scripts working as the code they measure changes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_maxsim_benchmark_prints_every_ratio() -> None:
    out = run(
        "maxsim.py",
        *("--pages", "40", "--page-tokens", "24", "--queries", "1,3", "--repeats", "2"),
        *("--case-seconds", "0", "--reference-seconds", "0.01", "--no-parity"),
    )
    last = out.strip().splitlines()[-1]
    ratios = dict(re.findall(r"(\w+)=([0-9.]+)x", last))
    expected = {
        f"{kind}_{dtype}_q{q}"
        for kind in ("speedup", "floor_ratio", "cpu_floor_ratio")
        for dtype in ("fp32", "fp16")
        for q in (1, 3)
    }
    # the fused float16 kernel's cases also print the old path's ratios (unfused_*) beside them
    assert expected <= set(ratios), last
    assert all(key.startswith("unfused_") for key in set(ratios) - expected), last
    assert all(float(v) > 0 for v in ratios.values())
    # mmembed and the reference agree on every case (float16 storage: to its rounding)
    diffs = [float(d) for d in re.findall(r"max \|mmembed - reference\| ([0-9.e+-]+)", out)]
    assert len(diffs) == 4 and max(diffs) < 1e-2, out


def test_render_benchmark_reports_memory() -> None:
    out = run("render.py", "--pages", "3", "--dpi", "36") if shutil.which("pdftoppm") else None
    if out is None:
        pytest.skip("the render benchmark compares against pdf2image, which needs poppler")
    assert re.search(r"mmembed peak RSS: \d+ MB", out), out
    assert re.search(r"^mmembed\s+3\s", out, re.MULTILINE), out


def test_scale_benchmark_prints_each_mode() -> None:
    # A committed cache of 6 encoded pages and 4 queries (real MiniLM token states, made by the
    # benchmark itself; see tests/fixtures/scale/README.md): no model is loaded here.
    out = run(
        "scale.py",
        *(
            "--corpus",
            "tiled",
            "--tiled-source",
            "docstrings",
            "--base-pages",
            "6",
            "--page-tokens",
            "64",
            "--tile",
            "2",
            "--queries",
            "4",
        ),
        *("--candidates", "3", "--cache", str(FIXTURES / "scale")),
    )
    rows = {
        line[:24].strip(): line[24:].split()
        for line in out.splitlines()
        if line.startswith(("exact", "binary ->", "hnsw ->", "int8 "))
    }
    assert set(rows) == {
        "exact (float16)",
        "binary -> exact, C=3",
        "hnsw -> exact, C=3",
        "exact, int8",
        "exact, pool x2",
        "exact, pool x3",
        "int8 binary->exact C=3",
    }, out
    exact, binary = rows["exact (float16)"], rows["binary -> exact, C=3"]
    # bytes/page, build s, recall@10, tie@10, p50, p95, speedup, anon MB, total MB
    assert float(exact[2]) == 1.0 and 0.0 <= float(binary[2]) <= 1.0, out
    assert float(binary[0]) > float(exact[0]), "the binary index stores its codes beside the vectors"
    assert "Hamming scan: numba" in out, out
    assert 0.0 <= float(rows["hnsw -> exact, C=3"][2]) <= 1.0, out
    # int8 keeps the exact ranking on this small set at about half of float16's bytes;
    # pooling stores fewer vectors per page.
    assert float(rows["exact, int8"][2]) >= 0.9 and float(rows["exact, int8"][0]) < float(exact[0]), out
    assert float(rows["exact, pool x3"][0]) < float(rows["exact, pool x2"][0]) < float(exact[0]), out
