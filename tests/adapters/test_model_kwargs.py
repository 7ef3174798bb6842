"""``model_kwargs`` (the model family's options) reach core's encoder in every adapter component
that loads a model — retrievers and rerankers too, not only the embedders — and survive
serialisation. A Nomic Embed Vision index needs them: its text partner (``text_model``) and
its Matryoshka size decide the query encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from page_index import build_page_index

import mmembed
from mmembed.retrieve import Retriever

DPI = 18


@pytest.fixture(scope="module")
def nomic_index(
    tmp_path_factory: pytest.TempPathFactory, tiny_nomic: tuple[Path, Path]
) -> tuple[Path, dict[str, Any]]:
    """(index folder, model_kwargs): sample PDF pages indexed by the tiny vision model at 256 dims."""
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    text, vision = tiny_nomic
    kwargs: dict[str, Any] = {"text_model": str(text), "matryoshka_dim": 256}
    encoder = mmembed.load_encoder(str(vision), device="cpu", **kwargs)
    pdf = sorted(write_sample_pdfs(tmp_path_factory.mktemp("kwargs_pdfs")))[0]
    path = build_page_index(
        tmp_path_factory.mktemp("kwargs_index") / "index", encoder, [pdf], dpi=DPI, pages=3
    )
    return path, kwargs


def expected_scores(path: Path, kwargs: dict[str, Any], vision: Path, query: str) -> dict[int, float]:
    """Page number -> score, as core's retriever with the same encoder gives them."""
    encoder = mmembed.load_encoder(str(vision), device="cpu", **kwargs)
    index = mmembed.open_index(path, encoder=encoder.info, create=False)
    try:
        return {hit.record.page: hit.score for hit in Retriever(index, encoder).search(query, k=3)}
    finally:
        index.close()


QUERY = "quarterly revenue"


def test_langchain_retriever_and_reranker(
    nomic_index: tuple[Path, dict[str, Any]], tiny_nomic: tuple[Path, Path]
) -> None:
    from langchain_mmembed import MMEmbedMaxSimReranker, MMEmbedRetriever

    path, kwargs = nomic_index
    expected = expected_scores(path, kwargs, tiny_nomic[1], QUERY)
    retriever = MMEmbedRetriever(index=str(path), model_kwargs=kwargs, device="cpu", k=3, image="none")
    documents = retriever.invoke(QUERY)
    assert retriever.encoder.info.dim == 256
    assert {d.metadata["page"]: d.metadata["score"] for d in documents} == pytest.approx(expected, abs=1e-4)
    assert MMEmbedRetriever.model_validate(retriever.model_dump()).model_kwargs == kwargs

    reranker = MMEmbedMaxSimReranker(index=str(path), model_kwargs=kwargs, device="cpu", top_n=3)
    reranked = reranker.compress_documents(documents, QUERY)
    assert reranker.reranker.encoder is retriever.encoder  # one shared model with those options
    assert {d.metadata["page"]: d.metadata["score"] for d in reranked} == pytest.approx(expected, abs=1e-4)


def test_llamaindex_retriever_and_reranker(
    nomic_index: tuple[Path, dict[str, Any]], tiny_nomic: tuple[Path, Path]
) -> None:
    from llama_index.core.schema import QueryBundle
    from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank
    from llama_index.retrievers.mmembed import MMEmbedRetriever

    path, kwargs = nomic_index
    expected = expected_scores(path, kwargs, tiny_nomic[1], QUERY)
    retriever = MMEmbedRetriever(
        path, model_kwargs=kwargs, device="cpu", similarity_top_k=3, image_mode="none"
    )
    nodes = retriever.retrieve(QUERY)
    assert {n.node.metadata["page_number"]: n.score for n in nodes} == pytest.approx(expected, abs=1e-4)
    data = retriever.to_dict()
    assert data["model_kwargs"] == kwargs and MMEmbedRetriever.from_dict(data).to_dict() == data

    rerank = MMEmbedRerank(index=path, model_kwargs=kwargs, device="cpu", top_n=3)
    reranked = rerank.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert {n.node.metadata["page_number"]: n.score for n in reranked} == pytest.approx(expected, abs=1e-4)
    assert MMEmbedRerank.from_dict(rerank.to_dict()).model_kwargs == kwargs
