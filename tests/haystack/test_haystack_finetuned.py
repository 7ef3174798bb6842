"""The Haystack components with a fine-tuned adapter folder as ``model=``."""

from __future__ import annotations

from pathlib import Path

import pytest
from haystack import Pipeline
from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder
from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

import mmembed

QUERY = "a red page"


def test_query_pipeline_with_a_trained_adapter(tiny_trained_index: tuple[Path, str]) -> None:
    path, adapter = tiny_trained_index
    pipeline = Pipeline()
    pipeline.add_component("embedder", MMEmbedTextEmbedder(model=adapter))
    store = MMEmbedDocumentStore(str(path))
    pipeline.add_component("retriever", MMEmbedRetriever(document_store=store, top_k=3))
    pipeline.connect("embedder.multi_embedding", "retriever.query_multi_embedding")
    documents = pipeline.run({"embedder": {"text": QUERY}})["retriever"]["documents"]
    with mmembed.open_index(path, readonly=True) as index:
        expected = mmembed.Retriever(index, mmembed.load_encoder(adapter)).search(QUERY, k=3)
    assert [d.id for d in documents] == [h.id for h in expected]
    assert [d.score for d in documents] == pytest.approx([h.score for h in expected], rel=1e-4, abs=1e-4)
