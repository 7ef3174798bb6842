"""Smoke test of the issue-28 families in the three frameworks: the adapters share core's
encoder cache and index, so one index per kind is enough — a ColModernVBert page index (the
CPU-sized visual model) and text-only indexes of ColBERT models saved by sentence-transformers v6,
by PyLate and in Stanford ColBERT's format. Each adapter returns core's ranking (same page ids, same
order)."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_index import build_page_index

import mmembed
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.retrieve import Retriever

QUERY = "solar capacity"


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sorted(write_sample_pdfs(tmp_path_factory.mktemp("zoo_iv_pdfs")))[0]


def _model(tmp_path_factory: pytest.TempPathFactory, family: str) -> str:
    from mmembed_testing import make_tiny_checkpoint

    return str(make_tiny_checkpoint(family, tmp_path_factory.mktemp(family) / "m", seed=0))


PYLATE = Path(__file__).resolve().parents[1] / "fixtures" / "colbert_formats" / "pylate"  # saved by PyLate


@pytest.fixture(scope="module", params=["colmodernvbert", "st_colbert", "colbert_stanford", "pylate"])
def index(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pdf: Path
) -> tuple[Path, str]:
    if request.param == "st_colbert":
        pytest.importorskip("sentence_transformers")
    model = str(PYLATE) if request.param == "pylate" else _model(tmp_path_factory, request.param)
    encoder = mmembed.load_encoder(model, device="cpu", dtype="float32")
    return build_page_index(
        tmp_path_factory.mktemp("zoo_iv_index") / "i", encoder, [pdf], dpi=24, pages=3
    ), model


def test_every_adapter_returns_cores_ranking(index: tuple[Path, str]) -> None:
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder
    from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever as HaystackRetriever
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore
    from llama_index.retrievers.mmembed import MMEmbedRetriever as LlamaIndexRetriever

    from langchain_mmembed import MMEmbedRetriever as LangChainRetriever

    folder, model = index
    core = Retriever(mmembed.open_index(folder, readonly=True), mmembed.load_encoder(model, device="cpu"))
    expected = [hit.id for hit in core.search(QUERY, k=3)]
    assert len(expected) == 3

    lc = [d.id for d in LangChainRetriever(index=str(folder), k=3, image="none").invoke(QUERY)]
    li = [n.node.node_id for n in LlamaIndexRetriever(index=str(folder), similarity_top_k=3).retrieve(QUERY)]
    embedder = MMEmbedTextEmbedder(model=model)
    embedder.warm_up()
    embedded = embedder.run(text=QUERY)
    hs_retriever = HaystackRetriever(document_store=MMEmbedDocumentStore(path=str(folder)), top_k=3)
    hs = [
        d.id
        for d in hs_retriever.run(
            query_multi_embedding=embedded["multi_embedding"], query_encoder=embedded["encoder"]
        )["documents"]
    ]
    assert lc == li == hs == expected
