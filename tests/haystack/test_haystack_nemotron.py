"""The Haystack components with a Nemotron ColEmbed V2 checkpoint (tiny, 4B/8B layout)."""

from __future__ import annotations

from pathlib import Path

import pytest
from haystack import Pipeline
from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder
from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

import mmembed

QUESTION = "How much solar capacity was installed in 2023?"


def test_query_pipeline_with_nemotron(tiny_nemotron_index: tuple[Path, str]) -> None:
    path, model = tiny_nemotron_index
    pipeline = Pipeline()
    pipeline.add_component("embedder", MMEmbedTextEmbedder(model=model))
    store = MMEmbedDocumentStore(str(path))
    pipeline.add_component("retriever", MMEmbedRetriever(document_store=store, top_k=3))
    pipeline.connect("embedder.multi_embedding", "retriever.query_multi_embedding")
    documents = pipeline.run({"embedder": {"text": QUESTION}})["retriever"]["documents"]

    index = mmembed.open_index(path, readonly=True)
    encoder = mmembed.load_encoder(model)
    assert encoder.info.family == "nemotron_colembed"
    expected = mmembed.Retriever(index, encoder).search(QUESTION, k=3)
    assert [d.id for d in documents] == [h.id for h in expected]
    assert [d.score for d in documents] == pytest.approx([h.score for h in expected], rel=1e-4, abs=1e-4)
    index.close()
