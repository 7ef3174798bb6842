"""``MMEmbedBM25Retriever``: query text → the pages whose own text best matches it (bm25)."""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.document_stores.types import FilterPolicy
from haystack.document_stores.types.filter_policy import apply_filter_policy
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore


@component
class MMEmbedBM25Retriever:
    """Keyword search of an ``MMEmbedDocumentStore``: bm25 over each page's own text layer
    (stored at indexing; a written document's ``content``), in the store's SQLite FTS5 index.

    The query is always plain words (quotes, ``*``, ``OR``, ``NEAR`` ... are searched as
    text, never as query syntax). Filters are applied before ranking. Join it with
    ``MMEmbedRetriever`` for hybrid retrieval the Haystack way:

    ```python
    from haystack import Pipeline
    from haystack.components.joiners import DocumentJoiner
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder
    from haystack_integrations.components.retrievers.mmembed import MMEmbedBM25Retriever, MMEmbedRetriever
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

    store = MMEmbedDocumentStore(path="./pages")
    pipeline = Pipeline()
    pipeline.add_component("embedder", MMEmbedTextEmbedder(model="vidore/colqwen2.5-v0.2"))
    pipeline.add_component("visual", MMEmbedRetriever(document_store=store))
    pipeline.add_component("text", MMEmbedBM25Retriever(document_store=store))
    pipeline.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion"))
    pipeline.connect("embedder.multi_embedding", "visual.query_multi_embedding")
    pipeline.connect("visual", "joiner")
    pipeline.connect("text", "joiner")
    q = "part X-200 clause"
    pipeline.run({"embedder": {"text": q}, "text": {"query": q}})
    ```
    """

    def __init__(
        self,
        *,
        document_store: MMEmbedDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        filter_policy: str | FilterPolicy = FilterPolicy.REPLACE,
    ) -> None:
        """
        :param document_store: The store to search.
        :param filters: Haystack filters applied to every search.
        :param top_k: Number of documents to return.
        :param filter_policy: How run-time ``filters`` combine with ``filters``: ``replace`` or ``merge``.
        """
        if not isinstance(document_store, MMEmbedDocumentStore):
            raise ValueError("document_store must be an instance of MMEmbedDocumentStore")
        if top_k <= 0:
            raise ValueError(f"top_k must be greater than 0, got {top_k}")
        self.document_store = document_store
        self.filters = filters or {}
        self.top_k = top_k
        self.filter_policy = (
            filter_policy if isinstance(filter_policy, FilterPolicy) else FilterPolicy.from_str(filter_policy)
        )

    def to_dict(self) -> dict[str, Any]:
        """Serialise the component (the store by its folder)."""
        return default_to_dict(
            self,
            document_store=self.document_store,
            filters=self.filters,
            top_k=self.top_k,
            filter_policy=self.filter_policy.value,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMEmbedBM25Retriever:
        """Deserialise the component."""
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """The best-matching documents by bm25, best first, each with its ``score`` (``-bm25``).

        :raises IndexNotFoundError: the store's folder holds no index.
        """
        k = self.top_k if top_k is None else top_k
        if k <= 0:
            raise ValueError(f"top_k must be greater than 0, got {k}")
        where = apply_filter_policy(self.filter_policy, self.filters, filters)
        return {"documents": self.document_store.bm25_retrieval(query, filters=where, top_k=k)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """:meth:`run` without blocking the event loop."""
        k = self.top_k if top_k is None else top_k
        if k <= 0:
            raise ValueError(f"top_k must be greater than 0, got {k}")
        where = apply_filter_policy(self.filter_policy, self.filters, filters)
        return {"documents": await self.document_store.bm25_retrieval_async(query, filters=where, top_k=k)}
