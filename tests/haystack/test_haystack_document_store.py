"""MMEmbedDocumentStore against Haystack's own document-store test mix-ins, plus what they
do not cover: persistence of content/blob/meta, the multi-vector channel, placeholders
for documents without embedding, filter translation and serialisation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from haystack import Document
from haystack.dataclasses import ByteStream
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError
from haystack.testing.document_store import (
    CountDocumentsByFilterTest,
    DocumentStoreBaseExtendedTests,
)
from haystack.testing.document_store_async import (
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
)
from haystack_integrations.document_stores.mmembed import (
    EMBEDDING_META_KEY,
    InvalidDocumentError,
    MMEmbedDocumentStore,
)
from haystack_integrations.document_stores.mmembed.documents import attach_embedding

import mmembed
from mmembed.types import EncoderInfo, EncoderMismatchError

# Haystack's filterable test documents carry 768-d dense embeddings.
DENSE_768 = EncoderInfo(
    name="external-dense-768", family="external", kind="single", dim=768, similarity="cosine"
)
MULTI_8 = EncoderInfo(name="tiny-multi", family="test", kind="multi", dim=8, similarity="maxsim")


def _dense_store(folder: Path) -> MMEmbedDocumentStore:
    """A fresh store for embeddings computed outside mmembed: the documented way, ``encoder=``."""
    return MMEmbedDocumentStore(path=str(folder), encoder=DENSE_768, dtype="float32")


def _same_documents(received: list[Document], expected: list[Document]) -> None:
    """Equal, except that stored vectors are float32 (Haystack's are Python floats)."""
    assert [d.id for d in received] == [d.id for d in expected]
    for got, want in zip(received, expected, strict=True):
        assert (got.content, got.blob, got.meta, got.score) == (
            want.content,
            want.blob,
            want.meta,
            want.score,
        )
        if want.embedding is None:
            assert got.embedding is None
        else:
            assert got.embedding is not None
            assert torch.allclose(
                torch.tensor(got.embedding), torch.tensor(want.embedding), rtol=1e-6, atol=1e-7
            )


class TestMixins(
    DocumentStoreBaseExtendedTests,
    CountDocumentsByFilterTest,
    # the async methods run the sync ones in a worker thread: the async filter suite would
    # only repeat the sync one, so it is left out
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
):
    @pytest.fixture
    def document_store(self, tmp_path: Path) -> MMEmbedDocumentStore:
        return _dense_store(tmp_path / "index")

    @staticmethod
    def assert_documents_are_equal(received: list[Document], expected: list[Document]) -> None:
        _same_documents(received, expected)

    def test_write_documents(self, document_store: Any) -> None:
        doc = Document(content="test doc")
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):  # NONE means FAIL
            document_store.write_documents([doc])
        _same_documents(document_store.filter_documents(), [doc])

    async def test_write_documents_async(self, document_store: Any) -> None:
        doc = Document(content="test doc")
        assert await document_store.write_documents_async([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            await document_store.write_documents_async([doc])
        _same_documents(await document_store.filter_documents_async(), [doc])


def test_content_blob_meta_round_trip_and_reopen(tmp_path: Path) -> None:
    store = _dense_store(tmp_path / "index")
    doc = Document(
        id="page-1",
        content="annual report",
        blob=ByteStream(data=b"\x89PNG fake", mime_type="image/png", meta={"origin": "scan"}),
        meta={"year": 2024, "tags": ["a", "b"], "nested": {"x": 1}},
        embedding=[0.5] * 768,
    )
    assert store.write_documents([doc]) == 1
    store.close()
    reopened = MMEmbedDocumentStore.from_dict(store.to_dict())
    _same_documents(reopened.filter_documents(), [doc])
    # the folder is an mmembed index: its records are readable by core as well
    record = mmembed.open_index(tmp_path / "index").get(["page-1"])[0]
    assert record is not None and record.metadata["year"] == 2024


def test_to_dict_round_trip(tmp_path: Path) -> None:
    store = MMEmbedDocumentStore(path=str(tmp_path / "x"), dtype="float32")
    data = store.to_dict()
    assert data == {
        "type": "haystack_integrations.document_stores.mmembed.document_store.MMEmbedDocumentStore",
        "init_parameters": {"path": str(tmp_path / "x"), "dtype": "float32", "encoder": None},
    }
    assert MMEmbedDocumentStore.from_dict(data).to_dict() == data
    declared = MMEmbedDocumentStore(path=str(tmp_path / "y"), encoder=DENSE_768).to_dict()
    assert MMEmbedDocumentStore.from_dict(declared).declared_encoder == DENSE_768


def test_missing_folder_is_not_read_as_empty_and_plain_write_explains(tmp_path: Path) -> None:
    store = MMEmbedDocumentStore(path=str(tmp_path / "nothing"))
    with pytest.raises(mmembed.index.IndexNotFoundError, match="nothing"):
        store.count_documents()
    with pytest.raises(mmembed.index.IndexNotFoundError, match="encoder="):
        store.filter_documents()
    for change in (  # deleting from a mistyped path is an error too, not a silent no-op
        lambda: store.delete_documents(["x"]),
        store.delete_all_documents,
        lambda: store.delete_by_filter({"field": "meta.k", "operator": "==", "value": 1}),
        lambda: store.update_by_filter({"field": "meta.k", "operator": "==", "value": 1}, {"k": 2}),
    ):
        with pytest.raises(mmembed.index.IndexNotFoundError, match="nothing"):
            change()
    with pytest.raises(InvalidDocumentError, match="MMEmbedDocumentImageEmbedder"):
        store.write_documents([Document(content="no encoder known")])
    assert not (tmp_path / "nothing").exists()


def test_multi_vector_channel_creates_index_and_stores_exact_vectors(tmp_path: Path) -> None:
    store = MMEmbedDocumentStore(path=str(tmp_path / "multi"), dtype="float32")
    vectors = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)  # (n_vectors, dim)
    doc = attach_embedding(Document(id="p1", meta={"file_path": "a.pdf", "page_number": 2}), vectors, MULTI_8)
    assert EMBEDDING_META_KEY in doc.meta and len(doc.embedding or []) == 8
    assert store.write_documents([doc]) == 1
    index = store.core_index()
    assert index is not None and index.encoder == MULTI_8
    stored = index.get_embeddings(["p1"])[0]
    assert stored is not None and torch.allclose(stored, vectors)
    record = index.get(["p1"])[0]
    assert record is not None and (record.source, record.page, record.n_vectors) == ("a.pdf", 2, 5)
    (back,) = store.filter_documents()
    assert EMBEDDING_META_KEY not in back.meta  # consumed by the store
    assert back.meta == {"file_path": "a.pdf", "page_number": 2}
    assert back.embedding == pytest.approx(doc.embedding, abs=1e-6)  # pooled view
    # another encoder's vectors are refused with a clear error
    other = attach_embedding(Document(id="p2"), vectors, EncoderInfo("other", "test", "multi", 8, "maxsim"))
    with pytest.raises(EncoderMismatchError, match="other"):
        store.write_documents([other])


def test_documents_without_embedding_are_stored_but_never_retrieved(tmp_path: Path) -> None:
    store = _dense_store(tmp_path / "index")
    plain = Document(id="plain", content="no vectors")
    embedded = Document(id="vec", content="has vectors", embedding=[1.0] + [0.0] * 767)
    store.write_documents([plain, embedded])
    assert store.count_documents() == 2
    hits = store.embedding_retrieval(torch.tensor([[1.0] + [0.0] * 767]), top_k=10)
    assert [h.id for h in hits] == ["vec"]
    assert hits[0].score == pytest.approx(1.0)
    assert store.ids_with_vectors(["plain", "vec", "unknown"]) == {"vec"}
    assert {d.id: d.embedding is None for d in store.filter_documents()} == {"plain": True, "vec": False}


def test_write_policies_and_batch_duplicates(tmp_path: Path) -> None:
    store = _dense_store(tmp_path / "index")
    first, second = Document(id="1", content="first"), Document(id="1", content="second")
    with pytest.raises(DuplicateDocumentError, match="twice"):
        store.write_documents([first, second], policy=DuplicatePolicy.FAIL)
    assert store.count_documents() == 0
    assert store.write_documents([first, second], policy=DuplicatePolicy.SKIP) == 1
    assert store.filter_documents()[0].content == "first"
    assert store.write_documents([first, second], policy=DuplicatePolicy.OVERWRITE) == 1
    assert store.filter_documents()[0].content == "second"


def test_invalid_documents_are_refused_with_a_reason(tmp_path: Path) -> None:
    store = _dense_store(tmp_path / "index")
    with pytest.raises(ValueError, match="768"):
        store.write_documents([Document(id="short", embedding=[0.1, 0.2])])
    with pytest.raises(ValueError, match="reserved"):
        store.write_documents([Document(id="r", meta={"haystack.content": "x"})])
    with pytest.raises(ValueError, match="JSON"):
        store.write_documents([Document(id="nan", meta={"score": math.nan})])
    assert store.count_documents() == 0


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"field": "meta.year", "operator": ">=", "value": 2020}, {"new", "newer"}),
        (
            {"operator": "NOT", "conditions": [{"field": "meta.year", "operator": ">", "value": 2020}]},
            {"old", "new", "none"},
        ),
        ({"field": "meta.lang", "operator": "not in", "value": ["en"]}, {"newer", "none"}),
        ({"field": "meta.lang", "operator": "in", "value": ["fr", None]}, {"newer", "none"}),
        ({"field": "id", "operator": "in", "value": ["old", "new"]}, {"old", "new"}),
        ({"field": "content", "operator": "==", "value": "text of newer"}, {"newer"}),
        ({"field": "meta.page", "operator": "==", "value": "3"}, {"old"}),
        ({"field": "meta.date", "operator": "<", "value": "2021-06-01"}, {"old", "new"}),
        # Points in time, not text: "new" is 2020-05-05 10:00+02:00 = 08:00 UTC.
        ({"field": "meta.date", "operator": ">", "value": "2020-05-05T09:00:00Z"}, {"newer"}),
        ({"field": "meta.date", "operator": "<=", "value": "2020-05-05T03:00:00-05:00"}, {"old", "new"}),
        (
            {
                "operator": "OR",
                "conditions": [
                    {"field": "meta.lang", "operator": "==", "value": "fr"},
                    {
                        "operator": "NOT",
                        "conditions": [{"field": "meta.year", "operator": "!=", "value": 2019}],
                    },
                ],
            },
            {"old", "newer"},
        ),
    ],
)
def test_filter_translation(tmp_path: Path, filters: dict, expected: set[str]) -> None:
    store = _dense_store(tmp_path / "index")
    store.write_documents(
        [
            Document(
                id="old",
                content="text of old",
                meta={"year": 2019, "lang": "en", "page": "3", "date": "2019-01-01"},
            ),
            Document(
                id="new",
                content="text of new",
                meta={"year": 2020, "lang": "en", "date": "2020-05-05T10:00:00+02:00"},
            ),
            Document(
                id="newer", content="text of newer", meta={"year": 2023, "lang": "fr", "date": "2023-01-01"}
            ),
            Document(id="none", content="text of none"),
        ]
    )
    assert {d.id for d in store.filter_documents(filters)} == expected
    assert store.count_documents_by_filter(filters) == len(expected)


@pytest.mark.parametrize(
    "filters",
    [
        {"field": "meta.a.b", "operator": "==", "value": 1},
        {"field": "embedding", "operator": "==", "value": 1},
        {"field": "meta.x", "operator": "~=", "value": 1},
        {"operator": "XOR", "conditions": []},
        {"field": "meta.x", "operator": "==", "value": {"a": 1}},
        {"field": "meta.x", "operator": ">", "value": "not a date"},
        {"field": "meta.x", "operator": "<", "value": True},
    ],
)
def test_unsupported_filters_raise_filter_error(tmp_path: Path, filters: dict) -> None:
    with pytest.raises(FilterError):
        _dense_store(tmp_path / "index").filter_documents(filters)


def test_update_by_filter_keeps_vectors_and_content(tmp_path: Path) -> None:
    store = MMEmbedDocumentStore(path=str(tmp_path / "multi"), dtype="float32")
    vectors = torch.randn(3, 8)  # (n_vectors, dim)
    store.write_documents([attach_embedding(Document(id="p", content="c", meta={"k": 1}), vectors, MULTI_8)])
    assert (
        store.update_by_filter({"field": "meta.k", "operator": "==", "value": 1}, {"k": 2, "new": True}) == 1
    )
    (doc,) = store.filter_documents()
    assert (doc.content, doc.meta) == ("c", {"k": 2, "new": True})
    stored = store.core_index().get_embeddings(["p"])[0]  # type: ignore[union-attr]
    assert stored is not None and torch.allclose(stored, vectors)


def test_stores_on_one_folder_share_the_writer(tmp_path: Path) -> None:
    a = _dense_store(tmp_path / "index")
    b = MMEmbedDocumentStore.from_dict(a.to_dict())
    a.write_documents([Document(id="1", content="a")])
    b.write_documents([Document(id="2", content="b")])  # would hit the writer lock with two handles
    assert a.count_documents() == b.count_documents() == 2


def test_retriever_ranks_hand_made_multi_vectors_by_maxsim(tmp_path: Path) -> None:
    """A ranking with known meaning: each query token scores its best-matching page token."""
    from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever

    e = torch.eye(8)  # orthonormal token vectors
    pages = {
        "a": e[[0, 1]],  # shares nothing with the query
        "b": e[[2, 3, 4]],  # holds both query tokens: 1 + 1
        "c": torch.nn.functional.normalize(e[0] + e[2], dim=0)[None],  # half of one token: 0.707
    }
    store = MMEmbedDocumentStore(path=str(tmp_path / "multi"), dtype="float32")
    store.write_documents(
        [attach_embedding(Document(id=k, meta={"k": k}), v, MULTI_8) for k, v in pages.items()]
    )
    retriever = MMEmbedRetriever(document_store=store, top_k=3)
    ranked = retriever.run(query_multi_embedding=e[[2, 3]].tolist())["documents"]
    assert [d.id for d in ranked] == ["b", "c", "a"]
    assert [d.score for d in ranked] == pytest.approx([2.0, 2**-0.5, 0.0], abs=1e-6)
    only_a_c = retriever.run(
        query_multi_embedding=e[[2, 3]].tolist(), filters={"field": "meta.k", "operator": "!=", "value": "b"}
    )["documents"]
    assert [d.id for d in only_a_c] == ["c", "a"]
