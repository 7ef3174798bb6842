"""Text and hybrid search on the Qdrant backends (qdrant-client local mode, qdrant-edge and,
with ``-m qdrant_server``, a server): the ``text`` sparse vector with the engine's IDF, the
engine's RRF fusion query, ``alpha`` fused client-side, filters on both sides, the sides each
hit was found by — and the same rankings as the embedded index on a corpus whose text ranking
is unambiguous (scores differ: FTS5 ``bm25()`` against Qdrant's IDF)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from mmembed.cli import main
from mmembed.index import IndexOptionError, PageInput, open_backend
from mmembed.index.fusion import fuse, with_side
from mmembed.types import EncoderInfo, MMEmbedError, SearchHit

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

ENCODER = EncoderInfo(name="test/multi", family="colqwen2_5", kind="multi", dim=8, similarity="maxsim")
# One topic word per page, repeated a different number of times; every other word belongs to
# one page only and every page has 12 words: the text ranking is unambiguous for both scorers.
TOPICS = {1: ("turbine", 3), 2: ("turbine", 2), 3: ("turbine", 1), 4: ("glacier", 2), 5: ("glacier", 1)}
N_PAGES = 8  # pages 6 and 7 have their own words only, page 8 has no text
QUERIES = ["turbine", "glacier turbine", "Glaciér", "nothing-here"]


def _text(page: int) -> str | None:
    if page == N_PAGES:
        return None
    word, times = TOPICS.get(page, ("", 0))
    filler = [f"p{page}w{j}" for j in range(12 - times)]
    return " ".join([word] * times + filler)


def _pages() -> list[PageInput]:
    gen = torch.Generator().manual_seed(7)
    return [
        PageInput(
            embedding=torch.randn(4, ENCODER.dim, generator=gen),
            source=f"doc{page % 2}.pdf",
            page=page,
            content_hash=f"{page:064x}",
            metadata={"half": "a" if page % 2 else "b"},
            text=_text(page),
        )
        for page in range(1, N_PAGES + 1)
    ]


def _queries() -> torch.Tensor:
    return torch.randn(len(QUERIES), 3, ENCODER.dim, generator=torch.Generator().manual_seed(11))


def _uri(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "local-mode":
        return f"qdrant://{tmp_path}/store/pages"
    if kind == "edge":
        return f"qdrant-edge://{tmp_path}/edge"
    return str(request.getfixturevalue("server_collection")())


@pytest.fixture(params=["local-mode", "edge", pytest.param("server", marks=pytest.mark.qdrant_server)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """The embedded index and a Qdrant store holding the same pages."""
    local = open_backend(tmp_path / "local", ENCODER)
    qdrant = open_backend(_uri(request.param, tmp_path, request), ENCODER)
    try:
        for index in (local, qdrant):
            index.add(_pages())
        yield local, qdrant
    finally:
        qdrant.close()
        local.close()


def _ranked(hits: list[SearchHit]) -> list[tuple[str, tuple[tuple[str, int], ...]]]:
    return [(h.id, tuple((m.side, m.rank) for m in h.matches)) for h in hits]


def test_text_mode_ranks_like_the_embedded_index(stores: tuple[Any, Any]) -> None:
    local, qdrant = stores
    assert qdrant.info()["pages_with_text"] == N_PAGES - 1
    assert qdrant.info()["text_tokenizer"] == "unicode61"
    for q in QUERIES:
        ours, theirs = local.search_text(q, 10)[0], qdrant.search(None, 10, mode="text", texts=[q])[0]
        assert _ranked(theirs) == _ranked(ours), q
    assert [h.page for h in qdrant.search_text("turbine", 10)[0]] == [1, 2, 3]
    assert [h.page for h in qdrant.search_text("GLACIÉR", 10)[0]] == [4, 5]  # unicode61, no diacritics
    assert qdrant.search_text('" * NEAR( OR', 5) == [[]]  # only words, none stored: nothing, no error


def test_hybrid_rrf_is_the_engines_and_matches_core_fusion(stores: tuple[Any, Any]) -> None:
    local, qdrant = stores
    queries = _queries()
    for rrf_k in (None, 5):
        ours = local.search(queries, 6, mode="hybrid", texts=QUERIES, rrf_k=rrf_k)
        theirs = qdrant.search(queries, 6, mode="hybrid", texts=QUERIES, rrf_k=rrf_k)
        for q, mine, got in zip(QUERIES, ours, theirs, strict=True):
            # Same pages, same sides at the same ranks, the same RRF scores: the order may
            # differ only between pages whose fused scores tie.
            assert {h.id: h.matches and [(m.side, m.rank) for m in h.matches] for h in got} == {
                h.id: [(m.side, m.rank) for m in h.matches] for h in mine
            }, q
            assert [round(h.score, 6) for h in got] == [round(h.score, 6) for h in mine], q
    # The engine's fused scores are core's fusion of the engine's own two side lists.
    visual = with_side(qdrant.search(queries[:1], 50)[0], "visual")
    text = qdrant.search_text(QUERIES[:1], 50)[0]
    expected = fuse(visual, text, 6)
    got = qdrant.search(queries[:1], 6, mode="hybrid", texts=QUERIES[:1])[0]
    assert [round(h.score, 6) for h in got] == [round(h.score, 6) for h in expected]
    assert {h.page for h in got if h.found_by == ("visual", "text")} == {1, 2, 3}  # all hold "turbine"


def test_hybrid_alpha_and_filters_apply_to_both_sides(stores: tuple[Any, Any]) -> None:
    local, qdrant = stores
    queries = _queries()
    for alpha in (0.0, 1.0):  # one side's order: the embedded index's
        ours = local.search(queries, 5, mode="hybrid", texts=QUERIES, alpha=alpha)
        theirs = qdrant.search(queries, 5, mode="hybrid", texts=QUERIES, alpha=alpha)
        for mine, got in zip(ours, theirs, strict=True):
            assert [h.id for h in got] == [h.id for h in mine]
    # Between, normalised bm25 and IDF scores mix differently: core's weighted sum, computed
    # client-side from the engine's two side lists.
    visual = with_side(qdrant.search(queries[1:2], 50)[0], "visual")
    text = qdrant.search_text(QUERIES[1:2], 50)[0]
    got = qdrant.search(queries[1:2], 5, mode="hybrid", texts=QUERIES[1:2], alpha=0.3)[0]
    expected = fuse(visual, text, 5, alpha=0.3)
    assert _ranked(got) == _ranked(expected)
    assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-6)
    where = {"half": "b"}  # even pages: 2 and 4 hold a topic word
    hits = qdrant.search(queries[:2], 10, where, mode="hybrid", texts=QUERIES[:2])
    assert all(h.page % 2 == 0 for q in hits for h in q)
    assert {h.page for h in hits[1] if "text" in h.found_by} == {2, 4}
    assert _ranked(hits[1]) == _ranked(
        local.search(queries[1:2], 10, where, mode="hybrid", texts=QUERIES[1:2])[0]
    )
    assert qdrant.search(None, 5, {"half": "nobody"}, mode="text", texts=["turbine"]) == [[]]


def test_a_page_without_text_is_found_by_the_visual_side(stores: tuple[Any, Any]) -> None:
    _, qdrant = stores
    no_text = next(r.id for r in qdrant.records() if r.page == N_PAGES)
    hits = qdrant.search(_queries(), N_PAGES, mode="hybrid", texts=QUERIES)
    for per_query in hits:
        assert len(per_query) == N_PAGES  # every page, text or not
        assert next(h for h in per_query if h.id == no_text).found_by == ("visual",)
    assert qdrant.get_texts([no_text, "unknown"]) == [None, None]


def test_mode_arguments_are_checked(stores: tuple[Any, Any]) -> None:
    _, qdrant = stores
    with pytest.raises(MMEmbedError, match="needs the query text"):
        qdrant.search(_queries(), 3, mode="text")
    with pytest.raises(MMEmbedError, match="needs the query embeddings"):
        qdrant.search(None, 3, mode="hybrid", texts=["turbine"])
    with pytest.raises(MMEmbedError, match="1 query text"):
        qdrant.search(_queries(), 3, mode="hybrid", texts=["turbine"])
    with pytest.raises(MMEmbedError, match="alpha must be"):
        qdrant.search(_queries(), 3, mode="hybrid", texts=QUERIES, alpha=2)
    with pytest.raises(IndexOptionError, match="unicode61"):
        qdrant.prepare_text_store("trigram")


def _drop_text_vector(uri: str, index: Any) -> None:
    """Make ``index`` look like a store created before text search: no ``text`` vector (the
    page text stays in the payload, as mmembed-qdrant kept it then)."""
    if uri.startswith("qdrant-edge://"):
        index._engine.update(index._qe.UpdateOperation.delete_vector_name("text"))
        index._engine.flush()
    else:
        index._client.delete_vector_name(index.collection, "text")


@pytest.mark.parametrize("kind", ["local-mode", "edge"])
def test_a_store_without_the_text_vector_names_backfill_text_which_fills_it(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = _uri(kind, tmp_path, request)
    index = open_backend(uri, ENCODER)
    index.add(_pages())
    _drop_text_vector(uri, index)
    index.close()
    index = open_backend(uri, ENCODER)
    try:
        assert not index.text_vector and index.info()["pages_with_text"] == 0
        with pytest.raises(MMEmbedError, match="--backfill-text"):
            index.search_text("turbine", 3)
        with pytest.raises(MMEmbedError, match="--backfill-text"):
            index.search(_queries(), 3, mode="hybrid", texts=QUERIES)
        index.upsert(_pages()[:1])  # still writable: text kept in the payload until the backfill
        assert [h.page for h in index.search(_queries()[:1], 1)[0]]  # visual search unaffected
    finally:
        index.close()
    capsys.readouterr()
    assert main(["index", "--backfill-text", "--index", uri]) == 0
    out = capsys.readouterr().out
    assert "created the text store" in out and f"now has text for {N_PAGES - 1} page(s)" in out
    index = open_backend(uri, ENCODER, readonly=True)
    try:
        assert [h.page for h in index.search_text("turbine", 10)[0]] == [1, 2, 3]
    finally:
        index.close()


DENSE = EncoderInfo(name="test/dense", family="biqwen2_5", kind="single", dim=8, similarity="cosine")


@pytest.mark.parametrize("kind", ["local-mode", "edge"])
@pytest.mark.parametrize("setup", ["dense", "multi-exact"])
def test_dense_and_exact_stores_fuse_like_core(
    kind: str, setup: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The engine's RRF over the rescored side lists equals core's fusion of those lists, for a
    single-vector store (HNSW side) and an exact multi-vector one as for the pooled prefetch."""
    encoder = DENSE if setup == "dense" else ENCODER
    uri = _uri(kind, tmp_path, request) + ("?exact=true" if setup == "multi-exact" else "")
    index = open_backend(uri, encoder)
    try:
        pages = _pages()
        if setup == "dense":
            for p in pages:
                p.embedding = p.embedding[:1]  # (1, dim)
        index.add(pages)
        queries = _queries()[:, :1] if setup == "dense" else _queries()
        for i, q in enumerate(QUERIES):
            visual = with_side(index.search(queries[i : i + 1], 50)[0], "visual")
            text = index.search_text(q, 50)[0]
            got = index.search(queries[i : i + 1], 5, mode="hybrid", texts=[q])[0]
            expected = fuse(visual, text, 5)
            assert [(h.id, round(h.score, 6), h.found_by) for h in got] == [
                (h.id, round(h.score, 6), h.found_by) for h in expected
            ], q
    finally:
        index.close()


def test_the_latency_benchmark_runs_and_prints_its_ratios() -> None:
    """benchmarks/qdrant_hybrid.py end to end on a tiny store (its numbers mean nothing here)."""
    import re
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "qdrant_hybrid.py"
    done = subprocess.run(
        [sys.executable, str(script), "--pages", "20", "--queries", "2", "--words", "20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ratios = dict(re.findall(r"(\w+)=([0-9.]+)x", done.stdout.strip().splitlines()[-1]))
    assert set(ratios) == {"text", "hybrid_rrf", "hybrid_alpha", "full_prefetch_rrf"}, done.stdout
