"""MMEmbedRerank: MaxSim reranking that reuses stored page vectors and encodes only unseen pages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from llama_index.core import VectorStoreIndex
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode
from llama_index.embeddings.mmembed import MMEmbedEmbedding
from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank
from llama_index.readers.mmembed import PDFPageImageReader
from llama_index.retrievers.mmembed import MMEmbedRetriever
from PIL import Image

import mmembed
from mmembed.encoders.base import Encoder
from mmembed.index import LocalIndex

DPI = 48  # low resolution keeps the tiny model fast; same value as conftest.DPI

QUERY = "quarterly revenue growth"


@pytest.fixture
def count_page_encodes(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every page image the shared tiny encoder is asked to encode."""
    calls: list[int] = []
    real = encoder.encode_images

    def counting(images: Sequence[Image.Image], **kw: Any) -> list[torch.Tensor]:
        calls.append(len(images))
        return real(images, **kw)

    monkeypatch.setattr(encoder, "encode_images", counting)
    return calls


def index_scores(index: LocalIndex, encoder: Encoder, query: str) -> dict[str, float]:
    hits = index.search(encoder.encode_queries([query]), k=index.count())[0]
    return {h.id: h.score for h in hits}


def test_reuses_stored_vectors_of_index_nodes(
    built_index: Path, open_index: LocalIndex, encoder: Encoder, count_page_encodes: list[int]
) -> None:
    candidates = MMEmbedRetriever(built_index, similarity_top_k=6, image_mode="none").retrieve(QUERY)
    rerank = MMEmbedRerank(index=built_index, top_n=3)
    assert isinstance(rerank, BaseNodePostprocessor)
    reranked = rerank.postprocess_nodes(candidates, query_str=QUERY)

    assert count_page_encodes == [] and rerank.pages_encoded == 0
    assert rerank.pages_reused == len(candidates) == 6
    assert len(reranked) == 3
    # Exact MaxSim of the stored vectors: the same scores the index search gives.
    expected = index_scores(open_index, encoder, QUERY)
    for result in reranked:
        assert result.score == pytest.approx(expected[result.node.node_id], abs=1e-4)
    scores = [r.get_score() for r in reranked]
    assert scores == sorted(scores, reverse=True)
    rerank.close()


def test_encodes_unseen_pages_once(unseen_pdf: Path, tiny_model: str, count_page_encodes: list[int]) -> None:
    docs = PDFPageImageReader(dpi=DPI, page_range="1-2").load_data(unseen_pdf)
    nodes = [NodeWithScore(node=d, score=0.0) for d in docs]
    rerank = MMEmbedRerank(model_name=tiny_model, top_n=2, dpi=DPI)

    first = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert rerank.pages_encoded == len(docs) == sum(count_page_encodes) and rerank.pages_reused == 0
    second = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert rerank.pages_encoded == len(docs)  # remembered: not encoded again
    assert [r.node.node_id for r in second] == [r.node.node_id for r in first]

    # Same page given only as an image (no file path) scores the same as rendered from its file.
    image_only = [
        NodeWithScore(node=ImageNode(image=d.image, image_mimetype=d.image_mimetype), score=0.0) for d in docs
    ]
    by_image = rerank.postprocess_nodes(image_only, query_str=QUERY)
    assert rerank.pages_encoded == 2 * len(docs)
    assert [r.score for r in by_image] == pytest.approx([r.score for r in first], abs=1e-4)


def test_dense_vector_store_first_stage_then_maxsim(
    built_index: Path,
    sample_pdfs: list[Path],
    unseen_pdf: Path,
    tiny_model: str,
    open_index: LocalIndex,
    encoder: Encoder,
    count_page_encodes: list[int],
) -> None:
    embed = MMEmbedEmbedding(model_name=tiny_model)
    # One indexed PDF and the unseen one.
    docs = PDFPageImageReader(dpi=DPI).load_data([sample_pdfs[0], unseen_pdf])
    # Fresh node ids, as a node parser would give: the reranker finds pages by content hash.
    nodes = [ImageNode(image=d.image, metadata=d.metadata) for d in docs]
    vectors = embed.get_image_embedding_batch([n.resolve_image() for n in nodes])
    for node, vector in zip(nodes, vectors, strict=True):
        node.embedding = vector
    dense = VectorStoreIndex(nodes, embed_model=embed)
    first_stage = dense.as_retriever(similarity_top_k=len(nodes))
    count_page_encodes.clear()

    candidates = first_stage.retrieve(QUERY)
    assert len(candidates) == len(docs) and all(
        c.node.node_id not in {d.id_ for d in docs} for c in candidates
    )
    rerank = MMEmbedRerank(index=open_index, top_n=4, dpi=DPI)
    reranked = rerank.postprocess_nodes(candidates, query_str=QUERY)

    stored = open_index.count({"source": str(sample_pdfs[0].resolve())})
    assert rerank.pages_reused == stored  # every indexed page came from the index
    assert rerank.pages_encoded == len(docs) - stored == sum(count_page_encodes) > 0  # only the unseen PDF
    expected = index_scores(open_index, encoder, QUERY)
    for result in reranked:
        page_id = next(d.id_ for d in docs if d.metadata == result.node.metadata)
        if page_id in expected:
            assert result.score == pytest.approx(expected[page_id], abs=1e-4)


async def test_async_and_query_bundle(built_index: Path) -> None:
    candidates = MMEmbedRetriever(built_index, similarity_top_k=4, image_mode="none").retrieve(QUERY)
    rerank = MMEmbedRerank(index=built_index, top_n=2)
    sync = rerank.postprocess_nodes(candidates, query_bundle=QueryBundle(QUERY))
    async_results = await rerank.apostprocess_nodes(candidates, query_str=QUERY)
    assert [r.node.node_id for r in async_results] == [r.node.node_id for r in sync]
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    with pytest.raises(ValueError, match="query"):
        rerank.postprocess_nodes(candidates)
    rerank.close()


def test_node_without_page_is_a_clear_error(tiny_model: str) -> None:
    rerank = MMEmbedRerank(model_name=tiny_model)
    with pytest.raises(mmembed.MMEmbedError, match="file_path"):
        rerank.postprocess_nodes(
            [NodeWithScore(node=TextNode(text="plain text"), score=1.0)], query_str=QUERY
        )


def test_cheap_constructor_shared_model_and_serialisation(
    built_index: Path, tiny_model: str, open_index: LocalIndex
) -> None:
    lazy = MMEmbedRerank(model_name="/no/such/model", index="/no/such/index", top_n=2)
    assert lazy._reranker is None
    data = lazy.to_dict()
    assert data["class_name"] == MMEmbedRerank.class_name() == "MMEmbedRerank"
    assert data["index_path"] == "/no/such/index"
    assert MMEmbedRerank.from_dict(data).to_dict() == data
    assert MMEmbedRerank.from_json(lazy.to_json()).to_dict() == data

    with_object = MMEmbedRerank(index=open_index)
    assert with_object.to_dict()["index_path"] == str(open_index.path)
    assert MMEmbedRerank.from_dict(with_object.to_dict(), index=open_index)._index is open_index
    with pytest.raises(mmembed.MMEmbedError, match="model_name"):
        MMEmbedRerank()

    # Reader, embedding, retriever and reranker in one process share one copy of the weights.
    shared = mmembed.load_encoder(tiny_model)
    assert MMEmbedEmbedding(model_name=tiny_model).encoder is shared
    assert MMEmbedRetriever(built_index, model_name=tiny_model).encoder is shared
    assert with_object.reranker.encoder is shared
