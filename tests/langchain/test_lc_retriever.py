"""MMEmbedRetriever: index pages as Documents, k and filters, images, async, indexing Documents."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from langchain_mmembed import MMEmbedRetriever, PDFPageImageLoader

DPI = 24
QUERY = "solar panel efficiency"


def test_documents_carry_page_identity_score_and_thumbnail(built_index: Path) -> None:
    import mmembed

    retriever = MMEmbedRetriever(index=str(built_index), k=3)  # model read from the index
    docs = retriever.invoke(QUERY)

    assert len(docs) == 3
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    index = retriever.vector_index
    query = retriever.encoder.encode_queries([QUERY])
    stored = index.get_embeddings([d.id for d in docs])  # type: ignore[misc]
    exact = mmembed.score(query, stored, index.encoder.similarity)[0]  # (3,)
    for doc, expected in zip(docs, exact.tolist(), strict=True):
        meta = doc.metadata
        assert doc.id == meta["id"]
        record = index.get([doc.id])[0]  # type: ignore[list-item]
        assert record is not None
        assert (meta["source"], meta["page"], meta["content_hash"]) == (
            record.source,
            record.page,
            record.content_hash,
        )
        assert meta["total_pages"] >= meta["page"] >= 1
        assert meta["score"] == pytest.approx(expected, rel=1e-4, abs=1e-4)  # exact MaxSim
        assert doc.page_content == ""
        assert meta["image_mime_type"] == "image/jpeg"
        assert base64.b64decode(meta["image_base64"]) == record.thumbnail
    retriever.close()


def test_k_and_filter_in_constructor_and_invoke(built_index: Path, sample_pdfs: list[Path]) -> None:
    source = str(sample_pdfs[1].resolve())
    retriever = MMEmbedRetriever(index=built_index, k=2, filter={"source": source})
    docs = retriever.invoke(QUERY)
    assert len(docs) == 2 and {d.metadata["source"] for d in docs} == {source}

    docs = retriever.invoke(QUERY, k=1, filter={"page": {"$in": [2]}})
    assert len(docs) == 1 and docs[0].metadata["page"] == 2

    everything = retriever.invoke(QUERY, k=100, filter={"page": {"$gte": 1}})
    assert len(everything) == retriever.vector_index.count()
    with pytest.raises(ValueError, match="k must be"):
        retriever.invoke(QUERY, k=0)


async def test_async_invoke(built_index: Path) -> None:
    retriever = MMEmbedRetriever(index=built_index, k=2)
    sync_docs = retriever.invoke(QUERY, k=3)
    async_docs = await retriever.ainvoke(QUERY, k=3)
    assert [d.id for d in async_docs] == [d.id for d in sync_docs]
    assert len(await retriever.ainvoke(QUERY)) == 2


def test_full_page_and_no_image(built_index: Path) -> None:
    import mmembed

    full = MMEmbedRetriever(index=built_index, k=1, image="page", dpi=DPI).invoke(QUERY)[0]
    img = Image.open(io.BytesIO(base64.b64decode(full.metadata["image_base64"])))
    assert img.size == mmembed.render_page(full.metadata["source"], full.metadata["page"], dpi=DPI).size
    bare = MMEmbedRetriever(index=built_index, k=1, image="none").invoke(QUERY)[0]
    assert "image_base64" not in bare.metadata and "image_path" not in bare.metadata


class _RecordingBackend:
    """Any object implementing the index protocol works; this one forwards and records calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def encoder(self) -> Any:
        return self.inner.encoder

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)

        return recorded


def test_open_index_object_of_any_backend(built_index: Path) -> None:
    import mmembed

    index = mmembed.open_index(built_index, readonly=True)
    backend = _RecordingBackend(index)
    retriever = MMEmbedRetriever(index=backend, k=2)
    docs = retriever.invoke(QUERY)
    assert len(docs) == 2 and "search" in backend.calls
    retriever.close()  # not ours to close
    assert index.count() > 0
    index.close()
    with pytest.raises(TypeError, match="folder path or an open mmembed index"):
        MMEmbedRetriever(index=42)


def test_missing_index_is_an_actionable_error(tmp_path: Path, tiny_model: str) -> None:
    from mmembed.index import IndexNotFoundError

    with pytest.raises(ValueError, match="no index at"):
        MMEmbedRetriever(index=tmp_path / "nowhere")
    retriever = MMEmbedRetriever(index=tmp_path / "typo", model=tiny_model)
    with pytest.raises(IndexNotFoundError):
        retriever.invoke(QUERY)
    assert not (tmp_path / "typo").exists()  # searching never creates an index


def test_ranking_follows_the_stored_vectors(tmp_path: Path, tiny_model: str) -> None:
    """A page stored with exactly the query's own vectors must come first (real MaxSim at work)."""
    import mmembed

    encoder = mmembed.load_encoder(tiny_model)
    query = encoder.encode_queries([QUERY])[0]  # (tokens, dim)
    generator = torch.Generator().manual_seed(0)
    index = mmembed.open_index(tmp_path / "hand", encoder=encoder.info)
    pages = [
        mmembed.PageInput(
            embedding=torch.nn.functional.normalize(
                torch.randn(12, encoder.info.dim, generator=generator), dim=-1
            ),
            source=f"/docs/other{i}.pdf",
            page=1,
            content_hash=hashlib.sha256(f"other{i}".encode()).hexdigest(),
        )
        for i in range(5)
    ]
    target = mmembed.PageInput(
        embedding=query.clone(),
        source="/docs/target.pdf",
        page=3,
        content_hash=hashlib.sha256(b"target").hexdigest(),
        metadata={"year": 2024},
    )
    index.add([*pages, target])
    retriever = MMEmbedRetriever(index=index, k=3)
    top = retriever.invoke(QUERY)[0]
    assert (top.metadata["source"], top.metadata["page"], top.metadata["year"]) == (
        "/docs/target.pdf",
        3,
        2024,
    )
    assert top.id == target.resolved_id()
    without = retriever.invoke(QUERY, filter={"year": {"$exists": False}})
    assert target.resolved_id() not in {d.id for d in without}
    index.close()


def test_add_documents_from_the_loader_round_trips(tmp_path: Path, tiny_model: str) -> None:
    from reportlab.pdfgen import canvas

    import mmembed

    pdf = tmp_path / "memo.pdf"
    c = canvas.Canvas(str(pdf), pagesize=(300, 400))
    for text in ("hydrogen storage memo", "appendix with tables"):
        c.drawString(30, 300, text)
        c.showPage()
    c.save()
    docs = PDFPageImageLoader(pdf, dpi=DPI, extract_text=True, metadata={"team": "energy"}).load()

    retriever = MMEmbedRetriever.from_documents(docs, index=tmp_path / "new_index", model=tiny_model, k=5)
    assert retriever.vector_index.count() == 2
    found = {d.id: d for d in retriever.invoke("hydrogen")}
    assert set(found) == {d.id for d in docs}
    for doc in docs:
        got = found[doc.id]
        assert got.page_content == doc.page_content and "hydrogen" in found[docs[0].id].page_content
        assert got.metadata["team"] == "energy"
        assert (got.metadata["page"], got.metadata["total_pages"]) == (doc.metadata["page"], 2)
        assert got.metadata["content_hash"] == doc.metadata["content_hash"]
    # Stored vectors are the encoder's vectors of the loader's page images.
    image = Image.open(io.BytesIO(base64.b64decode(docs[0].metadata["image_base64"]))).convert("RGB")
    expected = mmembed.load_encoder(tiny_model).encode_images([image])[0]
    stored = retriever.vector_index.get_embeddings([docs[0].id])[0]
    assert stored is not None and stored.shape == expected.shape
    assert torch.allclose(stored.float(), expected, atol=2e-2)  # float16 storage
    # Upsert: adding the same pages again keeps one copy each.
    assert retriever.add_documents(docs) == [d.id for d in docs]
    assert retriever.vector_index.count() == 2
    retriever.close()


def test_explain_puts_core_s_overlay_in_the_metadata(built_index: Path, tiny_model: str) -> None:
    import mmembed
    from mmembed.retrieve import SIMILARITY_MAP_KEY, Retriever

    docs = MMEmbedRetriever(index=str(built_index), k=2, image="none", explain=True, dpi=DPI).invoke("solar")
    core = Retriever(mmembed.open_index(built_index, readonly=True), mmembed.load_encoder(tiny_model))
    for doc, hit in zip(docs, core.search("solar", k=2), strict=True):
        explained = doc.metadata[SIMILARITY_MAP_KEY]
        assert explained == core.explain_metadata("solar", hit, dpi=DPI)  # core does the work
        assert explained["vectors_from"] == "stored"  # the index recorded the patch layout
        overlay = Image.open(io.BytesIO(base64.b64decode(explained["png_base64"])))
        assert (
            overlay.format == "PNG"
            and overlay.size
            == mmembed.render_page(doc.metadata["source"], doc.metadata["page"], dpi=DPI).size
        )
        assert explained["rows"] > 1 and explained["cols"] > 1
    assert (
        SIMILARITY_MAP_KEY
        not in MMEmbedRetriever(index=str(built_index), k=1, image="none").invoke("solar")[0].metadata
    )


def test_pages_added_through_langchain_are_explained_from_stored_vectors(
    sample_pdfs: list[Path], tiny_model: str, tmp_path: Path
) -> None:
    from mmembed.retrieve import SIMILARITY_MAP_KEY

    pages = PDFPageImageLoader(str(sample_pdfs[0]), dpi=DPI).load()
    retriever = MMEmbedRetriever.from_documents(
        pages, index=str(tmp_path / "index"), model=tiny_model, k=1, image="none", explain=True, dpi=DPI
    )
    (doc,) = retriever.invoke("solar")
    assert doc.metadata[SIMILARITY_MAP_KEY]["vectors_from"] == "stored"
    assert not [k for k in doc.metadata if k.startswith("_mmembed_")]
    retriever.close()


def test_add_documents_runs_the_processor_once_per_page(tmp_path: Path, tiny_model: str) -> None:
    """The stored patch layouts come off the encode batch's own processor output (as in core)."""
    from langchain_core.documents import Document

    import mmembed
    from mmembed.explain import LAYOUT_KEY, recorded_layout
    from mmembed_testing.counting import counting_copy

    docs, expected = [], []
    encoder = mmembed.load_encoder(tiny_model)
    for n, size in enumerate([(448, 448), (336, 560), (280, 224)]):  # different grids in one batch
        path = tmp_path / f"page{n}.png"
        image = Image.new("RGB", size, (40 * n, 90, 200))
        image.save(path)
        docs.append(
            Document(page_content="", metadata={"image_path": str(path), "source": str(path), "page": 1})
        )
        expected.append(recorded_layout(encoder, image, encoder.encode_images([image])[0]))
    retriever = MMEmbedRetriever(index=str(tmp_path / "index"), model=tiny_model, batch_size=3)
    retriever._ensure_open(create=True)
    retriever._encoder, counting = counting_copy(retriever.encoder)
    ids = retriever.add_documents(docs, thumbnails=False)
    assert counting.images == len(docs)
    records = retriever.vector_index.get(ids)
    assert [r.metadata[LAYOUT_KEY] for r in records if r is not None] == expected
    assert all(layout is not None for layout in expected)
    retriever.close()
