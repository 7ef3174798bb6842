"""PLAID first stage: residual codes round-trip, the candidate generator finds paraphrased pages
(exact scores, filters and deletes honoured, uncovered pages scanned), new pages are assigned
to the trained centroids until re-training is due, a killed or damaged build never loses a page,
and the numba kernels agree with the numpy reference."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mmembed.index import PageInput, open_index, plaid, plaid_search
from mmembed.index.integrity import IndexDamageWarning
from mmembed.types import EncoderInfo, MMEmbedError

DIM = 32
ENC = EncoderInfo(name="test/plaid", family="test", kind="multi", dim=DIM, similarity="maxsim")


def _pages(n: int, seed: int, tokens: int = 30) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    vocabulary = torch.nn.functional.normalize(torch.randn(64, DIM, generator=g), dim=-1)  # shared "words"
    pages = []
    for _ in range(n):
        # A page mixes a few shared words with its own: structure the centroids can learn.
        words = vocabulary[torch.randint(0, 64, (tokens,), generator=g)]
        own = torch.nn.functional.normalize(torch.randn(tokens, DIM, generator=g), dim=-1)
        pages.append(torch.nn.functional.normalize(words + 0.8 * own, dim=-1))
    return pages


def _inputs(pages: list[torch.Tensor], start: int = 0, **meta: object) -> list[PageInput]:
    return [
        PageInput(embedding=p, source="a.pdf", page=start + i + 1, content_hash="a" * 64, metadata=dict(meta))
        for i, p in enumerate(pages)
    ]


def _query(page: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(page[:10] + 0.1 * torch.randn(10, DIM, generator=g), dim=-1)


def test_residual_codes_round_trip_closer_than_the_centroids_alone() -> None:
    tokens = torch.cat(_pages(40, seed=0)).numpy()  # (1200, DIM)
    codec = plaid.train(tokens, 32)
    buckets = np.random.default_rng(0).integers(0, 1 << plaid.NBITS, size=(5, DIM)).astype(np.uint8)
    assert np.array_equal(plaid.unpack(plaid.pack(buckets), DIM), buckets)
    codes, residuals = plaid.encode(codec, tokens)
    assert codes.shape == (1200,) and residuals.shape == (1200, plaid.code_bytes(DIM))
    decoded = plaid.decode(codec, codes, residuals)
    centroid_error = np.linalg.norm(tokens - codec.centroids[codes], axis=1).mean()
    assert np.linalg.norm(tokens - decoded, axis=1).mean() < 0.6 * centroid_error


@pytest.mark.parametrize("rescore_pages", [0, 40])  # 40: the residual codes pick the shortlist
def test_plaid_finds_paraphrased_pages_with_exact_scores_filters_and_deletes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescore_pages: int
) -> None:
    monkeypatch.setattr(plaid_search, "NDOCS", rescore_pages)
    pages = _pages(240, seed=1)
    g = torch.Generator().manual_seed(2)
    with open_index(tmp_path / "ix", ENC, first_stage="plaid") as ix:
        ix.graph_extend_pages = 80
        ids = ix.add(_inputs(pages[:120], half="a")) + ix.add(_inputs(pages[120:200], start=120, half="b"))
        state = plaid.read_state(ix.path)
        assert state.covers_row == 200 and state.trained_pages == 120  # assigned, not re-trained
        ids += ix.add(_inputs(pages[200:], start=200, half="b"))  # 40 pages wait: fewer than 80
        assert plaid.read_state(ix.path).covers_row == 200
        targets = [0, 77, 150, 199, 210, 239]  # the last two are not coded yet: scanned exactly
        queries = [_query(pages[t], g) for t in targets]
        exact = ix.search(queries, k=240, exact=True)
        fast = ix.search(queries, k=5, candidates=10)
        for t, e, f in zip(targets, exact, fast, strict=True):
            assert f[0].id == e[0].id == ids[t]
            exact_score = {h.id: h.score for h in e}  # the shortlist is approximate, its scores exact
            np.testing.assert_allclose([h.score for h in f], [exact_score[h.id] for h in f], rtol=1e-5)
        only_b = ix.search(queries, k=3, candidates=10, where={"half": "b"})
        assert all(h.record.metadata["half"] == "b" for hits in only_b for h in hits)
        assert [hits[0].id for hits in only_b[2:]] == [ids[t] for t in targets[2:]]
        assert ix.extend_graph() == 40
        assert [h[0].id for h in ix.search(queries, k=1, candidates=10)] == [ids[t] for t in targets]
        ix.delete([ids[77]])  # deleted pages stay in the file but are never returned
        assert all(h.id != ids[77] for h in ix.search(queries[1:2], k=5, candidates=10)[0])
        assert ix.compact() > 0  # compaction moves vectors, not rows: the file stays valid
        assert ix.search(queries[2:3], k=1, candidates=10)[0][0].id == ids[150]
        assert sorted(p.name for p in (ix.path / "plaid").iterdir()) == [
            "plaid-000000000240.bin",
            "plaid.json",
        ]


def test_centroids_are_retrained_once_the_index_grew_enough(tmp_path: Path) -> None:
    pages = _pages(90, seed=3, tokens=12)
    with open_index(tmp_path / "ix", ENC, first_stage="plaid") as ix:
        ix.graph_extend_pages = 1
        ix.add(_inputs(pages[:20]))
        ix.add(_inputs(pages[20:50], start=20))  # 50 < 4 x 20: assigned
        assert plaid.read_state(ix.path).trained_pages == 20
        ix.add(_inputs(pages[50:], start=50))  # 90 >= 4 x 20: re-trained on every page
        state = plaid.read_state(ix.path)
        assert state.trained_pages == 90 and state.covers_row == 90


def test_a_killed_build_leaves_the_old_file_and_misses_no_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = _pages(120, seed=4)
    g = torch.Generator().manual_seed(5)
    path = tmp_path / "ix"
    with open_index(path, ENC, first_stage="plaid") as ix:
        ix.graph_extend_pages = 50
        ix.add(_inputs(pages[:60]))
        before = json.loads((path / "plaid" / "plaid.json").read_text())

        def killed(*args: object, **kwargs: object) -> None:  # the new file is on disk, no switch
            raise KeyboardInterrupt

        monkeypatch.setattr(plaid, "write_json_atomic", killed)
        with pytest.raises(KeyboardInterrupt):
            ix.add(_inputs(pages[60:], start=60))
        monkeypatch.undo()
    assert json.loads((path / "plaid" / "plaid.json").read_text()) == before
    assert len(list((path / "plaid").glob("plaid-*"))) == 2  # the killed build's file is left over
    with open_index(path, readonly=True) as ix:  # its pages committed; the file does not code them
        assert ix.count() == 120
        for t in (10, 70, 119):
            assert ix.search([_query(pages[t], g)], k=1, candidates=5)[0][0].record.page == t + 1
    with open_index(path, ENC) as ix:
        ix.lock_for_writing()  # the next writer removes the unreferenced file
        assert [p.name for p in (path / "plaid").glob("plaid-*")] == [before["file"]]


@pytest.mark.parametrize("damage", ["flip_file", "edit_coverage", "bad_json", "missing_file"])
def test_a_damaged_file_is_scanned_exactly_with_a_warning_and_repaired(tmp_path: Path, damage: str) -> None:
    pages = _pages(60, seed=6)
    g = torch.Generator().manual_seed(7)
    with open_index(tmp_path / "ix", ENC, first_stage="plaid") as ix:
        ix.graph_extend_pages = 1
        ids = ix.add(_inputs(pages))
        queries = [_query(pages[t], g) for t in (3, 33)]
        expected = [[(h.id, h.score) for h in hits] for hits in ix.search(queries, k=3, exact=True)]
        meta_path = ix.path / "plaid" / "plaid.json"
        meta = json.loads(meta_path.read_text())
        data = ix.path / "plaid" / meta["file"]
        if damage == "flip_file":
            raw = bytearray(data.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            data.write_bytes(bytes(raw))
        elif damage == "edit_coverage":
            meta_path.write_text(json.dumps(meta | {"covers_row": 10**6}))
        elif damage == "bad_json":
            meta_path.write_text("{not json")
        else:
            data.unlink()
    with (
        open_index(tmp_path / "ix", ENC, readonly=True) as ix,
        pytest.warns(IndexDamageWarning, match="plaid"),
    ):
        got = [[(h.id, h.score) for h in hits] for hits in ix.search(queries, k=3, candidates=5)]
    assert [[i for i, _ in hits] for hits in got] == [[i for i, _ in hits] for hits in expected]
    with open_index(tmp_path / "ix", ENC) as ix:
        assert ix.repair()["graph_rebuilt"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ix.search(queries, k=1, candidates=5)[0][0].id == ids[3]


def test_plaid_refuses_single_vector_encoders_and_other_indexes_refuse_extend(tmp_path: Path) -> None:
    single = EncoderInfo(name="t/single", family="t", kind="single", dim=DIM, similarity="cosine")
    with pytest.raises(MMEmbedError, match="single-vector"):
        open_index(tmp_path / "single", single, first_stage="plaid")
    with open_index(tmp_path / "plain", ENC) as ix, pytest.raises(MMEmbedError, match="no HNSW or PLAID"):
        ix.extend_graph()


def test_numba_kernels_match_the_numpy_reference() -> None:
    fast = plaid_search._fast()
    if fast is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(8)
    k, q, n_pages = 40, 6, 30
    scores_t = rng.standard_normal((k, q)).astype(np.float32)
    keep = rng.random(k) > 0.3
    counts = rng.integers(1, 9, n_pages)
    cent_off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    cents = np.concatenate([np.sort(rng.choice(k, c, replace=False)) for c in counts]).astype(np.int32)
    pages = np.array([0, 3, 7, 29], dtype=np.int64)
    np.testing.assert_allclose(
        fast[1](scores_t, keep, cent_off, cents, pages),
        plaid_search.interaction_numpy(scores_t, keep, cent_off, cents, pages),
        rtol=1e-6,
    )
    ivf_off = np.array([0, 2, 5, 5, 7], dtype=np.int64)
    ivf = np.array([1, 4, 0, 1, 3, 2, 4], dtype=np.int32)
    allowed = np.array([0, -1, 2, 3, 4], dtype=np.int64)
    cells = np.array([0, 1, 3], dtype=np.int64)
    assert (
        fast[0](ivf_off, ivf, cells, allowed).tolist()
        == plaid_search.probe_numpy(ivf_off, ivf, cells, allowed).tolist()
        == [0, 2, 3, 4]
    )


def test_numba_decode_matches_the_numpy_reference() -> None:
    fast = plaid_search._fast()
    if fast is None:
        pytest.skip("numba is not installed")
    tokens = torch.cat(_pages(20, seed=9)).numpy()[:, :30]  # a dim that does not fill the last byte
    codec = plaid.train(np.ascontiguousarray(tokens), 16)
    codes, residuals = plaid.encode(codec, tokens)
    idx = np.array([5, 0, tokens.shape[0] - 1, 17], dtype=np.int64)
    np.testing.assert_array_equal(
        fast[2](codec, codes, residuals, idx), plaid_search.decode_numpy(codec, codes, residuals, idx)
    )
