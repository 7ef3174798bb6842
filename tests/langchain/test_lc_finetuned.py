"""The LangChain adapter with a fine-tuned adapter folder as ``model=``: nothing new needed."""

from __future__ import annotations

from pathlib import Path

import pytest

import mmembed
from langchain_mmembed import MMEmbedEmbeddings, MMEmbedRetriever

QUERY = "a red page"


def test_retriever_and_embeddings_with_a_trained_adapter(tiny_trained_index: tuple[Path, str]) -> None:
    path, adapter = tiny_trained_index
    retriever = MMEmbedRetriever(index=str(path), model=adapter, k=3)
    docs = retriever.invoke(QUERY)
    with mmembed.open_index(path, readonly=True) as index:
        expected = mmembed.Retriever(index, mmembed.load_encoder(adapter)).search(QUERY, k=3)
    assert [d.id for d in docs] == [h.id for h in expected]
    assert [d.metadata["score"] for d in docs] == pytest.approx(
        [h.score for h in expected], rel=1e-4, abs=1e-4
    )
    retriever.close()
    vector = MMEmbedEmbeddings(model=adapter).embed_query(QUERY)
    assert vector == pytest.approx(
        mmembed.pool(mmembed.load_encoder(adapter).encode_query(QUERY)).tolist(), abs=1e-5
    )
