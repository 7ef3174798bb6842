"""HNSW first stage: the graph over pooled page vectors finds paraphrased pages, never misses
pages it does not cover (scanned exactly), and a killed graph build leaves a usable index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmembed.index import PageInput, ann, open_index
from mmembed.types import EncoderInfo, MMEmbedError

pytest.importorskip("usearch")

DIM = 64
ENC = EncoderInfo(name="test/hnsw", family="test", kind="multi", dim=DIM, similarity="maxsim")


def _pages(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pages = []
    for _ in range(n):
        # Real-ish structure: a page is a few topics, each a cluster of tokens.
        topics = torch.nn.functional.normalize(torch.randn(4, DIM, generator=g), dim=-1)
        tokens = topics[torch.randint(0, 4, (40,), generator=g)] + 0.05 * torch.randn(40, DIM, generator=g)
        pages.append(torch.nn.functional.normalize(tokens, dim=-1))
    return pages


def _inputs(pages: list[torch.Tensor], start: int = 0) -> list[PageInput]:
    return [
        PageInput(embedding=p, source="a.pdf", page=start + i + 1, content_hash="a" * 64)
        for i, p in enumerate(pages)
    ]


def _query(page: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(page[:12] + 0.1 * torch.randn(12, DIM, generator=g), dim=-1)


def test_pooled_centroids_summarise_a_page() -> None:
    page = _pages(1, seed=0)[0]
    centroids = torch.from_numpy(ann.pooled(page, k=8))
    assert centroids.shape == (8, DIM)
    assert ann.pooled(page[:5], k=8).shape == (5, DIM)  # fewer tokens than centroids: the tokens
    # every token is close to some centroid (k-means over the page's 4 topics)
    assert float((page @ torch.nn.functional.normalize(centroids, dim=-1).T).max(dim=1).values.min()) > 0.9


def test_graph_search_finds_paraphrased_pages_and_scans_uncovered_ones(tmp_path: Path) -> None:
    pages = _pages(200, seed=1)
    g = torch.Generator().manual_seed(2)
    with open_index(tmp_path / "ix", ENC, first_stage="hnsw") as ix:
        ix.graph_extend_pages = 50
        ids = ix.add(_inputs(pages[:75])) + ix.add(_inputs(pages[75:150], start=75))
        state = ann.read_state(ix.path)
        assert state.covers_row == 150 and (ix.path / "ann" / state.file).is_file()
        ix.graph_extend_pages = 1000
        ids += ix.add(_inputs(pages[150:], start=150))  # 50 pages wait: fewer than 1000
        assert ann.read_state(ix.path).covers_row == 150
        targets = [0, 60, 149, 170, 199]  # the last two are not in the graph yet
        queries = [_query(pages[t], g) for t in targets]
        exact = ix.search(queries, k=5, exact=True)
        fast = ix.search(queries, k=5)
        for t, e, f in zip(targets, exact, fast, strict=True):
            assert f[0].id == e[0].id == ids[t]
            np.testing.assert_allclose([h.score for h in f], [h.score for h in e], rtol=1e-5)
        assert ix.extend_graph() == 50
        assert ann.read_state(ix.path).covers_row == 200
        assert [h[0].id for h in ix.search(queries, k=1)] == [ids[t] for t in targets]
        # deleted pages stay in the graph but are never returned
        ix.delete([ids[60]])
        assert all(h.id != ids[60] for h in ix.search(queries[1:2], k=5)[0])
        assert sorted(p.name for p in (ix.path / "ann").iterdir()) == [
            state.file.replace("150", "200"),
            "graph.json",
        ]


def test_a_killed_graph_build_leaves_the_old_graph_and_misses_no_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = _pages(120, seed=3)
    g = torch.Generator().manual_seed(4)
    path = tmp_path / "ix"
    with open_index(path, ENC, first_stage="hnsw") as ix:
        ix.graph_extend_pages = 50
        ix.add(_inputs(pages[:60]))
        before = json.loads((path / "ann" / "graph.json").read_text())

        def killed(
            *args: object, **kwargs: object
        ) -> None:  # the new graph is on disk, the switch never happens
            raise KeyboardInterrupt

        monkeypatch.setattr(ann, "write_json_atomic", killed)
        with pytest.raises(KeyboardInterrupt):
            ix.add(_inputs(pages[60:], start=60))
        monkeypatch.undo()
    assert json.loads((path / "ann" / "graph.json").read_text()) == before
    assert len(list((path / "ann").glob("graph-*"))) == 2  # the killed build's file is left over
    with open_index(path, readonly=True) as ix:  # its pages committed; the graph does not cover them
        assert ix.count() == 120
        for t in (10, 70, 119):
            assert ix.search([_query(pages[t], g)], k=1)[0][0].record.page == t + 1
    with open_index(path, ENC) as ix:
        ix.lock_for_writing()  # the next writer removes the unreferenced graph file
        assert [p.name for p in (path / "ann").glob("graph-*")] == [before["file"]]


def test_hnsw_needs_a_readable_graph_description(tmp_path: Path) -> None:
    with open_index(tmp_path / "ix", ENC, first_stage="hnsw") as ix:
        ix.graph_extend_pages = 1
        ix.add(_inputs(_pages(3, seed=5)))
        (ix.path / "ann" / "graph.json").write_text("{not json")
        with pytest.raises(MMEmbedError, match="delete the ann folder"):
            ix.search([_pages(1, seed=6)[0]], k=1)
    with (
        open_index(tmp_path / "plain", ENC) as ix,
        pytest.raises(MMEmbedError, match="no HNSW or PLAID first stage"),
    ):
        ix.extend_graph()


def test_a_shared_handle_extends_the_graph(tmp_path: Path) -> None:
    pages = _pages(20, seed=7)
    with open_index(tmp_path / "ix", ENC, first_stage="hnsw", shared=True) as ix:
        ids = ix.add(_inputs(pages))
        assert ann.read_state(ix.path).covers_row == 0  # 20 pages: fewer than the default 1,000 wait
        assert ix.extend_graph() == 20 and ann.read_state(ix.path).covers_row == 20
        assert ix.search([pages[7][:8]], k=1)[0][0].id == ids[7]


def test_hnsw_index_stores_sign_codes_and_refines_with_them(tmp_path: Path) -> None:
    pages = _pages(60, seed=8)
    g = torch.Generator().manual_seed(9)
    with open_index(tmp_path / "ix", ENC, first_stage="hnsw") as ix:
        ix.graph_extend_pages = 10
        ids = ix.add(_inputs(pages))
        seg_dir = ix.path / "segments"
        vectors = sorted(p for p in seg_dir.iterdir() if not p.name.endswith(".bits"))
        codes = sorted(p for p in seg_dir.iterdir() if p.name.endswith(".bits"))
        assert [p.stem for p in codes] == [p.stem for p in vectors]
        assert sum(p.stat().st_size for p in codes) == 60 * 40 * DIM // 8  # 1 bit per dimension
        # 2 candidates out of the graph's 2 * REFINE proposals: the Hamming stage picks them
        # from the mapped codes (nothing coded in memory) and the exact scores are kept.
        queries = [_query(pages[t], g) for t in (3, 33, 59)]
        fast = ix.search(queries, k=2, candidates=2)
        assert ix._codes.in_memory_bytes() == 0
        exact = ix.search(queries, k=2, exact=True)
        assert [f[0].id for f in fast] == [e[0].id for e in exact] == [ids[3], ids[33], ids[59]]
        np.testing.assert_allclose(fast[0][0].score, exact[0][0].score, rtol=1e-5)


def test_graph_pages_are_ranked_by_centroid_maxsim_summed_over_query_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from usearch.index import Index

    e = torch.eye(DIM)

    def unit(a: float, i: int, j: int) -> np.ndarray:
        return (a * e[i] + (1 - a * a) ** 0.5 * e[j]).numpy()

    # Page 1 matches query token 0 best (0.9) and token 1 not at all; page 2 matches both
    # halfway (0.5 + 0.5 = 1.0 beats 0.9: the sum over tokens, not the single best match).
    # Pages 3 and 4 match only token 1. A page's best centroid counts, not its others.
    vectors = {
        1: [unit(0.90, 0, 5), unit(0.20, 0, 11)],
        2: [unit(0.50, 0, 6), unit(0.50, 1, 7)],
        3: [unit(0.48, 1, 8)],
        4: [unit(0.45, 1, 9)],
    }
    graph = Index(ndim=DIM, metric="ip", dtype="f32", multi=True)
    for row, vs in vectors.items():
        graph.add(np.full(len(vs), row, dtype=np.uint64), np.stack(vs), threads=1)
    monkeypatch.setattr(ann, "NEIGHBOURS", 3)
    query = torch.stack([e[0], e[1]])
    assert ann.candidate_rows(graph, query, 1).tolist() == [2]
    assert ann.candidate_rows(graph, query, 2).tolist() == [1, 2]
    assert ann.candidate_rows(graph, query, 10).tolist() == [1, 2, 3, 4]


def test_an_hnsw_index_without_codes_is_searched_and_completed_by_the_next_writer(tmp_path: Path) -> None:
    # An hnsw index written before hnsw indexes stored codes: no .bits files.
    pages = _pages(30, seed=10)
    g = torch.Generator().manual_seed(11)
    with open_index(tmp_path / "ix", ENC, first_stage="hnsw") as ix:
        ix.graph_extend_pages = 10
        ids = ix.add(_inputs(pages))
    for codes in (tmp_path / "ix" / "segments").glob("*.bits"):
        codes.unlink()
    query = _query(pages[12], g)
    with open_index(tmp_path / "ix", readonly=True) as ix:
        assert ix.search([query], k=1, candidates=2)[0][0].id == ids[12]
        assert ix._codes.in_memory_bytes() == 30 * 40 * DIM // 8  # coded from the vectors
    with open_index(tmp_path / "ix", ENC) as ix:
        ix.lock_for_writing()  # the next writer stores them
    assert sum(p.stat().st_size for p in (tmp_path / "ix" / "segments").glob("*.bits")) == 30 * 40 * DIM // 8
    with open_index(tmp_path / "ix", readonly=True) as ix:
        assert ix.search([query], k=1, candidates=2)[0][0].id == ids[12]
        assert ix._codes.in_memory_bytes() == 0
