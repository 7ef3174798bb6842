"""``MMEmbedDocumentStore``: Haystack's ``DocumentStore`` protocol over an mmembed index folder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from haystack import Document, default_from_dict, default_to_dict
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError

import mmembed
from mmembed.index import DuplicatePageError, IndexBackend, IndexNotFoundError, uri_scheme
from mmembed.index import FilterError as CoreFilterError
from mmembed.types import EncoderInfo

from .documents import (
    InvalidDocumentError,
    has_vectors,
    read_attached_embedding,
    to_document,
    to_page_input,
)
from .filters import translate_filters

logger = logging.getLogger(__name__)

_BATCH = 256


class MMEmbedDocumentStore:
    """Documents (typically PDF pages as images) in an mmembed index folder on disk.

    Page vectors, single- or multi-vector, live in mmembed's embedded index; a document's
    ``content``, ``blob`` and ``meta`` live in the index's page records, so the folder holds
    everything and can also be searched with the ``mmembed`` CLI / Python API. Document ids
    are the index's page ids.

    The index is created by the first write of documents embedded by
    ``MMEmbedDocumentImageEmbedder`` (they carry the encoder's description, see
    :mod:`haystack_integrations.document_stores.mmembed.documents`), by the first use of a
    store given ``encoder=`` (for embeddings computed elsewhere), or can be an existing
    index built by mmembed (``mmembed index ... --index <path>``). Documents without an
    embedding are stored too, but are never search results. Reading a store whose folder
    holds no index raises :class:`mmembed.index.IndexNotFoundError` (a mistyped path is not
    an empty store); only writing creates it.

    ```python
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

    store = MMEmbedDocumentStore(path="./page_index")
    store.count_documents()
    store.filter_documents({"field": "meta.file_path", "operator": "==", "value": "/data/report.pdf"})
    ```
    """

    def __init__(
        self, path: str, *, dtype: str = "float16", encoder: EncoderInfo | dict[str, Any] | None = None
    ) -> None:
        """
        :param path: Folder of the index (created on the first write if missing).
        :param dtype: How vectors are stored when this store creates the index:
            ``"float16"`` (default), ``"bfloat16"`` or ``"float32"``. An existing index keeps its own.
        :param encoder: Which encoder made the embeddings written here, for documents whose
            ``embedding`` was computed outside mmembed (e.g. ``EncoderInfo(name="my-model",
            family="external", kind="single", dim=768, similarity="cosine")``). With it the
            index is created on first use and an existing one must match it; without it the
            first write of ``MMEmbedDocumentImageEmbedder`` output creates the index.
        """
        self.path = str(path)
        self.dtype = dtype
        self.declared_encoder = EncoderInfo.from_dict(encoder) if isinstance(encoder, dict) else encoder
        self._index: IndexBackend | None = None

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """Serialise the store (its folder and settings, not its contents)."""
        encoder = self.declared_encoder.to_dict() if self.declared_encoder is not None else None
        return default_to_dict(self, path=self.path, dtype=self.dtype, encoder=encoder)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMEmbedDocumentStore:
        """Deserialise a store from :meth:`to_dict` output."""
        return default_from_dict(cls, data)

    # ------------------------------------------------------------------ the index

    def core_index(self, *, create_with: EncoderInfo | None = None) -> IndexBackend | None:
        """The mmembed index behind the store (a handle on the one index this process keeps
        for the folder, so stores, retrievers and rankers on one folder share its writer
        lock), or ``None`` while none exists and ``create_with`` is not given."""
        create_with = create_with or self.declared_encoder
        # Shared folder handles know when their folder was deleted or recreated; other backends do not.
        if self._index is not None and (
            getattr(self._index, "closed", False) or getattr(self._index, "replaced", False)
        ):
            self.close()  # the folder was deleted or recreated: follow it, not the ghost

        if self._index is None:
            try:
                # A folder or a backend URI (qdrant://host:6333/pages); dtype is the folder's.
                options: dict[str, Any] = {} if uri_scheme(self.path) else {"dtype": self.dtype}
                self._index = mmembed.open_backend(
                    self.path, create_with, create=create_with is not None, shared=True, **options
                )
            except IndexNotFoundError:
                if create_with is not None:
                    raise
                return None
            if self.declared_encoder is not None:
                self._index.encoder.check_compatible(self.declared_encoder, index_path=self.path)
        elif create_with is not None:
            self._index.encoder.check_compatible(create_with, index_path=self.path)
        return self._index

    def index_for_reading(self) -> IndexBackend:
        """The index, for reading: a folder without one is an error, not an empty store."""
        index = self.core_index()
        if index is None:
            raise IndexNotFoundError(
                f"no mmembed index at {self.path}: check the path, build one with "
                f"`mmembed index <files> --index {self.path}`, write documents embedded by "
                "MMEmbedDocumentImageEmbedder, or pass encoder= to create an empty store"
            )
        return index

    @property
    def encoder(self) -> EncoderInfo | None:
        """Description of the encoder whose vectors the index holds (``None`` before the first write)."""
        index = self.core_index()
        return index.encoder if index is not None else None

    def close(self) -> None:
        """Let go of the index (it closes once nothing else in the process uses it)."""
        index, self._index = self._index, None
        if index is not None:
            index.close()

    # ------------------------------------------------------------------ protocol

    def count_documents(self) -> int:
        """Number of stored documents."""
        return self.index_for_reading().count()

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        """Number of stored documents matching Haystack ``filters``."""
        where = translate_filters(filters)
        return int(self._call(self.index_for_reading().count, where))

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Documents matching Haystack ``filters`` (all of them without), in insertion order,
        each with its ``embedding`` (the pooled vector for multi-vector indexes)."""
        where = translate_filters(filters)
        index = self.index_for_reading()
        documents: list[Document] = []
        for batch in _batches(self._call(index.records, where)):
            vectors = index.get_embeddings([r.id for r in batch])
            documents += [to_document(r, embedding=v) for r, v in zip(batch, vectors, strict=True)]
        return documents

    def write_documents(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """Store ``documents``; ``DuplicatePolicy.NONE`` means ``FAIL``.

        :returns: how many documents were written (skipped duplicates are not counted).
        :raises DuplicateDocumentError: an id is already stored (or repeated) under ``FAIL``.
        :raises ValueError: ``documents`` is not a list of ``Document``, or one cannot be stored
            (wrong embedding size, reserved meta key, encoder mismatch, non-JSON meta).
        """
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise ValueError("write_documents takes a list of Haystack Document objects")
        if not documents:
            return 0
        policy = DuplicatePolicy.FAIL if policy == DuplicatePolicy.NONE else policy
        documents = _deduplicate(documents, policy)
        index = self._index_for(documents)
        if policy == DuplicatePolicy.SKIP:
            stored = index.get([d.id for d in documents])
            documents = [d for d, record in zip(documents, stored, strict=True) if record is None]
            if not documents:
                return 0
        pages = [to_page_input(d, index.encoder, self.path) for d in documents]
        try:
            if policy == DuplicatePolicy.OVERWRITE:
                index.upsert(pages)
            else:
                index.add(pages)
        except DuplicatePageError as exc:
            raise DuplicateDocumentError(
                f"{exc} (DuplicatePolicy.{policy.name}); nothing was written"
            ) from exc
        return len(pages)

    def delete_documents(self, document_ids: list[str]) -> None:
        """Delete the documents with these ids (unknown ids are ignored).

        :raises IndexNotFoundError: the store's folder holds no index (a mistyped path is not
            an empty store; nothing is created)."""
        index = self.index_for_reading()
        if document_ids:
            index.delete(list(document_ids))

    def delete_all_documents(self) -> None:
        """Delete every document (the index keeps its encoder and settings).

        :raises IndexNotFoundError: the store's folder holds no index."""
        self.index_for_reading().delete(where={})

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        """Delete the documents matching Haystack ``filters``; returns how many were deleted."""
        where = translate_filters(filters)
        index = self.index_for_reading()  # a missing store is an error, as for reads
        return int(self._call(index.delete, where=where if where is not None else {}))

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Merge ``meta`` into the meta of the documents matching ``filters`` (vectors kept);
        returns how many were updated."""
        where = translate_filters(filters)
        index = self.index_for_reading()  # a missing store is an error, as for reads
        updated = 0
        for batch in _batches(self._call(index.records, where)):
            vectors = index.get_embeddings([r.id for r in batch])
            pages = []
            for record, stored in zip(batch, vectors, strict=True):
                document = to_document(record)
                document = replace(document, meta={**document.meta, **meta})
                page = to_page_input(document, index.encoder, self.path)  # validates the new meta
                if stored is not None:
                    page.embedding = stored  # (n_vectors, dim), n_vectors = 0 without an embedding
                page.thumbnail = record.thumbnail
                pages.append(page)
            index.upsert(pages)
            updated += len(pages)
        return updated

    # ------------------------------------------------------------------ async (worker threads)
    # The index is local and CPU/disk bound: async callers (AsyncPipeline, DocumentWriter.run_async)
    # get the same operations without blocking their event loop.

    async def count_documents_async(self) -> int:
        """:meth:`count_documents` in a worker thread."""
        return await asyncio.to_thread(self.count_documents)

    async def count_documents_by_filter_async(self, filters: dict[str, Any]) -> int:
        """:meth:`count_documents_by_filter` in a worker thread."""
        return await asyncio.to_thread(self.count_documents_by_filter, filters)

    async def filter_documents_async(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """:meth:`filter_documents` in a worker thread."""
        return await asyncio.to_thread(self.filter_documents, filters)

    async def write_documents_async(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        """:meth:`write_documents` in a worker thread."""
        return await asyncio.to_thread(self.write_documents, documents, policy)

    async def delete_documents_async(self, document_ids: list[str]) -> None:
        """:meth:`delete_documents` in a worker thread."""
        await asyncio.to_thread(self.delete_documents, document_ids)

    async def delete_all_documents_async(self) -> None:
        """:meth:`delete_all_documents` in a worker thread."""
        await asyncio.to_thread(self.delete_all_documents)

    async def delete_by_filter_async(self, filters: dict[str, Any]) -> int:
        """:meth:`delete_by_filter` in a worker thread."""
        return await asyncio.to_thread(self.delete_by_filter, filters)

    async def update_by_filter_async(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """:meth:`update_by_filter` in a worker thread."""
        return await asyncio.to_thread(self.update_by_filter, filters, meta)

    # ------------------------------------------------------------------ retrieval

    def embedding_retrieval(
        self,
        query_embedding: torch.Tensor,
        *,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        return_embedding: bool = False,
        mode: str = "visual",
        query: str | None = None,
        alpha: float | None = None,
        rrf_k: int | None = None,
    ) -> list[Document]:
        """The ``top_k`` documents best matching ``query_embedding`` ``(n_vectors, dim)``,
        scored by the index's similarity (MaxSim for multi-vector indexes, dot/cosine for
        single-vector ones), among documents matching ``filters``; best first.

        ``mode="hybrid"`` fuses that ranking with the pages' text ranking for ``query`` (see
        :meth:`mmembed.Retriever.search`); each document's ``meta["matches"]`` then says which
        side(s) found it."""
        where = translate_filters(filters)
        index = self.index_for_reading()
        if top_k <= 0:
            return []
        modes: dict[str, Any] = {}
        if mode != "visual":
            modes = {
                "mode": mode,
                "texts": [query] if query is not None else None,
                "alpha": alpha,
                "rrf_k": rrf_k,
            }
        hits = self._call(index.search, [query_embedding], k=top_k, where=where, **modes)[0]
        return self._documents(index, hits, return_embedding)

    def bm25_retrieval(
        self, query: str, *, filters: dict[str, Any] | None = None, top_k: int = 10
    ) -> list[Document]:
        """The ``top_k`` documents whose own text (a page's text layer, a document's ``content``)
        best matches ``query`` by bm25, among documents matching ``filters``; best first. The
        query is taken as plain words (no query syntax)."""
        from mmembed.retrieve import check_query

        check_query(query)
        where = translate_filters(filters)
        index = self.index_for_reading()
        if top_k <= 0:
            return []
        hits = self._call(index.search, None, k=top_k, where=where, mode="text", texts=[query])[0]
        return self._documents(index, hits, False)

    async def bm25_retrieval_async(
        self, query: str, *, filters: dict[str, Any] | None = None, top_k: int = 10
    ) -> list[Document]:
        """:meth:`bm25_retrieval` in a worker thread."""
        return await asyncio.to_thread(self.bm25_retrieval, query, filters=filters, top_k=top_k)

    @staticmethod
    def _documents(index: IndexBackend, hits: list[Any], return_embedding: bool) -> list[Document]:
        vectors = index.get_embeddings([h.id for h in hits]) if return_embedding else [None] * len(hits)
        documents = [
            to_document(h.record, embedding=v, score=h.score) for h, v in zip(hits, vectors, strict=True)
        ]
        for document, hit in zip(documents, hits, strict=True):
            if hit.matches:  # text / hybrid: which side(s) found it, rank and score on each
                document.meta["matches"] = [m.to_json() for m in hit.matches]
        return documents

    async def embedding_retrieval_async(
        self,
        query_embedding: torch.Tensor,
        *,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        return_embedding: bool = False,
        mode: str = "visual",
        query: str | None = None,
        alpha: float | None = None,
        rrf_k: int | None = None,
    ) -> list[Document]:
        """:meth:`embedding_retrieval` in a worker thread (the index is local and CPU-bound)."""
        return await asyncio.to_thread(
            self.embedding_retrieval,
            query_embedding,
            filters=filters,
            top_k=top_k,
            return_embedding=return_embedding,
            mode=mode,
            query=query,
            alpha=alpha,
            rrf_k=rrf_k,
        )

    def ids_with_vectors(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` stored here with real vectors (what a reranker may reuse)."""
        index = self.core_index()
        if index is None:
            return set()
        return {r.id for r in index.get(list(ids)) if r is not None and has_vectors(r)}

    # ------------------------------------------------------------------ helpers

    def _index_for(self, documents: list[Document]) -> IndexBackend:
        index = self.core_index()
        if index is not None:
            return index
        for document in documents:
            attached = read_attached_embedding(document)
            if attached is not None:
                created = self.core_index(create_with=attached[1])
                assert created is not None
                return created
        raise InvalidDocumentError(
            f"there is no index at {self.path} yet, and none of these documents says which encoder made "
            "its embedding. Write documents embedded by MMEmbedDocumentImageEmbedder first (they create the "
            "index), or build the index with mmembed (`mmembed index <files> --index <path>`)."
        )

    @staticmethod
    def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the index, reporting a filter it rejects as Haystack's ``FilterError``."""
        try:
            result = method(*args, **kwargs)
            # records() is lazy: surface a bad filter now, not while iterating.
            return list(result) if isinstance(result, Iterator) else result
        except CoreFilterError as exc:
            raise FilterError(str(exc)) from exc


def _batches(records: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(records), _BATCH):
        yield records[start : start + _BATCH]


def _deduplicate(documents: list[Document], policy: DuplicatePolicy) -> list[Document]:
    """One document per id: the first under ``SKIP``, the last under ``OVERWRITE``."""
    by_id: dict[str, Document] = {}
    for document in documents:
        if document.id in by_id:
            if policy == DuplicatePolicy.FAIL:
                raise DuplicateDocumentError(
                    f"document id {document.id!r} appears twice in the batch; nothing was written"
                )
            if policy == DuplicatePolicy.SKIP:
                continue
        by_id[document.id] = document
    return list(by_id.values())


__all__ = ["MMEmbedDocumentStore"]
