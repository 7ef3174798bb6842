"""``MMEmbedRetriever``: query embedding(s) → top-k page documents from an ``MMEmbedDocumentStore``."""

from __future__ import annotations

from typing import Any

import torch
from haystack import Document, component, default_from_dict, default_to_dict
from haystack.document_stores.types import FilterPolicy
from haystack.document_stores.types.filter_policy import apply_filter_policy
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore
from haystack_integrations.document_stores.mmembed.provenance import made_by_mmembed_family, query_maker

from mmembed.types import EncoderInfo, EncoderMismatchError


@component
class MMEmbedRetriever:
    """Exact search of an ``MMEmbedDocumentStore`` with the query's vectors.

    Scoring follows the store's index: late interaction (MaxSim) for multi-vector models
    such as ColQwen2.5 / ColPali, dot product or cosine for single-vector (dense) models.
    Filters (Haystack syntax) are applied inside the index before scoring, so ``top_k``
    results come back whenever that many documents match.

    With ``explain=True`` (and the query's text given as ``query``), each document's
    ``meta["similarity_map"]`` holds its page's similarity overlay (``png_base64``,
    ``rows``, ``cols``, ``tokens``, ``vectors_from``; multi-vector image models only), made
    by the store's own model from the page's stored vectors when the index recorded its
    patch layout.

    ``mode="hybrid"`` fuses the vector ranking with the pages' own text ranking (bm25) for
    the query's text given as ``query`` — by reciprocal rank fusion (``rrf_k``) or with
    ``alpha`` by ``alpha * visual + (1 - alpha) * text`` of normalised scores — and each
    document's ``meta["matches"]`` says which side(s) found it. For Haystack's own fusion,
    join this retriever with ``MMEmbedBM25Retriever`` in a ``DocumentJoiner``.

    ```python
    from haystack import Pipeline
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder
    from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

    pipeline = Pipeline()
    pipeline.add_component("embedder", MMEmbedTextEmbedder(model="vidore/colqwen2.5-v0.2"))
    pipeline.add_component("retriever", MMEmbedRetriever(document_store=MMEmbedDocumentStore(path="./pages")))
    pipeline.connect("embedder.multi_embedding", "retriever.query_multi_embedding")
    pipeline.connect("embedder.encoder", "retriever.query_encoder")  # refuses another model's query
    pipeline.run({"embedder": {"text": "solar capacity in 2023"}, "retriever": {"top_k": 3}})
    ```
    """

    def __init__(
        self,
        *,
        document_store: MMEmbedDocumentStore,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        filter_policy: str | FilterPolicy = FilterPolicy.REPLACE,
        return_embedding: bool = False,
        explain: bool = False,
        mode: str = "visual",
        alpha: float | None = None,
        rrf_k: int | None = None,
        check_query_encoder: bool = True,
        dpi: float = 144,
    ) -> None:
        """
        :param document_store: The store to search.
        :param filters: Haystack filters applied to every search.
        :param top_k: Number of documents to return.
        :param filter_policy: How run-time ``filters`` combine with ``filters``: ``replace`` or ``merge``.
        :param return_embedding: Return documents with their (pooled) embedding.
        :param explain: Add each page's similarity overlay (needs the query's text as ``query``).
        :param mode: ``"visual"`` (vectors only) or ``"hybrid"`` (fused with the pages' text ranking;
            needs the query's text as ``query``). For text only, use ``MMEmbedBM25Retriever``.
        :param alpha: Hybrid: weight of the visual side in a weighted sum (``None``: reciprocal rank fusion).
        :param rrf_k: Hybrid: reciprocal rank fusion's constant (default 60).
        :param check_query_encoder: Refuse a query the store's model did not make. The model is
            known from ``query_encoder`` when connected, else from ``MMEmbedTextEmbedder``, which
            remembers the queries it embeds in this process; a query of unknown origin on a store
            of an mmembed model is refused too. ``False`` only for queries embedded with the
            store's model outside mmembed.
        :param dpi: Resolution the page is rendered at for its ``explain`` overlay.
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
        self.return_embedding = return_embedding
        self.explain = explain
        from mmembed.index.fusion import search_options

        if mode == "text":
            raise ValueError("MMEmbedRetriever searches with vectors; for text only use MMEmbedBM25Retriever")
        try:
            search_options(mode, alpha, rrf_k)  # core's rule, checked now
        except Exception as exc:
            raise ValueError(str(exc)) from exc
        self.mode = mode
        self.alpha = alpha
        self.rrf_k = rrf_k
        self.check_query_encoder = check_query_encoder
        self.dpi = dpi

    def to_dict(self) -> dict[str, Any]:
        """Serialise the component (the store by its folder)."""
        return default_to_dict(
            self,
            document_store=self.document_store,
            filters=self.filters,
            top_k=self.top_k,
            filter_policy=self.filter_policy.value,
            return_embedding=self.return_embedding,
            explain=self.explain,
            mode=self.mode,
            alpha=self.alpha,
            rrf_k=self.rrf_k,
            check_query_encoder=self.check_query_encoder,
            dpi=self.dpi,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMEmbedRetriever:
        """Deserialise the component."""
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        query_multi_embedding: list[list[float]] | None = None,
        query_embedding: list[float] | None = None,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        return_embedding: bool | None = None,
        query_encoder: dict[str, Any] | None = None,
        query: str | None = None,
    ) -> dict[str, list[Document]]:
        """Retrieve the best-matching documents, best first, each with its ``score``.

        :param query_multi_embedding: All query vectors (``MMEmbedTextEmbedder.multi_embedding``).
        :param query_embedding: One query vector; enough for single-vector (dense) stores only.
        :param filters: Haystack filters; combined with the init filters by ``filter_policy``.
        :param top_k: Number of documents to return (overrides the init value).
        :param return_embedding: Overrides the init value.
        :param query_encoder: Which encoder made the query (``MMEmbedTextEmbedder.encoder``); a query
            from another model than the store's is refused with ``EncoderMismatchError``.
        :param query: The query's text; needed with ``explain=True`` (the overlay shows its tokens)
            and with ``mode="hybrid"`` (the text side searches it).
        :raises IndexNotFoundError: the store's folder holds no index.
        """
        self._check_explain(query)
        vectors, k, where, with_embedding = self._prepare(
            query_multi_embedding, query_embedding, filters, top_k, return_embedding, query_encoder
        )
        documents = self.document_store.embedding_retrieval(
            vectors, filters=where, top_k=k, return_embedding=with_embedding, **self._modes(query)
        )
        return {"documents": self._explained(documents, query)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query_multi_embedding: list[list[float]] | None = None,
        query_embedding: list[float] | None = None,
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        return_embedding: bool | None = None,
        query_encoder: dict[str, Any] | None = None,
        query: str | None = None,
    ) -> dict[str, list[Document]]:
        """:meth:`run` without blocking the event loop (the search runs in a worker thread)."""
        self._check_explain(query)
        vectors, k, where, with_embedding = self._prepare(
            query_multi_embedding, query_embedding, filters, top_k, return_embedding, query_encoder
        )
        documents = await self.document_store.embedding_retrieval_async(
            vectors, filters=where, top_k=k, return_embedding=with_embedding, **self._modes(query)
        )
        if self.explain:
            import asyncio

            documents = await asyncio.to_thread(self._explained, documents, query)
        return {"documents": documents}

    def _modes(self, query: str | None) -> dict[str, Any]:
        if self.mode == "visual":
            return {}
        if not (isinstance(query, str) and query.strip()):
            raise ValueError(
                "mode='hybrid' needs the query's text: pass query=<the text> to MMEmbedRetriever.run "
                "(e.g. pipeline.run({'embedder': {'text': q}, 'retriever': {'query': q}}))"
            )
        return {"mode": self.mode, "query": query, "alpha": self.alpha, "rrf_k": self.rrf_k}

    def _check_explain(self, query: str | None) -> None:
        if self.explain and not (isinstance(query, str) and query.strip()):
            raise ValueError(
                "explain=True needs the query's text: pass query=<the text> to MMEmbedRetriever.run "
                "(e.g. pipeline.run({'embedder': {'text': q}, 'retriever': {'query': q}}))"
            )

    def _explained(self, documents: list[Document], query: str | None) -> list[Document]:
        """``documents`` with their pages' similarity overlays (core does the work)."""
        if not self.explain or query is None:
            return documents
        from mmembed.retrieve import SIMILARITY_MAP_KEY, Retriever, index_encoder

        index = self.document_store.index_for_reading()
        retriever = Retriever(index, index_encoder(index.encoder))
        records = index.get([d.id for d in documents])
        for document, record in zip(documents, records, strict=True):
            if record is not None:
                document.meta[SIMILARITY_MAP_KEY] = retriever.explain_metadata(query, record, dpi=self.dpi)
        return documents

    def _prepare(
        self,
        query_multi_embedding: list[list[float]] | None,
        query_embedding: list[float] | None,
        filters: dict[str, Any] | None,
        top_k: int | None,
        return_embedding: bool | None,
        query_encoder: dict[str, Any] | None,
    ) -> tuple[torch.Tensor, int, dict[str, Any] | None, bool]:
        k = self.top_k if top_k is None else top_k
        if k <= 0:
            raise ValueError(f"top_k must be greater than 0, got {k}")
        where = apply_filter_policy(self.filter_policy, self.filters, filters)
        with_embedding = self.return_embedding if return_embedding is None else return_embedding
        index = self.document_store.index_for_reading()
        encoder = index.encoder
        if query_encoder is not None:
            encoder.check_compatible(
                EncoderInfo.from_dict(query_encoder), index_path=self.document_store.path
            )
        if query_multi_embedding is not None:
            query = torch.tensor(query_multi_embedding, dtype=torch.float32)  # (n_vectors, dim)
        elif query_embedding is not None:
            if encoder.kind == "multi":
                raise ValueError(
                    f"the store at {self.document_store.path} holds multi-vector (MaxSim) page embeddings, which "
                    "one pooled query vector cannot search exactly: connect MMEmbedTextEmbedder.multi_embedding "
                    "to MMEmbedRetriever.query_multi_embedding"
                )
            query = torch.tensor([query_embedding], dtype=torch.float32)  # (1, dim)
        else:
            raise ValueError(
                "give query_multi_embedding (from MMEmbedTextEmbedder.multi_embedding) or query_embedding"
            )
        if query.ndim != 2 or query.shape[0] == 0:
            raise ValueError(
                f"the query embedding must be a non-empty list of vectors, got shape {tuple(query.shape)}"
            )
        if query_encoder is None and self.check_query_encoder:
            self._check_query_maker(query, encoder)
        if encoder.kind == "single" and query.shape[0] != 1:
            raise EncoderMismatchError(
                f"the store at {self.document_store.path} holds single-vector embeddings of {encoder.name}, "
                f"but the query has {query.shape[0]} vectors (a multi-vector model's query): embed the query "
                f"with {encoder.name}"
            )
        return query, k, where, with_embedding

    def _check_query_maker(self, query: torch.Tensor, encoder: EncoderInfo) -> None:
        """The query's model, known without ``query_encoder``: the one ``MMEmbedTextEmbedder``
        recorded for these vectors; unknown on a store of an mmembed model is refused too."""
        maker = query_maker(query)
        if maker is not None:
            encoder.check_compatible(maker, index_path=self.document_store.path)
        elif made_by_mmembed_family(encoder):
            raise EncoderMismatchError(
                f"the store at {self.document_store.path} holds pages embedded by {encoder.name}, and this "
                "query embedding was not made by an MMEmbedTextEmbedder in this process, so its model is "
                f"unknown: embed the query with MMEmbedTextEmbedder(model={encoder.name!r}), or connect "
                "embedder.encoder to retriever.query_encoder (or pass query_encoder=...). If the query was "
                f"embedded with {encoder.name} elsewhere, set MMEmbedRetriever(check_query_encoder=False)."
            )
