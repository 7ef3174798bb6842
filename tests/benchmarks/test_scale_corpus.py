"""The distinct-page scale corpus (benchmarks/corpus.py): its cache layout, loader, resumability
rule, near-duplicate measure and paraphrase rule, on a tiny cache written here (no model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import corpus  # noqa: E402  (benchmarks/ is not a package)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, corpus.DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def write_cache(path: Path, n_pages: int, *, duplicate: int | None = None) -> list[np.ndarray]:
    """A cache in the builder's layout: pages of 20-40 token vectors, 4 queries."""
    rng = np.random.default_rng(0)
    pages = [_unit(rng, int(rng.integers(20, 40))) for _ in range(n_pages)]
    if duplicate is not None:
        pages[duplicate] = pages[0].copy()
    path.mkdir(parents=True)
    corpus.write_chunk(path, 0, np.concatenate(pages), np.cumsum([0] + [len(p) for p in pages]))
    queries = [pages[3][:6], pages[7][2:9], _unit(rng, 5), _unit(rng, 7)]
    corpus.write_queries(path, queries)
    lengths = [len(p) for p in pages]
    meta = {
        "pages": n_pages,
        "tokens": sum(lengths),
        "mean_page_tokens": float(np.mean(lengths)),
        "depth": 1,
        "query_kinds": ["paraphrase", "paraphrase", "held-out", "held-out"],
        "query_sources": [3, 7, -1, -1],
    }
    (path / "meta.json").write_text(json.dumps(meta))
    ids = rng.integers(1000, 1100, sum(lengths)).astype(np.int32)
    if duplicate is not None:
        starts = np.cumsum([0, *lengths])
        ids[starts[duplicate] : starts[duplicate + 1]] = ids[: lengths[0]]
    np.savez(
        path / "plan.npz", token_ids=ids, starts=np.cumsum([0, *lengths[:-1]]), lengths=np.array(lengths)
    )
    return pages


def test_load_corpus_returns_float16_pages_and_labelled_queries(tmp_path: Path) -> None:
    pages = write_cache(tmp_path / "c", 30)
    got = corpus.load_corpus(12, tmp_path / "c")
    assert len(got.pages) == 12 and all(p.dtype == np.float16 for p in got.pages)
    assert all(np.allclose(a, b, atol=1e-3) for a, b in zip(got.pages, pages[:12], strict=False))
    assert isinstance(got.pages[0].base, np.memmap) or isinstance(got.pages[0], np.memmap)  # no copy
    assert [q.shape for q in got.queries] == [(6, 128), (7, 128), (5, 128), (7, 128)]
    assert got.query_kinds == ["paraphrase", "paraphrase", "held-out", "held-out"]
    assert got.query_sources == [3, 7, -1, -1]


def test_asking_for_more_pages_than_built_says_how_to_continue(tmp_path: Path) -> None:
    write_cache(tmp_path / "c", 30)
    with pytest.raises(ValueError, match=r"holds 30 encoded pages, 31 asked.*corpus\.py build"):
        corpus.load_corpus(31, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match=r"no scale corpus in .*corpus\.py build"):
        corpus.load_corpus(1, tmp_path / "missing")


def test_a_chunk_without_its_offsets_is_not_built(tmp_path: Path) -> None:
    """The builder writes a chunk's offsets last: a killed build leaves a chunk that is redone."""
    write_cache(tmp_path / "c", 30)
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    (tmp_path / "c" / "meta.json").write_text(json.dumps(meta | {"pages": 2500}))
    assert corpus.built_pages(tmp_path / "c") == 1000  # chunk 0 (claimed 1,000) complete
    (tmp_path / "c" / "chunks" / "00000.offsets.npy").unlink()
    assert corpus.built_pages(tmp_path / "c") == 0


def test_distinctness_finds_a_planted_duplicate(tmp_path: Path) -> None:
    write_cache(tmp_path / "c", 40, duplicate=9)
    plan = np.load(tmp_path / "c" / "plan.npz")
    got = corpus.distinctness(corpus.load_corpus(40, tmp_path / "c"), plan["token_ids"], plan["starts"])
    # pages 0 and 9 are copies (vectors and token ids): 2 of 40 pages
    assert got["mean_vector_cos>=0.95_share"] == pytest.approx(2 / 40)
    assert got["shingle_near_duplicate_share"] >= 2 / 40


def test_paraphrase_is_deterministic_and_stated() -> None:
    words = [f"w{i}" for i in range(12)]
    # every 4th word dropped (w3, w7, w11), then pairs at 0-1 and 5-6 swapped
    assert corpus.paraphrase(words) == "w1 w0 w2 w4 w5 w8 w6 w9 w10"


def test_scale_benchmark_runs_the_distinct_table_on_a_cache(tmp_path: Path) -> None:
    write_cache(tmp_path / "c", 30)
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "scale.py"),
            *("--corpus", "distinct", "--corpus-cache", str(tmp_path / "c"), "--pages", "15,30"),
            # the exact scan only (the tiled test covers the other modes): keeps this test fast
            *("--queries", "4", "--candidates", "5", "--modes", "exact-only"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("DISTINCT corpus") == 2, done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("exact (float16)")]
    assert len(rows) == 2 and all(r[5] == "1.000" for r in rows), done.stdout  # recall@10 of the reference
    assert "predicts at 1,000,000 pages" in done.stdout
