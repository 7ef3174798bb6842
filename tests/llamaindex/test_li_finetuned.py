"""The LlamaIndex adapter with a fine-tuned adapter folder as ``model_name=``."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.retrievers.mmembed import MMEmbedRetriever

import mmembed

QUERY = "a red page"


def test_retriever_with_a_trained_adapter(tiny_trained_index: tuple[Path, str]) -> None:
    path, adapter = tiny_trained_index
    retriever = MMEmbedRetriever(str(path), model_name=adapter, similarity_top_k=3, image_mode="none")
    results = retriever.retrieve(QUERY)
    with mmembed.open_index(path, readonly=True) as index:
        expected = mmembed.Retriever(index, mmembed.load_encoder(adapter)).search(QUERY, k=3)
    assert [r.node.node_id for r in results] == [h.id for h in expected]
    assert [r.score for r in results] == pytest.approx([h.score for h in expected], abs=1e-6)
    retriever.close()
