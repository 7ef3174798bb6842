"""A Haystack-built index equals `mmembed index` with the same settings (the converter's dpi
reaches the vectors), and the retriever refuses another model's query without extra wiring."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from haystack import Pipeline
from haystack.components.writers import DocumentWriter
from haystack_integrations.components.converters.mmembed import PDFToPageImageDocuments
from haystack_integrations.components.embedders.mmembed import (
    MMEmbedDocumentImageEmbedder,
    MMEmbedTextEmbedder,
)
from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

import mmembed
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.types import EncoderMismatchError

QUESTION = "solar panel output"


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sorted(write_sample_pdfs(tmp_path_factory.mktemp("pdfs")))[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path, pdf: Path) -> MMEmbedDocumentStore:
    """Indexed by a Haystack pipeline whose converter renders at 50 dpi (the embedder is left
    at its default)."""
    store = MMEmbedDocumentStore(path=str(tmp_path_factory.mktemp("haystack") / "index"))
    pipeline = Pipeline()
    pipeline.add_component("converter", PDFToPageImageDocuments(dpi=50))
    pipeline.add_component("embedder", MMEmbedDocumentImageEmbedder(model=str(tiny_colqwen2_5)))
    pipeline.add_component("writer", DocumentWriter(document_store=store))
    pipeline.connect("converter.documents", "embedder.documents")
    pipeline.connect("embedder.documents", "writer.documents")
    pipeline.run({"converter": {"sources": [pdf]}})
    return store


def test_the_converter_dpi_reaches_the_vectors(
    store: MMEmbedDocumentStore, tiny_colqwen2_5: Path, pdf: Path, tmp_path: Path
) -> None:
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    with mmembed.open_index(tmp_path / "cli", encoder.info) as reference:
        mmembed.index_documents([pdf], reference, encoder, dpi=50, progress=False)
        ids = sorted(r.id for r in reference.records())
        expected = reference.get_embeddings(ids)
    index = store.index_for_reading()
    assert sorted(r.id for r in index.records()) == ids
    for got, want in zip(index.get_embeddings(ids), expected, strict=True):
        assert got is not None and want is not None and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)  # float16 storage
    # the render setting did its job: it is not stored with the page
    assert all("_mmembed_render" not in d.meta for d in store.filter_documents())


def test_the_retriever_refuses_another_models_query_without_wiring(
    store: MMEmbedDocumentStore, tiny_colqwen2_5: Path, minilm: str
) -> None:
    retriever = MMEmbedRetriever(document_store=store, top_k=2)
    own = MMEmbedTextEmbedder(model=str(tiny_colqwen2_5)).run(text=QUESTION)
    assert retriever.run(query_multi_embedding=own["multi_embedding"])["documents"]
    # a dense model's query: refused although embedder.encoder is not connected
    dense = MMEmbedTextEmbedder(model=minilm).run(text=QUESTION)
    dim = store.index_for_reading().encoder.dim
    with pytest.raises(EncoderMismatchError):
        retriever.run(query_multi_embedding=dense["multi_embedding"])
    # vectors of unknown origin on a store of an mmembed model: refused, unless told otherwise
    made_elsewhere = [[0.1] * dim, [0.2] * dim]
    with pytest.raises(EncoderMismatchError, match="check_query_encoder=False"):
        retriever.run(query_multi_embedding=made_elsewhere)
    unchecked = MMEmbedRetriever(document_store=store, top_k=2, check_query_encoder=False)
    assert unchecked.run(query_multi_embedding=made_elsewhere)["documents"]
    assert MMEmbedRetriever.from_dict(unchecked.to_dict()).check_query_encoder is False


def test_text_embedder_runs_async(tiny_colqwen2_5: Path) -> None:
    embedder = MMEmbedTextEmbedder(model=str(tiny_colqwen2_5))
    assert asyncio.run(embedder.run_async(text=QUESTION)) == embedder.run(text=QUESTION)


def test_the_retriever_overlay_takes_a_dpi(store: MMEmbedDocumentStore, tiny_colqwen2_5: Path) -> None:
    query = MMEmbedTextEmbedder(model=str(tiny_colqwen2_5)).run(text=QUESTION)["multi_embedding"]
    maps = {}
    for dpi in (36, 72):
        retriever = MMEmbedRetriever(document_store=store, top_k=1, explain=True, dpi=dpi)
        [document] = retriever.run(query_multi_embedding=query, query=QUESTION)["documents"]
        maps[dpi] = document.meta["similarity_map"]["png_base64"]
        assert MMEmbedRetriever.from_dict(retriever.to_dict()).dpi == dpi
    assert maps[36] != maps[72]


def test_ranker_runs_async(store: MMEmbedDocumentStore, tiny_colqwen2_5: Path) -> None:
    from haystack_integrations.components.rankers.mmembed import MMEmbedMaxSimRanker

    ranker = MMEmbedMaxSimRanker(model=str(tiny_colqwen2_5), document_store=store, top_k=2)
    documents = store.filter_documents()
    sync = ranker.run(query=QUESTION, documents=documents)["documents"]
    asynchronous = asyncio.run(ranker.run_async(query=QUESTION, documents=documents))["documents"]
    assert [(d.id, d.score) for d in asynchronous] == [(d.id, d.score) for d in sync]
