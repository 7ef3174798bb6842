"""The LlamaIndex adapter with a Nemotron ColEmbed V2 checkpoint (tiny, 4B/8B layout)."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.schema import ImageNode
from llama_index.retrievers.mmembed import MMEmbedRetriever

import mmembed

QUERY = "How much solar capacity was installed?"


def test_retriever_with_nemotron(tiny_nemotron_index: tuple[Path, str]) -> None:
    path, model = tiny_nemotron_index
    retriever = MMEmbedRetriever(str(path), model_name=model, similarity_top_k=3, image_mode="none")
    results = retriever.retrieve(QUERY)
    assert retriever.encoder.info.family == "nemotron_colembed"
    index = mmembed.open_index(path, readonly=True)
    expected = mmembed.Retriever(index, retriever.encoder).search(QUERY, k=3)
    assert [r.node.node_id for r in results] == [h.id for h in expected]
    assert [r.score for r in results] == pytest.approx([h.score for h in expected], abs=1e-6)
    assert all(isinstance(r.node, ImageNode) for r in results)
    index.close()
    retriever.close()
