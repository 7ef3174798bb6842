"""The LangChain adapter with a Nemotron ColEmbed V2 checkpoint (tiny, 4B/8B layout): the
retriever and embeddings work unchanged and return what core computes."""

from __future__ import annotations

from pathlib import Path

import pytest

import mmembed
from langchain_mmembed import MMEmbedEmbeddings, MMEmbedRetriever

QUERY = "solar panel efficiency"


def test_retriever_and_embeddings_with_nemotron(tiny_nemotron_index: tuple[Path, str]) -> None:
    path, model = tiny_nemotron_index
    retriever = MMEmbedRetriever(index=str(path), k=3)  # the model is read from the index
    docs = retriever.invoke(QUERY)
    assert retriever.encoder.info.family == "nemotron_colembed"
    index = mmembed.open_index(path, readonly=True)
    expected = mmembed.Retriever(index, mmembed.load_encoder(model)).search(QUERY, k=3)
    assert [d.id for d in docs] == [hit.id for hit in expected]
    assert [d.metadata["score"] for d in docs] == pytest.approx(
        [h.score for h in expected], rel=1e-4, abs=1e-4
    )
    index.close()
    retriever.close()

    vector = MMEmbedEmbeddings(model=model).embed_query(QUERY)
    assert len(vector) == mmembed.load_encoder(model).info.dim
