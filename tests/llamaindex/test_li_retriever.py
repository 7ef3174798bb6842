"""MMEmbedRetriever: pages from an mmembed index as ImageNodes, filters, images, query engine."""

from __future__ import annotations

import base64
import io
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms import ChatMessage, ChatResponse, ImageBlock, MessageRole, MockLLM, TextBlock
from llama_index.core.llms.callbacks import llm_chat_callback
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.retrievers.mmembed import MMEmbedRetriever, UnsupportedFilterError
from PIL import Image

import mmembed
from mmembed.index import LocalIndex, plan

DPI = 48  # low resolution keeps the tiny model fast; same value as conftest.DPI

QUERY = "How much solar capacity was installed?"


def test_hits_are_image_nodes_with_core_ids_scores_and_metadata(
    built_index: Path, tiny_model: str, open_index: LocalIndex
) -> None:
    retriever = MMEmbedRetriever(str(built_index), model_name=tiny_model, similarity_top_k=3, dpi=DPI)
    results = retriever.retrieve(QUERY)

    expected = mmembed.Retriever(open_index, retriever.encoder).search(QUERY, k=3)
    assert [r.node.node_id for r in results] == [h.id for h in expected]
    assert [r.score for r in results] == pytest.approx([h.score for h in expected], abs=1e-6)
    for result, hit in zip(results, expected, strict=True):
        node = result.node
        assert isinstance(node, ImageNode)
        assert node.metadata["file_path"] == hit.source
        assert node.metadata["page_number"] == hit.page and node.metadata["page_label"] == str(hit.page)
        assert node.metadata["content_hash"] == hit.record.content_hash
        assert node.metadata["page_count"] >= hit.page
        image = Image.open(io.BytesIO(base64.b64decode(node.image or "")))
        assert image.size == mmembed.render_page(hit.source, hit.page, dpi=DPI).size
    retriever.close()


def test_model_defaults_to_the_index_encoder_and_open_index_objects_work(
    open_index: LocalIndex, tiny_model: str
) -> None:
    retriever = MMEmbedRetriever(open_index, similarity_top_k=2, image_mode="none")
    results = retriever.retrieve(QUERY)
    assert len(results) == 2 and all(r.node.image is None for r in results)  # type: ignore[attr-defined]
    assert retriever.model_name == open_index.encoder.name
    assert retriever.encoder is mmembed.load_encoder(tiny_model)  # shared weights


def test_filters_are_applied_before_scoring(built_index: Path, sample_pdfs: list[Path]) -> None:
    target = str(sample_pdfs[0].resolve())
    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="file_path", value=target),
            MetadataFilter(key="page_label", value="1", operator=FilterOperator.NE),
        ]
    )
    retriever = MMEmbedRetriever(built_index, similarity_top_k=50, filters=filters, image_mode="none")
    results = retriever.retrieve(QUERY)
    with mmembed.open_index(built_index, readonly=True) as index:
        expected = index.count({"source": target, "page": {"$ne": 1}})
    assert len(results) == expected >= 1
    assert {r.node.metadata["file_path"] for r in results} == {target}
    assert all(r.node.metadata["page_number"] != 1 for r in results)
    retriever.close()

    with pytest.raises(UnsupportedFilterError, match="CONTAINS"):
        MMEmbedRetriever(
            built_index,
            filters=MetadataFilters(
                filters=[MetadataFilter(key="t", value="x", operator=FilterOperator.CONTAINS)]
            ),
        )


def test_image_modes(built_index: Path, tmp_path: Path) -> None:
    thumbs = MMEmbedRetriever(built_index, similarity_top_k=2, image_mode="thumbnail").retrieve(QUERY)
    for result in thumbs:
        node = result.node
        assert isinstance(node, ImageNode) and node.image_mimetype == "image/jpeg"
        Image.open(node.resolve_image()).verify()

    paths = MMEmbedRetriever(
        built_index, similarity_top_k=2, image_mode="path", image_dir=str(tmp_path), dpi=DPI
    ).retrieve(QUERY)
    for result in paths:
        node = result.node
        assert isinstance(node, ImageNode) and node.image is None
        assert Path(node.image_path or "").parent == tmp_path
        meta = node.metadata
        rendered = mmembed.render_page(meta["file_path"], meta["page_number"], dpi=DPI)
        assert Image.open(node.image_path or "").size == rendered.size


async def test_async_retrieve_matches_sync(built_index: Path) -> None:
    retriever = MMEmbedRetriever(built_index, similarity_top_k=3, image_mode="none")
    sync = retriever.retrieve(QUERY)
    async_results = await retriever.aretrieve(QUERY)
    assert [r.node.node_id for r in async_results] == [r.node.node_id for r in sync]
    assert [r.score for r in async_results] == pytest.approx([r.score for r in sync])


class RecordingLLM(MockLLM):
    """LlamaIndex's MockLLM as a chat model that keeps every message it was sent."""

    received: list[ChatMessage] = Field(default_factory=list, exclude=True)

    def __init__(self) -> None:
        super().__init__(is_chat_model=True)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self.received.extend(messages)
        return super().chat(messages, **kwargs)


def test_query_engine_hands_page_images_to_a_multimodal_llm(built_index: Path) -> None:
    retriever = MMEmbedRetriever(built_index, similarity_top_k=2, dpi=DPI)
    llm = RecordingLLM()
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm, multimodal=True)
    response = engine.query(QUERY)

    assert len(response.source_nodes) == 2
    assert str(response)  # MockLLM echoes the prompt it got
    user = [m for m in llm.received if m.role == MessageRole.USER]
    images = [b for m in user for b in m.blocks if isinstance(b, ImageBlock)]
    text = " ".join(b.text for m in user for b in m.blocks if isinstance(b, TextBlock))
    assert len(images) == 2  # one page image per retrieved page (the synthesizer may refine in two calls)
    for block, source in zip(images, response.source_nodes, strict=True):
        meta = source.node.metadata
        sent = Image.open(io.BytesIO(block.resolve_image().read()))
        assert sent.size == mmembed.render_page(meta["file_path"], meta["page_number"], dpi=DPI).size
        assert f"file_name: {meta['file_name']}" in text
    assert QUERY in text


def test_cheap_constructor_and_serialisation(built_index: Path, open_index: LocalIndex) -> None:
    lazy = MMEmbedRetriever("/no/such/index", model_name="/no/such/model")
    assert lazy._encoder is None and lazy._index is None  # nothing opened or loaded
    assert MMEmbedRetriever.class_name() == "MMEmbedRetriever"

    filters = MetadataFilters(
        filters=[MetadataFilter(key="page_number", value=2, operator=FilterOperator.LT)]
    )
    retriever = MMEmbedRetriever(built_index, similarity_top_k=4, filters=filters, image_mode="thumbnail")
    data = retriever.to_dict()
    again = MMEmbedRetriever.from_dict(data)
    assert again.to_dict() == data and isinstance(again.filters, MetadataFilters)
    assert [r.node.node_id for r in again.retrieve(QUERY)] == [
        r.node.node_id for r in retriever.retrieve(QUERY)
    ]

    # An open index object is not serialised; its path is, when it has one.
    from_object = MMEmbedRetriever(open_index).to_dict()
    assert from_object["index_path"] == str(open_index.path)
    assert MMEmbedRetriever.from_dict(from_object, index=open_index)._index is open_index


def test_missing_index_is_a_clear_error_and_not_created(tmp_path: Path, tiny_model: str) -> None:
    missing = tmp_path / "no_index_here"
    with pytest.raises(mmembed.MMEmbedError, match="no mmembed index"):
        MMEmbedRetriever(missing, model_name=tiny_model).retrieve(QUERY)
    assert not missing.exists()


def test_moved_source_falls_back_to_the_stored_thumbnail(
    tmp_path: Path, unseen_pdf: Path, tiny_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    moved = tmp_path / "moved.pdf"
    shutil.copy(unseen_pdf, moved)
    retriever = MMEmbedRetriever(tmp_path / "index", model_name=tiny_model, similarity_top_k=1, dpi=DPI)
    assert retriever.index_documents(moved, dpi=DPI).pages_indexed >= 1  # creates the index
    moved.unlink()
    with caplog.at_level(logging.WARNING):
        [hit] = retriever.retrieve(QUERY)
    assert isinstance(hit.node, ImageNode) and hit.node.image_mimetype == "image/jpeg"
    Image.open(hit.node.resolve_image()).verify()
    assert "moved.pdf" in caplog.text and "thumbnail" in caplog.text
    retriever.close()


def test_explain_puts_core_s_overlay_in_the_metadata(built_index: Path, encoder: Any) -> None:
    from llama_index.core.schema import MetadataMode

    from mmembed.retrieve import SIMILARITY_MAP_KEY, Retriever

    nodes = MMEmbedRetriever(
        index=str(built_index), similarity_top_k=2, image_mode="none", explain=True, dpi=DPI
    ).retrieve("solar")
    core = Retriever(mmembed.open_index(built_index, readonly=True), encoder)
    for node, hit in zip(nodes, core.search("solar", k=2), strict=True):
        explained = node.node.metadata[SIMILARITY_MAP_KEY]
        assert explained == core.explain_metadata("solar", hit, dpi=DPI)  # core does the work
        assert explained["vectors_from"] == "stored"
        overlay = Image.open(io.BytesIO(base64.b64decode(explained["png_base64"])))
        assert overlay.format == "PNG" and explained["rows"] > 1 and explained["cols"] > 1
        # A base64 PNG is no text for the LLM or the embedder.
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            assert "png_base64" not in node.node.get_content(metadata_mode=mode)


def test_an_index_with_a_binary_first_stage_serves_the_retriever_unchanged(
    built_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mmembed.open_index(built_index, readonly=True) as source:
        records = list(source.records())
        vectors = source.get_embeddings([r.id for r in records])
    pages = [
        mmembed.PageInput(
            embedding=v,
            source=r.source,
            page=r.page,
            content_hash=r.content_hash,
            metadata=r.metadata,
            id=r.id,
        )
        for r, v in zip(records, vectors, strict=True)
        if v is not None
    ]
    shortlisted: list[int] = []
    # The search plan's binary stage (moved from LocalIndex._shortlisted by the index split).
    original = plan.binary_picks
    monkeypatch.setattr(plan, "binary_picks", lambda *a: shortlisted.append(a[2]) or original(*a))
    with mmembed.open_index(tmp_path / "binary", encoder=source.encoder, first_stage="binary") as index:
        index.add(pages)
        retriever = MMEmbedRetriever(index, similarity_top_k=3, image_mode="none")
        results = retriever.retrieve(QUERY)
        assert shortlisted, "the retriever's search went through the binary first stage"
        exact = mmembed.Retriever(index, retriever.encoder).search(QUERY, k=3, exact=True)
        assert [r.node.node_id for r in results] == [h.id for h in exact]
        assert [r.score for r in results] == pytest.approx([h.score for h in exact], abs=1e-5)
        retriever.close()
