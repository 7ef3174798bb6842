"""The Haystack store over an index built by the ``mmembed`` CLI (pages it did not write):
filters on a page's own fields behave as on Haystack's in-memory semantics, and a missing
index is reported instead of read as empty."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from haystack import Document
from haystack.utils.filters import document_matches_filter
from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

from mmembed.cli import main
from mmembed.index import IndexNotFoundError
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.types import EncoderInfo, EncoderMismatchError


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path) -> Path:
    docs = tmp_path_factory.mktemp("cli_docs")
    write_sample_pdfs(docs)
    index = tmp_path_factory.mktemp("cli_index") / "index"
    code = main(
        ["index", str(docs), "--index", str(index), "--model", str(tiny_colqwen2_5), "-q", "--dpi", "24"]
    )
    assert code == 0
    return index


@pytest.fixture
def store(cli_index: Path, tmp_path: Path) -> MMEmbedDocumentStore:
    """A store over a private copy of the CLI-built index, plus two documents Haystack wrote itself."""
    target = tmp_path / "index"
    shutil.copytree(cli_index, target)
    store = MMEmbedDocumentStore(path=str(target))
    first = store.filter_documents()[0]
    store.write_documents(
        [
            Document(
                id="hs-1", content="note", meta={"file_path": first.meta["file_path"], "page_number": 2}
            ),
            Document(id="hs-2", content="other", meta={"file_path": "elsewhere.pdf", "page_number": 9}),
        ]
    )
    return store


def _filters(one: Document) -> list[dict[str, Any]]:
    path, page, digest = one.meta["file_path"], one.meta["page_number"], one.meta["content_hash"]
    return [
        {"field": "meta.file_path", "operator": "==", "value": path},
        {"field": "meta.file_path", "operator": "!=", "value": path},
        {"field": "meta.file_path", "operator": "in", "value": [path, "elsewhere.pdf", 3]},
        {"field": "meta.file_path", "operator": "not in", "value": [path]},
        {"field": "meta.page_number", "operator": "==", "value": page},
        {"field": "meta.page_number", "operator": "==", "value": str(page)},  # type-strict: no match
        {"field": "meta.page_number", "operator": ">", "value": 1},
        {"field": "meta.page_number", "operator": "<=", "value": 2.5},
        {"field": "meta.page_number", "operator": "==", "value": None},
        {"field": "meta.content_hash", "operator": "==", "value": digest},
        {"operator": "NOT", "conditions": [{"field": "meta.file_path", "operator": "==", "value": path}]},
        {
            "operator": "AND",
            "conditions": [
                {"field": "meta.file_path", "operator": "==", "value": path},
                {
                    "operator": "NOT",
                    "conditions": [{"field": "meta.page_number", "operator": ">=", "value": 2}],
                },
            ],
        },
    ]


def test_page_field_filters_match_haystack_semantics_on_a_cli_built_index(
    store: MMEmbedDocumentStore,
) -> None:
    everything = store.filter_documents()
    assert len(everything) >= 8
    cli_page = next(d for d in everything if d.id not in ("hs-1", "hs-2"))
    for filters in _filters(cli_page):
        expected = [d.id for d in everything if document_matches_filter(filters, d)]
        assert [d.id for d in store.filter_documents(filters)] == expected, filters
        assert store.count_documents_by_filter(filters) == len(expected), filters
    # the equality filter really selects: not nothing and not everything
    by_path = store.filter_documents(_filters(cli_page)[0])
    assert cli_page.id in [d.id for d in by_path] and "hs-1" in [d.id for d in by_path]
    assert len(by_path) < len(everything)


def test_retriever_filters_on_page_fields(store: MMEmbedDocumentStore, tiny_colqwen2_5: Path) -> None:
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder

    embedder = MMEmbedTextEmbedder(model=str(tiny_colqwen2_5))
    embedder.warm_up()
    query = embedder.run(text="solar panels")["multi_embedding"]
    cli_page = next(d for d in store.filter_documents() if d.id not in ("hs-1", "hs-2"))
    filters = {"field": "meta.file_path", "operator": "==", "value": cli_page.meta["file_path"]}
    found = MMEmbedRetriever(document_store=store, top_k=50).run(query_multi_embedding=query, filters=filters)
    ids = {d.id for d in found["documents"]}
    expected = {d.id for d in store.filter_documents(filters) if d.id != "hs-1"}  # hs-1 has no vectors
    assert ids == expected and ids


def test_reading_a_missing_store_says_so(tmp_path: Path) -> None:
    missing = MMEmbedDocumentStore(path=str(tmp_path / "typo"))
    for read in (
        missing.count_documents,
        missing.filter_documents,
        lambda: missing.count_documents_by_filter({"field": "id", "operator": "==", "value": "x"}),
        lambda: MMEmbedRetriever(document_store=missing).run(query_embedding=[0.1, 0.2]),
    ):
        with pytest.raises(IndexNotFoundError, match="typo"):
            read()
    assert not (tmp_path / "typo").exists()  # reading creates nothing


def test_retriever_refuses_a_query_from_another_model(
    store: MMEmbedDocumentStore, tiny_colqwen2_5: Path
) -> None:
    index = store.index_for_reading()
    other = {**index.encoder.to_dict(), "name": "some-other-model", "kind": "single"}
    retriever = MMEmbedRetriever(document_store=store)
    dim = index.encoder.dim
    with pytest.raises(EncoderMismatchError, match="some-other-model"):
        retriever.run(query_multi_embedding=[[0.1] * dim], query_encoder=other)
    # the same model's description passes
    found = retriever.run(
        query_multi_embedding=[[0.1] * dim, [0.2] * dim], query_encoder=index.encoder.to_dict()
    )
    assert found["documents"]


def test_retriever_refuses_a_multi_vector_query_on_a_dense_store(tmp_path: Path) -> None:
    dense = EncoderInfo(name="dense-4", family="external", kind="single", dim=4, similarity="dot")
    store = MMEmbedDocumentStore(path=str(tmp_path / "dense"), encoder=dense, dtype="float32")
    store.write_documents([Document(id="a", content="a", embedding=[1.0, 0.0, 0.0, 0.0])])
    with pytest.raises(EncoderMismatchError, match="2 vectors"):
        MMEmbedRetriever(document_store=store).run(query_multi_embedding=[[1.0, 0, 0, 0], [0, 1.0, 0, 0]])


def test_converter_takes_one_path_and_typed_bytestreams(tmp_path: Path) -> None:
    from haystack.dataclasses import ByteStream
    from haystack_integrations.components.converters.mmembed import PDFToPageImageDocuments

    (pdf,) = [p for p in write_sample_pdfs(tmp_path)][:1]
    converter = PDFToPageImageDocuments(dpi=18)
    single = converter.run(sources=str(pdf))
    assert [d.meta["page_number"] for d in single["documents"]] == [1, 2, 3] and not single["issues"]
    assert len(converter.run(sources=pdf)["documents"]) == 3
    typed = ByteStream(data=pdf.read_bytes(), mime_type="application/pdf")
    result = converter.run(sources=[typed])
    assert len(result["documents"]) == 3 and not result["issues"]
    named = ByteStream(data=pdf.read_bytes(), mime_type="application/pdf", meta={"file_path": "report"})
    assert converter.run(sources=named)["documents"][0].meta["file_path"] == "report.pdf"
