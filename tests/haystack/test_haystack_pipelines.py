"""The Haystack components end to end with a tiny ColQwen2.5 checkpoint (random weights:
rankings are meaningless, so these tests check plumbing — ids, counts, reuse of stored
vectors, identical results after ``Pipeline.dumps()``/``loads()`` — not relevance)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
import torch
from haystack import Document, Pipeline, component, default_from_dict, default_to_dict
from haystack.components.builders import ChatPromptBuilder
from haystack.components.converters.image import DocumentToImageContent
from haystack.components.writers import DocumentWriter
from haystack.dataclasses import ByteStream, ChatMessage, ImageContent
from haystack.document_stores.types import DuplicatePolicy, FilterPolicy
from haystack.utils import Secret
from haystack_integrations.components.converters.mmembed import PDFToPageImageDocuments
from haystack_integrations.components.embedders.mmembed import (
    MMEmbedDocumentImageEmbedder,
    MMEmbedTextEmbedder,
)
from haystack_integrations.components.rankers.mmembed import MMEmbedMaxSimRanker
from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever
from haystack_integrations.document_stores.mmembed import InvalidDocumentError, MMEmbedDocumentStore
from PIL import Image

import mmembed
from mmembed.index import IndexNotFoundError, page_id
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.scoring import maxsim
from mmembed.types import EncoderInfo

DPI = 36  # small renders keep the tiny model fast; the plumbing is the same at any dpi
QUESTION = "How much solar capacity was installed in 2023?"
PROMPT = """
{% message role="user" %}
{{ question }}
{% for image in images if image %}{{ image | templatize_part }}{% endfor %}
{% endmessage %}
"""


@component
class RecordingChatGenerator:
    """Mock chat model: replies with what it was shown and keeps the messages."""

    def __init__(self, reply_prefix: str = "seen") -> None:
        self.reply_prefix = reply_prefix
        self.received: list[list[ChatMessage]] = []

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, reply_prefix=self.reply_prefix)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecordingChatGenerator:
        return default_from_dict(cls, data)

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage]) -> dict[str, list[ChatMessage]]:
        self.received.append(messages)
        images = [i for m in messages for i in m.images]
        return {"replies": [ChatMessage.from_assistant(f"{self.reply_prefix} {len(images)} page image(s)")]}


@pytest.fixture(scope="module")
def model(tiny_colqwen2_5: Path) -> str:
    return str(tiny_colqwen2_5)


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pdfs")
    paths = write_sample_pdfs(folder)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a PDF")
    return paths


def indexing_pipeline(store: MMEmbedDocumentStore, model: str) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("converter", PDFToPageImageDocuments(dpi=DPI))
    pipeline.add_component("embedder", MMEmbedDocumentImageEmbedder(model=model, dpi=DPI, batch_size=4))
    pipeline.add_component("writer", DocumentWriter(document_store=store, policy=DuplicatePolicy.OVERWRITE))
    pipeline.connect("converter.documents", "embedder.documents")
    pipeline.connect("embedder.documents", "writer.documents")
    return pipeline


def query_pipeline(store: MMEmbedDocumentStore, model: str) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("query_embedder", MMEmbedTextEmbedder(model=model))
    pipeline.add_component("retriever", MMEmbedRetriever(document_store=store, top_k=6))
    pipeline.add_component("ranker", MMEmbedMaxSimRanker(model=model, document_store=store, top_k=3))
    pipeline.add_component("page_images", DocumentToImageContent(size=(128, 128)))
    pipeline.add_component(
        "prompt", ChatPromptBuilder(template=PROMPT, required_variables=["question", "images"])
    )
    pipeline.add_component("llm", RecordingChatGenerator())
    pipeline.connect("query_embedder.multi_embedding", "retriever.query_multi_embedding")
    pipeline.connect("retriever.documents", "ranker.documents")
    pipeline.connect("ranker.documents", "page_images.documents")
    pipeline.connect("page_images.image_contents", "prompt.images")
    pipeline.connect("prompt.prompt", "llm.messages")
    return pipeline


def ask(pipeline: Pipeline) -> dict[str, Any]:
    return pipeline.run(
        {
            "query_embedder": {"text": QUESTION},
            "ranker": {"query": QUESTION},
            "prompt": {"question": QUESTION},
        },
        include_outputs_from={"retriever", "ranker"},
    )


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, model: str, pdfs: list[Path]) -> dict[str, Any]:
    store = MMEmbedDocumentStore(path=str(tmp_path_factory.mktemp("store") / "index"))
    pipeline = indexing_pipeline(store, model)
    result = pipeline.run({"converter": {"sources": [pdfs[0].parent]}}, include_outputs_from={"converter"})
    return {"store": store, "result": result, "pipeline": pipeline}


def test_indexing_pipeline_stores_every_page_and_reports_bad_files(
    indexed: dict[str, Any], pdfs: list[Path]
) -> None:
    store: MMEmbedDocumentStore = indexed["store"]
    result = indexed["result"]
    assert result["writer"]["documents_written"] == 9 == store.count_documents()
    (issue,) = result["converter"]["issues"]
    assert issue["source"].endswith("broken.pdf") and "broken.pdf" in issue["message"]
    index = store.core_index()
    assert index is not None and index.encoder.kind == "multi"
    for doc in store.filter_documents():
        assert doc.id == page_id(doc.meta["content_hash"], doc.meta["page_number"])
        assert Path(doc.meta["file_path"]) in pdfs and doc.meta["page_count"] == 3
        assert doc.content is None and doc.embedding is not None and len(doc.embedding) == index.encoder.dim
        (record,) = index.get([doc.id])
        assert record is not None and record.n_vectors > 1 and record.source == doc.meta["file_path"]


def test_query_pipeline_end_to_end_and_after_dumps_loads(indexed: dict[str, Any], model: str) -> None:
    store: MMEmbedDocumentStore = indexed["store"]
    pipeline = query_pipeline(store, model)
    first = ask(pipeline)

    retrieved, ranked = first["retriever"]["documents"], first["ranker"]["documents"]
    assert len(retrieved) == 6 and len(ranked) == 3
    assert [d.score for d in ranked] == sorted((d.score for d in ranked), reverse=True)
    assert {d.id for d in ranked} <= {d.id for d in retrieved}
    ranker = pipeline.get_component("ranker")
    assert isinstance(ranker, MMEmbedMaxSimRanker)
    assert (ranker.pages_reused, ranker.pages_encoded) == (6, 0)  # stored vectors, no re-encoding
    # the ranker scores with the same stored vectors as the retriever: same scores
    by_id = {d.id: d.score for d in retrieved}
    assert all(d.score == pytest.approx(by_id[d.id], rel=1e-5) for d in ranked)
    # the chat model received the ranked pages as images, in rank order
    llm = pipeline.get_component("llm")
    assert isinstance(llm, RecordingChatGenerator)
    (messages,) = llm.received
    images: list[ImageContent] = [i for m in messages for i in m.images]
    assert [(i.meta["file_path"], i.meta["page_number"]) for i in images] == [
        (d.meta["file_path"], d.meta["page_number"]) for d in ranked
    ]
    assert first["llm"]["replies"][0].text == "seen 3 page image(s)"

    yaml = pipeline.dumps()
    loaded = Pipeline.loads(yaml, allowed_modules=[RecordingChatGenerator.__module__])
    before, after = pipeline.to_dict(), loaded.to_dict()
    assert after["components"] == before["components"]
    as_set = lambda d: {(c["sender"], c["receiver"]) for c in d["connections"]}  # noqa: E731
    assert as_set(after) == as_set(before)  # Haystack may list connections in another order
    second = ask(loaded)
    for stage in ("retriever", "ranker"):
        assert [(d.id, d.score) for d in second[stage]["documents"]] == [
            (d.id, d.score) for d in first[stage]["documents"]
        ]
    assert second["llm"]["replies"][0].text == first["llm"]["replies"][0].text


def test_explain_puts_core_s_overlay_in_the_meta(indexed: dict[str, Any], model: str) -> None:
    from mmembed.retrieve import SIMILARITY_MAP_KEY, Retriever

    store: MMEmbedDocumentStore = indexed["store"]
    pipeline = Pipeline()
    pipeline.add_component("query_embedder", MMEmbedTextEmbedder(model=model))
    pipeline.add_component("retriever", MMEmbedRetriever(document_store=store, top_k=2, explain=True))
    pipeline.connect("query_embedder.multi_embedding", "retriever.query_multi_embedding")
    documents = pipeline.run({"query_embedder": {"text": QUESTION}, "retriever": {"query": QUESTION}})[
        "retriever"
    ]["documents"]
    index = store.core_index()
    assert index is not None and len(documents) == 2
    core = Retriever(index, mmembed.load_encoder(model))
    for document, record in zip(documents, index.get([d.id for d in documents]), strict=True):
        assert record is not None
        explained = document.meta[SIMILARITY_MAP_KEY]
        assert explained == core.explain_metadata(QUESTION, record)  # core does the work
        # The embedder recorded each page's patch layout: explained from the stored vectors.
        assert explained["vectors_from"] == "stored"
        assert Image.open(io.BytesIO(base64.b64decode(explained["png_base64"]))).format == "PNG"
    with pytest.raises(ValueError, match="explain=True needs the query's text"):
        MMEmbedRetriever(document_store=store, explain=True).run(
            query_multi_embedding=[[1.0] * index.encoder.dim]
        )


def test_indexing_pipeline_after_dumps_loads_stores_the_same_vectors(
    indexed: dict[str, Any], pdfs: list[Path], tmp_path: Path
) -> None:
    yaml = indexed["pipeline"].dumps()
    loaded = Pipeline.loads(yaml.replace(indexed["store"].path, str(tmp_path / "again")))
    written = loaded.run({"converter": {"sources": [pdfs[0]]}})["writer"]["documents_written"]
    assert written == 3
    again = MMEmbedDocumentStore(path=str(tmp_path / "again"))
    ids = [d.id for d in again.filter_documents()]
    original, reloaded = indexed["store"].core_index(), again.core_index()
    assert original is not None and reloaded is not None
    for a, b in zip(original.get_embeddings(ids), reloaded.get_embeddings(ids), strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: PDFToPageImageDocuments(
            dpi=72,
            include_image=True,
            image_format="png",
            page_range="1-2",
            password=Secret.from_env_var("PDF_PW"),
        ),
        lambda s: MMEmbedDocumentImageEmbedder(
            model="some/model",
            revision="abc",
            device="cpu",
            dtype="float32",
            batch_size=2,
            dpi=96,
            progress_bar=True,
        ),
        lambda s: MMEmbedTextEmbedder(model="some/model", revision="abc", device="cpu", dtype="bfloat16"),
        lambda s: MMEmbedRetriever(
            document_store=s,
            filters={"field": "meta.year", "operator": ">=", "value": 2020},
            top_k=4,
            filter_policy=FilterPolicy.MERGE,
            return_embedding=True,
        ),
        lambda s: MMEmbedMaxSimRanker(
            model="some/model",
            document_store=s,
            top_k=2,
            score_threshold=0.5,
            dpi=96,
            batch_size=4,
            device="cpu",
        ),
        lambda s: MMEmbedMaxSimRanker(model="some/model"),
        lambda s: MMEmbedMaxSimRanker(model="some/model", model_kwargs={"max_pixels": 200_704}),
        lambda s: s,
    ],
)
def test_every_component_round_trips_through_to_dict(make: Any, tmp_path: Path) -> None:
    original = make(MMEmbedDocumentStore(path=str(tmp_path / "idx"), dtype="float32"))
    data = original.to_dict()
    assert data["type"].startswith("haystack_integrations.")  # importable by Pipeline.loads
    restored = type(original).from_dict(data)
    assert type(restored) is type(original)
    assert restored.to_dict() == data
    assert not (tmp_path / "idx").exists()  # light __init__: nothing opened or loaded


async def test_retriever_run_async_matches_run_and_applies_filters(
    indexed: dict[str, Any], model: str
) -> None:
    store: MMEmbedDocumentStore = indexed["store"]
    query = MMEmbedTextEmbedder(model=model).run(text=QUESTION)["multi_embedding"]
    solar = store.filter_documents()[0].meta["file_path"]
    retriever = MMEmbedRetriever(
        document_store=store, filters={"field": "meta.file_path", "operator": "==", "value": solar}, top_k=5
    )
    sync = retriever.run(query_multi_embedding=query)["documents"]
    asynchronous = (await retriever.run_async(query_multi_embedding=query))["documents"]
    assert [(d.id, d.score) for d in sync] == [(d.id, d.score) for d in asynchronous]
    assert len(sync) == 3 and {d.meta["file_path"] for d in sync} == {solar}  # pre-filter: only 3 match
    # runtime filters replace the init ones (FilterPolicy.REPLACE)
    other = retriever.run(
        query_multi_embedding=query,
        filters={"field": "meta.page_number", "operator": "==", "value": 2},
        top_k=9,
    )["documents"]
    assert len(other) == 3 and {d.meta["page_number"] for d in other} == {2}
    with pytest.raises(ValueError, match="multi_embedding"):
        retriever.run(query_embedding=MMEmbedTextEmbedder(model=model).run(text=QUESTION)["embedding"])


def test_retriever_on_a_dense_store_takes_a_flat_query_embedding(tmp_path: Path) -> None:
    mmembed.open_index(
        tmp_path / "dense", encoder=EncoderInfo("dense-4", "external", "single", 4, "dot")
    ).close()
    store = MMEmbedDocumentStore(path=str(tmp_path / "dense"))
    store.write_documents(
        [
            Document(id=str(i), content=f"doc {i}", embedding=[float(i == j) for j in range(4)])
            for i in range(4)
        ]
    )
    retriever = MMEmbedRetriever(document_store=store, top_k=2, return_embedding=True)
    top = retriever.run(query_embedding=[0.0, 0.0, 3.0, 1.0])["documents"]
    assert [(d.id, d.score) for d in top] == [("2", pytest.approx(3.0)), ("3", pytest.approx(1.0))]
    assert top[0].embedding == [0.0, 0.0, 1.0, 0.0] and top[0].content == "doc 2"
    with pytest.raises(IndexNotFoundError, match="none"):  # a mistyped path is not an empty store
        MMEmbedRetriever(document_store=MMEmbedDocumentStore(path=str(tmp_path / "none"))).run(
            query_embedding=[1.0, 0, 0, 0]
        )


def test_ranker_without_store_encodes_once_and_never_mutates_input(model: str, pdfs: list[Path]) -> None:
    pages = PDFToPageImageDocuments(dpi=DPI, page_range="1").run(
        sources=list[str | Path | ByteStream](pdfs[:2])
    )["documents"]
    given = [Document.from_dict(d.to_dict()) for d in pages]
    ranker = MMEmbedMaxSimRanker(model=model, top_k=5, dpi=DPI)
    first = ranker.run(query=QUESTION, documents=given)["documents"]
    assert ranker.pages_encoded == 2
    again = ranker.run(query=QUESTION, documents=given)["documents"]
    assert ranker.pages_encoded == 2  # cached in memory
    assert [(d.id, d.score) for d in again] == [(d.id, d.score) for d in first]
    assert given == pages and all(d.score is None for d in given)  # inputs untouched
    assert all(a is not b for a in first for b in given)
    best = first[0].score
    assert best is not None
    assert ranker.run(query=QUESTION, documents=given, top_k=1)["documents"] == first[:1]
    assert ranker.run(query=QUESTION, documents=given, score_threshold=best + 1)["documents"] == []
    with pytest.raises(InvalidDocumentError, match="file_path"):
        MMEmbedMaxSimRanker(model=model).run(query=QUESTION, documents=[Document(content="text only")])


def test_converter_outputs(pdfs: list[Path]) -> None:
    converter = PDFToPageImageDocuments(dpi=DPI, include_image=True, image_format="png", page_range="2-3")
    result = converter.run(sources=[pdfs[0], pdfs[1]], meta=[{"lang": "en"}, {"lang": "it"}])
    docs = result["documents"]
    assert [(Path(d.meta["file_path"]).name, d.meta["page_number"], d.meta["lang"]) for d in docs] == [
        (pdfs[0].name, 2, "en"),
        (pdfs[0].name, 3, "en"),
        (pdfs[1].name, 2, "it"),
        (pdfs[1].name, 3, "it"),
    ]
    assert result["issues"] == []
    blob = docs[0].blob
    assert blob is not None and blob.mime_type == "image/png"
    assert Image.open(io.BytesIO(blob.data)).size == mmembed.render_page(pdfs[0], 2, dpi=DPI).size
    # a ByteStream has no file to render from later: its page images always travel along
    from_bytes = PDFToPageImageDocuments(dpi=DPI).run(
        sources=[ByteStream(pdfs[2].read_bytes(), meta={"file_path": "upload.pdf", "owner": "me"})]
    )["documents"]
    assert len(from_bytes) == 3 and all(
        d.blob is not None and d.blob.mime_type == "image/jpeg" for d in from_bytes
    )
    assert from_bytes[0].meta["owner"] == "me" and from_bytes[0].meta["file_path"] == "upload.pdf"


def test_embedders_embed_blobs_and_refuse_what_they_cannot_embed(model: str, pdfs: list[Path]) -> None:
    page = PDFToPageImageDocuments(dpi=DPI, include_image=True, page_range="1").run(sources=[pdfs[0]])[
        "documents"
    ]
    without_file = Document(id=page[0].id, blob=page[0].blob)  # only the image
    embedder = MMEmbedDocumentImageEmbedder(model=model)
    (embedded,) = embedder.run(documents=[without_file])["documents"]
    assert embedded.id == without_file.id and embedded.embedding is not None
    assert without_file.embedding is None and "_mmembed_embedding" not in without_file.meta
    with pytest.raises(InvalidDocumentError, match="file_path"):
        embedder.run(documents=[Document(content="no image")])
    with pytest.raises(TypeError, match="MMEmbedTextEmbedder"):
        embedder.run(documents="a query")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MMEmbedDocumentImageEmbedder"):
        MMEmbedTextEmbedder(model=model).run(text=["a", "b"])  # type: ignore[arg-type]


def test_components_share_one_model(model: str) -> None:
    text, pages = MMEmbedTextEmbedder(model=model), MMEmbedDocumentImageEmbedder(model=model)
    ranker = MMEmbedMaxSimRanker(model=model)
    for c in (text, pages, ranker):
        c.warm_up()
    assert text._encoder is pages._encoder is ranker._encoder


def test_ranker_model_kwargs_reach_the_encoder_and_survive_dumps_loads(model: str, pdfs: list[Path]) -> None:
    plain = mmembed.load_encoder(model)
    max_pixels = 4 * int(plain.image_processor.size["shortest_edge"])  # type: ignore[attr-defined]
    pipeline = Pipeline()
    pipeline.add_component(
        "ranker", MMEmbedMaxSimRanker(model=model, dpi=DPI, model_kwargs={"max_pixels": max_pixels})
    )
    loaded = Pipeline.loads(pipeline.dumps())
    ranker = loaded.get_component("ranker")
    assert isinstance(ranker, MMEmbedMaxSimRanker) and ranker.model_kwargs == {"max_pixels": max_pixels}
    ranker.warm_up()
    encoder = ranker._encoder
    assert encoder is mmembed.load_encoder(model, max_pixels=max_pixels) and encoder is not plain
    assert encoder.image_processor.size["longest_edge"] == max_pixels  # type: ignore[union-attr]
    pages = PDFToPageImageDocuments(dpi=DPI, page_range="1").run(sources=[pdfs[0]])["documents"]
    (ranked,) = ranker.run(query=QUESTION, documents=pages)["documents"]
    image = mmembed.render_page(pdfs[0], 1, dpi=DPI)
    expected = maxsim(encoder.encode_queries([QUESTION]), encoder.encode_images([image]))  # (1, 1)
    assert ranked.score == pytest.approx(float(expected[0, 0]), abs=1e-4)


def test_text_documents_are_embedded_on_the_document_side_and_retrieved(model: str, tmp_path: Path) -> None:
    from haystack_integrations.components.embedders.mmembed import MMEmbedDocumentTextEmbedder
    from haystack_integrations.document_stores.mmembed.documents import read_attached_embedding

    texts = ["Solar capacity grew in 2023.", "Wind farms in the North Sea.", "A recipe for bread."]
    inputs = [Document(content=t, meta={"topic": i}) for i, t in enumerate(texts)]
    embedder = MMEmbedDocumentTextEmbedder(model=model, batch_size=2)
    assert type(embedder).from_dict(embedder.to_dict()).to_dict() == embedder.to_dict()
    embedder.warm_up()
    documents = embedder.run(documents=inputs)["documents"]
    assert [d.id for d in documents] == [d.id for d in inputs] and inputs[0].embedding is None
    # The core's document side (the document prompt, not the query's), vector for vector.
    expected = embedder._encoder.encode_text_documents(texts)
    queries_side = embedder._encoder.encode_queries(texts)
    for d, e, q in zip(documents, expected, queries_side, strict=True):
        attached = read_attached_embedding(d)
        assert attached is not None
        torch.testing.assert_close(attached[0], e.float())
        assert e.shape != q.shape or not torch.equal(e, q)
    store = MMEmbedDocumentStore(path=str(tmp_path / "index"))
    assert store.write_documents(documents) == 3
    query = MMEmbedTextEmbedder(model=model).run(text=QUESTION)
    hits = MMEmbedRetriever(document_store=store, top_k=3).run(
        query_multi_embedding=query["multi_embedding"]
    )["documents"]
    scores = maxsim([torch.tensor(query["multi_embedding"])], expected)[0]  # (3,) exact MaxSim
    assert [h.content for h in hits] == [texts[i] for i in scores.argsort(descending=True).tolist()]
    # the store keeps float16 vectors
    torch.testing.assert_close(
        torch.tensor([h.score for h in hits]), scores.sort(descending=True).values, rtol=1e-3, atol=1e-3
    )
    with pytest.raises(InvalidDocumentError, match="no text content"):
        embedder.run(documents=[Document(content="  ")])
    with pytest.raises(TypeError, match="MMEmbedTextEmbedder"):
        embedder.run(documents="a query")  # type: ignore[arg-type]
    assert embedder.run(documents=[])["documents"] == []


def test_image_embedder_runs_the_processor_once_per_page(tiny_colqwen2_5: Path) -> None:
    """The patch layouts come off the encode batch's own processor output (as in core)."""
    from haystack_integrations.document_stores.mmembed.documents import EMBEDDING_META_KEY

    from mmembed.explain import recorded_layout
    from mmembed_testing.counting import counting_copy

    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    docs, expected = [], []
    for n, size in enumerate([(448, 448), (336, 560), (280, 224)]):  # different grids in one batch
        image = Image.new("RGB", size, (40 * n, 90, 200))
        png = io.BytesIO()
        image.save(png, format="PNG")
        docs.append(Document(id=f"p{n}", blob=ByteStream(data=png.getvalue(), mime_type="image/png")))
        expected.append(recorded_layout(encoder, image, encoder.encode_images([image])[0]))
    embedder = MMEmbedDocumentImageEmbedder(model=str(tiny_colqwen2_5), batch_size=3)
    embedder.warm_up()
    embedder._encoder, counting = counting_copy(embedder._encoder)
    embedded = embedder.run(docs)["documents"]
    assert counting.images == len(docs)
    assert [d.meta[EMBEDDING_META_KEY]["patch_layout"] for d in embedded] == expected
    assert all(layout is not None for layout in expected)
