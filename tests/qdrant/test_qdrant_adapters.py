"""The framework adapters take a ``qdrant://`` URI exactly like a folder: the same pages,
scores and reranking (on stored vectors) as the embedded index they were migrated from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from llama_index.retrievers.mmembed import MMEmbedRetriever as LIRetriever

import mmembed
from langchain_mmembed import MMEmbedMaxSimReranker
from langchain_mmembed import MMEmbedRetriever as LCRetriever
from mmembed.cli import main
from mmembed.loaders.sample_pdfs import write_sample_pdfs

QUERY = "quarterly revenue table"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path) -> str:
    root = tmp_path_factory.mktemp("qdrant_adapters")
    pdfs = write_sample_pdfs(root / "pdfs")
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    with mmembed.open_index(root / "local", encoder.info) as index:
        assert mmembed.index_documents(pdfs, index, encoder, dpi=24, progress=False).ok
    return str(root / "local")


@pytest.fixture(params=["local-mode", pytest.param("server", marks=pytest.mark.qdrant_server)])
def indexes(request: pytest.FixtureRequest, folder: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The embedded index, and a copy migrated into Qdrant: local mode, or the server at
    ``QDRANT_URL`` (``-m qdrant_server``)."""
    if request.param == "server":
        uri = request.getfixturevalue("server_collection")()
    else:
        uri = f"qdrant://{tmp_path}/store/pages"
    assert main(["migrate", "--from", folder, "--to", uri]) == 0
    yield folder, uri


def test_langchain_retriever_and_reranker_on_a_qdrant_uri(indexes: tuple[str, str]) -> None:
    folder, uri = indexes
    expected = LCRetriever(index=folder, k=3, image="none").invoke(QUERY)
    on_qdrant = LCRetriever(index=uri, k=3, image="none")  # model read from the collection
    got = on_qdrant.invoke(QUERY)
    assert [d.id for d in got] == [d.id for d in expected]
    assert [d.metadata["score"] for d in got] == pytest.approx(
        [d.metadata["score"] for d in expected], rel=1e-3, abs=1e-3
    )
    on_qdrant.close()

    docs = [Document(id=d.id, page_content="") for d in expected]
    reranker = MMEmbedMaxSimReranker(index=uri, top_n=2)
    ranked = reranker.compress_documents(docs, QUERY)
    assert reranker.pages_encoded == 0 and reranker.pages_reused == len(docs)  # stored vectors
    local = MMEmbedMaxSimReranker(index=folder, top_n=2).compress_documents(docs, QUERY)
    assert [d.id for d in ranked] == [d.id for d in local]


def test_llamaindex_retriever_on_a_qdrant_uri(indexes: tuple[str, str]) -> None:
    folder, uri = indexes
    expected = LIRetriever(folder, similarity_top_k=3, image_mode="none").retrieve(QUERY)
    on_qdrant = LIRetriever(uri, similarity_top_k=3, image_mode="none")
    got = on_qdrant.retrieve(QUERY)
    assert [r.node.node_id for r in got] == [r.node.node_id for r in expected]
    assert [r.score for r in got] == pytest.approx([r.score for r in expected], rel=1e-3, abs=1e-3)
    on_qdrant.close()


def test_haystack_document_store_on_a_qdrant_uri(indexes: tuple[str, str]) -> None:
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

    folder, uri = indexes
    local, remote = MMEmbedDocumentStore(path=folder), MMEmbedDocumentStore(path=uri)
    assert remote.count_documents() == local.count_documents() > 0
    source = local.filter_documents()[0].meta["file_path"]
    flt = {"field": "meta.file_path", "operator": "==", "value": source}
    assert {d.id for d in remote.filter_documents(flt)} == {d.id for d in local.filter_documents(flt)}
    assert MMEmbedDocumentStore.from_dict(remote.to_dict()).count_documents() == remote.count_documents()
