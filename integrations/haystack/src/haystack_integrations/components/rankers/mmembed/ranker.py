"""``MMEmbedMaxSimRanker``: exact late-interaction reranking of any retriever's documents."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore
from haystack_integrations.document_stores.mmembed._component import EncoderComponentMixin
from haystack_integrations.document_stores.mmembed.documents import (
    CONTENT_HASH,
    InvalidDocumentError,
    blob_image,
    page_location,
)

from mmembed.retrieve import Candidate, MaxSimReranker

if TYPE_CHECKING:
    from mmembed.index import IndexBackend


@component
class MMEmbedMaxSimRanker(EncoderComponentMixin):
    """Reorders page documents by their exact MaxSim score for the query.

    Works after any retriever (BM25 over OCR text, a dense first stage, ...). Each page's
    vectors come from the ``document_store`` when it holds the page (same id, embedded by
    the same model), otherwise the page is encoded from its image blob or from
    ``meta["file_path"]`` + ``meta["page_number"]`` (and cached in memory for later queries).

    Returns new ``Document`` objects with ``score`` set, best first; the input documents are
    not modified.

    ```python
    from haystack_integrations.components.rankers.mmembed import MMEmbedMaxSimRanker

    ranker = MMEmbedMaxSimRanker(model="vidore/colqwen2.5-v0.2", top_k=3)
    ranker.warm_up()
    ranker.run(query="solar capacity in 2023", documents=candidates)["documents"]
    ```
    """

    def __init__(
        self,
        *,
        model: str,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        document_store: MMEmbedDocumentStore | None = None,
        top_k: int = 10,
        score_threshold: float | None = None,
        dpi: float = 144,
        batch_size: int | None = None,
    ) -> None:
        """
        :param model: Hugging Face model id or local checkpoint folder of a multi-vector model.
        :param revision: Model revision (commit, branch or tag) to pin.
        :param device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; default: the best available.
        :param dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; default: chosen for the device.
        :param model_kwargs: Options of the model family (see ``mmembed models``), as for the
            embedders, e.g. ``{"max_pixels": 602112}``.
        :param document_store: Store whose stored vectors are reused for the pages it holds.
        :param top_k: Maximum number of documents to return.
        :param score_threshold: Drop documents scoring below this.
        :param dpi: Resolution pages are rendered at when they must be encoded.
        :param batch_size: Pages encoded together (default: the encoder's).
        """
        if top_k <= 0:
            raise ValueError(f"top_k must be greater than 0, got {top_k}")
        self._init_model(model, revision, device, dtype, model_kwargs)
        self.document_store = document_store
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.dpi = dpi
        self.batch_size = batch_size
        self._reranker: MaxSimReranker | None = None
        self._reranker_index: IndexBackend | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise the component (the store by its folder)."""
        return default_to_dict(
            self,
            **self._model_params(),
            document_store=self.document_store,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            dpi=self.dpi,
            batch_size=self.batch_size,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMEmbedMaxSimRanker:
        """Deserialise the component."""
        return default_from_dict(cls, data)

    @property
    def pages_encoded(self) -> int:
        """Pages this ranker had to encode (not found in the store or its cache)."""
        return self._reranker.pages_encoded if self._reranker is not None else 0

    @property
    def pages_reused(self) -> int:
        """Pages whose stored vectors were reused from the document store."""
        return self._reranker.pages_reused if self._reranker is not None else 0

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """Rerank ``documents`` for ``query``.

        :param query: The query text.
        :param documents: Page documents to rerank (ids from the store, image blobs, or
            ``file_path`` + ``page_number`` meta).
        :param top_k: Overrides the init value.
        :param score_threshold: Overrides the init value.
        :returns: ``documents``: new documents with ``score``, best first.
        """
        k = self.top_k if top_k is None else top_k
        if k <= 0:
            raise ValueError(f"top_k must be greater than 0, got {k}")
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if not documents:
            return {"documents": []}
        reranker = self._current_reranker()
        reusable = (
            self.document_store.ids_with_vectors([d.id for d in documents]) if self.document_store else set()
        )
        candidates = [self._candidate(d, reusable) for d in documents]
        ranked = reranker.rerank(query, candidates, top_n=k)
        result = [replace(documents[i], score=score) for i, score in ranked]
        if threshold is not None:
            result = [d for d in result if d.score is not None and d.score >= threshold]
        return {"documents": result}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """:meth:`run` without blocking the event loop (the model runs in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.run, query, documents, top_k, score_threshold)

    def _current_reranker(self) -> MaxSimReranker:
        """The core reranker, rebuilt once the store's index exists (it may be created after warm-up)."""
        encoder = self._loaded_encoder()
        index = self.document_store.core_index() if self.document_store is not None else None
        if self._reranker is None or index is not self._reranker_index:
            self._reranker = MaxSimReranker(encoder, index=index, dpi=self.dpi, batch_size=self.batch_size)
            self._reranker_index = index
        return self._reranker

    def _candidate(self, document: Document, reusable: set[str]) -> Candidate:
        file_path, page_number = page_location(document)
        # Without a store, the id only keys the in-memory cache; with one, only pages stored
        # with real vectors may be looked up there.
        stored = document.id in reusable
        image = blob_image(document)
        if not stored and image is None and file_path is None:
            where = (
                f"the store at {self.document_store.path} holds no vectors for it and "
                if self.document_store
                else ""
            )
            raise InvalidDocumentError(
                f"cannot rerank document {document.id!r}: {where}it carries neither an image blob nor "
                "meta['file_path'] (+ 'page_number'). Keep the page's file path and page number in its meta, "
                "or attach its image."
            )
        use_id = document.id if self.document_store is None or stored else None
        content_hash = document.meta.get(CONTENT_HASH)  # guards rendering against a changed file
        return Candidate(
            id=use_id,
            image=image,
            source=file_path,
            page=page_number,
            content_hash=content_hash if isinstance(content_hash, str) and content_hash else None,
        )
