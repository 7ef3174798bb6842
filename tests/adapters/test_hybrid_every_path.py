"""Text and hybrid search give the same results on the same index through every path: core,
LlamaIndex (VectorStoreQueryMode), LangChain (search_mode, EnsembleRetriever), Haystack
(mode=, MMEmbedBM25Retriever, DocumentJoiner's reciprocal rank fusion)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network here
from page_index import build_page_index

import mmembed
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.retrieve import Retriever

DPI = 18
QUERIES = ["quarterly revenue grew", "solar storage capacity", "lemon olive oil cake"]
K = 5


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path) -> Path:
    pdfs = sorted(write_sample_pdfs(tmp_path_factory.mktemp("hybrid_pdfs")))
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5), device="cpu", dtype="float32")
    folder = tmp_path_factory.mktemp("hybrid_index") / "index"
    return build_page_index(folder, encoder, pdfs, dpi=DPI, pages=9)


@pytest.fixture(scope="module")
def core(index: Path, tiny_colqwen2_5: Path) -> Retriever:
    return Retriever(mmembed.open_index(index, readonly=True), mmembed.load_encoder(str(tiny_colqwen2_5)))


def _pairs(hits) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 6)) for h in hits]


def _same_fusion(ours: list[tuple[str, float]], theirs: list[tuple[str, float]]) -> None:
    """Same pages, scores proportional (a framework may scale RRF scores), so the same order
    up to ties."""
    assert {i for i, _ in ours} == {i for i, _ in theirs}
    mine = dict(ours)
    ratios = [s / mine[i] for i, s in theirs]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-4)
    assert [s for _, s in theirs] == sorted((s for _, s in theirs), reverse=True)


def test_core_text_and_hybrid_modes(core: Retriever):
    info = core.index.info()
    assert info["pages_with_text"] == 9
    hits = core.search("quarterly revenue grew", k=K, mode="text")
    assert all("quarterly_financial_report" in h.source for h in hits[:3])
    assert all(h.found_by == ("text",) for h in hits)
    hybrid = core.search("quarterly revenue grew", k=9, mode="hybrid")
    assert len(hybrid) == 9  # pages the text side misses still come from the visual side
    assert {h.source for h in hybrid[:3]} == {hits[0].source}


def test_llamaindex_honours_query_modes_and_alpha(index: Path, core: Retriever):
    from llama_index.core.vector_stores.types import VectorStoreQueryMode
    from llama_index.retrievers.mmembed import MMEmbedRetriever

    for mode, core_mode, alpha in (
        (VectorStoreQueryMode.TEXT_SEARCH, "text", None),
        (VectorStoreQueryMode.HYBRID, "hybrid", None),
        (VectorStoreQueryMode.HYBRID, "hybrid", 0.3),
        (VectorStoreQueryMode.DEFAULT, "visual", None),
    ):
        retriever = MMEmbedRetriever(
            str(index), similarity_top_k=K, image_mode="none", vector_store_query_mode=mode, alpha=alpha
        )
        for q in QUERIES:
            got = [(n.node.id_, round(n.score, 6)) for n in retriever.retrieve(q)]
            assert got == _pairs(core.search(q, k=K, mode=core_mode, alpha=alpha))
        retriever.close()
    with pytest.raises(ValueError, match="not served by mmembed"):
        MMEmbedRetriever(str(index), vector_store_query_mode=VectorStoreQueryMode.MMR)


def test_langchain_search_mode_and_ensemble_retriever(index: Path, core: Retriever):
    from langchain_classic.retrievers import EnsembleRetriever

    from langchain_mmembed import MMEmbedRetriever

    for mode in ("text", "hybrid"):
        retriever = MMEmbedRetriever(index=str(index), image="none", k=K, search_mode=mode)
        for q in QUERIES:
            docs = retriever.invoke(q)
            assert [(d.id, round(d.metadata["score"], 6)) for d in docs] == _pairs(
                core.search(q, k=K, mode=mode)
            )
            assert docs[0].metadata["matches"][0]["side"] in ("visual", "text")
        retriever.close()
    with pytest.raises(ValueError, match="alpha must be"):
        MMEmbedRetriever(index=str(index), search_mode="hybrid", alpha=2.0)

    # LangChain's own fusion of a visual and a text retriever ranks like core's RRF (k=60).
    visual = MMEmbedRetriever(index=str(index), image="none", k=9)
    text = MMEmbedRetriever(index=str(index), image="none", k=9, search_mode="text")
    # id_key: pages are told apart by their id (their page_content may be empty).
    ensemble = EnsembleRetriever(retrievers=[visual, text], weights=[0.5, 0.5], c=60, id_key="id")
    for q in QUERIES:
        docs = ensemble.invoke(q)
        ours = core.search(q, k=9, mode="hybrid")
        assert [d.id for d in docs][:1] == [ours[0].id] or ours[0].score == ours[1].score
        assert {d.id for d in docs} == {h.id for h in ours}
    visual.close()
    text.close()


def test_haystack_mode_bm25_retriever_and_rrf_joiner(index: Path, core: Retriever, tiny_colqwen2_5: Path):
    from haystack import Pipeline
    from haystack.components.joiners import DocumentJoiner
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder
    from haystack_integrations.components.retrievers.mmembed import MMEmbedBM25Retriever, MMEmbedRetriever
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

    store = MMEmbedDocumentStore(path=str(index))
    bm25 = MMEmbedBM25Retriever(document_store=store, top_k=K)
    for q in QUERIES:
        docs = bm25.run(query=q)["documents"]
        assert [(d.id, round(d.score, 6)) for d in docs] == _pairs(core.search(q, k=K, mode="text"))

    hybrid = Pipeline()
    hybrid.add_component("embedder", MMEmbedTextEmbedder(model=str(tiny_colqwen2_5)))
    hybrid.add_component("retriever", MMEmbedRetriever(document_store=store, top_k=K, mode="hybrid"))
    hybrid.connect("embedder.multi_embedding", "retriever.query_multi_embedding")
    joined = Pipeline()
    joined.add_component("embedder", MMEmbedTextEmbedder(model=str(tiny_colqwen2_5)))
    joined.add_component("visual", MMEmbedRetriever(document_store=store, top_k=50))
    joined.add_component("text", MMEmbedBM25Retriever(document_store=store, top_k=50))
    joined.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=9))
    joined.connect("embedder.multi_embedding", "visual.query_multi_embedding")
    joined.connect("visual", "joiner")
    joined.connect("text", "joiner")
    for q in QUERIES:
        ours = core.search(q, k=K, mode="hybrid")
        docs = hybrid.run({"embedder": {"text": q}, "retriever": {"query": q}})["retriever"]["documents"]
        assert [(d.id, round(d.score, 6)) for d in docs] == _pairs(ours)
        assert docs[0].meta["matches"] == [m.to_json() for m in ours[0].matches]
        fused = joined.run({"embedder": {"text": q}, "text": {"query": q}})["joiner"]["documents"]
        _same_fusion(_pairs(core.search(q, k=9, mode="hybrid")), [(d.id, d.score) for d in fused])
    with pytest.raises(Exception, match="needs the query's text"):  # (wrapped by the pipeline)
        hybrid.run({"embedder": {"text": "solar"}})
    store.close()
