"""``MMEmbedRetriever``: pages from an mmembed index as LangChain ``Document`` objects."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ._core import (
    check_index_argument,
    index_exists,
    is_index_object,
    load_encoder,
    open_index,
    stored_encoder_name,
)
from .document_loaders import page_metadata
from .images import IMAGE_BASE64, IMAGE_MIME_TYPE, IMAGE_PATH, document_image, encode_image, sniff_mime_type

if TYPE_CHECKING:
    from mmembed.encoders.base import Encoder
    from mmembed.index.protocol import IndexBackend
    from mmembed.types import SearchHit

RetrievedImage = Literal["thumbnail", "page", "none"]
SearchMode = Literal["visual", "text", "hybrid"]

PAGE_CONTENT_KEY = "page_content"
"""Index metadata key under which :meth:`MMEmbedRetriever.add_documents` keeps a page's text."""
_MANAGED_KEYS = {
    "source",
    "page",
    "total_pages",
    "page_count",
    "content_hash",
    "id",
    "score",
    "relevance_score",
    PAGE_CONTENT_KEY,
    "matches",
}
_IMAGE_KEYS = {IMAGE_BASE64, IMAGE_MIME_TYPE, IMAGE_PATH}


class MMEmbedRetriever(BaseRetriever):
    """Retrieve pages from an mmembed index (any backend) with its exact scoring.

    The index decides the scoring: late-interaction **MaxSim** for a multi-vector model
    (ColQwen2.5, ColPali, ...), **dense** dot/cosine for a single-vector one. Give either
    an index folder (the model defaults to the one the index was built with) or an open
    index object (``mmembed.open_index(...)``, or any backend implementing mmembed's
    index protocol).

    Each ``Document`` has ``id`` = the page id, ``metadata`` with ``source``, ``page``
    (1-based), ``total_pages``, ``content_hash``, ``id``, ``score``, the index's own
    metadata, and the page image (``image_base64`` + ``image_mime_type``) as chosen by
    ``image``; ``page_content`` is the page text stored with it (usually ``""``). With
    ``explain=True`` each also carries its page's similarity overlay under
    ``metadata["similarity_map"]`` (``png_base64``, ``rows``, ``cols``, ``tokens``,
    ``vectors_from``; multi-vector image models only).

    ``search_mode``: ``"visual"`` (default, the page images' vectors), ``"text"`` (the pages'
    own text layer, bm25) or ``"hybrid"`` (both fused by reciprocal rank fusion, ``rrf_k``; or
    with ``alpha`` by ``alpha * visual + (1 - alpha) * text`` of normalised scores). Text and
    hybrid results say which side found them in ``metadata["matches"]``. The retriever is a
    plain ``BaseRetriever``, so it also works inside LangChain's ``EnsembleRetriever``.

    ``k`` and ``filter`` can be set in the constructor and overridden per call:
    ``retriever.invoke("query", k=3, filter={"source": "report.pdf"})``. Filters use
    mmembed's syntax (``{"page": {"$in": [1, 2]}}``, ``{"year": {"$gte": 2020}}``, ...).

    Example:
        .. code-block:: python

            from langchain_mmembed import MMEmbedRetriever

            retriever = MMEmbedRetriever(index="my_index", k=3)
            docs = retriever.invoke("What was the 2023 revenue?")
            docs[0].metadata["source"], docs[0].metadata["page"], docs[0].metadata["score"]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    index: Any
    """Index folder (``str``/``Path``) or an open mmembed index object."""
    model: str | None = None
    """Model id or folder; default: the model the index was built with."""
    revision: str | None = None
    device: str | None = None
    dtype: str | None = None
    model_kwargs: dict[str, Any] = {}
    """Options of the model family (see ``mmembed models``), as for ``MMEmbedEmbeddings``."""
    k: int = Field(default=4, ge=1)
    """Number of pages to return."""
    filter: dict[str, Any] | None = None
    """Metadata pre-filter applied before scoring (mmembed filter syntax)."""
    image: RetrievedImage = "thumbnail"
    """Page image in each Document: the index's ``"thumbnail"``, the full ``"page"``
    re-rendered from its source file at ``dpi``, or ``"none"``."""
    dpi: int = 144
    explain: bool = False
    """Add each page's similarity overlay (see :meth:`mmembed.Retriever.explain_metadata`)."""
    search_mode: SearchMode = "visual"
    """``"visual"``, ``"text"`` or ``"hybrid"`` (see above)."""
    alpha: float | None = None
    """Hybrid only: weight of the visual side in a weighted sum (``None``: reciprocal rank fusion)."""
    rrf_k: int | None = None
    """Hybrid only: reciprocal rank fusion's constant (default 60)."""
    batch_size: int = Field(default=8, ge=1)
    """Pages per forward pass in :meth:`add_documents`."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _index: Any = PrivateAttr(default=None)
    _encoder: Any = PrivateAttr(default=None)
    _searcher: Any = PrivateAttr(default=None)  # core Retriever over (_index, _encoder)

    @field_validator("index")
    @classmethod
    def _check_index(cls, value: Any) -> Any:
        return check_index_argument(value, "MMEmbedRetriever")

    @model_validator(mode="after")
    def _check_model(self) -> MMEmbedRetriever:
        if self.model is None and not is_index_object(self.index) and not index_exists(self.index):
            raise ValueError(
                f"MMEmbedRetriever: no index at {os.fspath(self.index)!r} to take the model from; pass "
                "model=<checkpoint> to create one (then fill it with add_documents), or point index= at "
                "a folder built with `mmembed index` / mmembed.index_documents"
            )
        from mmembed.index.fusion import search_options

        try:
            search_options(self.search_mode, self.alpha, self.rrf_k)  # fail fast, core's rule
        except Exception as exc:
            raise ValueError(f"MMEmbedRetriever: {exc}") from exc
        return self

    # -- lazy resources ---------------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        """The query encoder (loaded on first use, shared process-wide)."""
        self._ensure_open(create=False)
        return self._encoder  # type: ignore[no-any-return]

    @property
    def vector_index(self) -> IndexBackend:
        """The open core index (opening a folder that holds no index raises ``IndexNotFoundError``)."""
        self._ensure_open(create=False)
        return self._index  # type: ignore[no-any-return]

    def _ensure_open(self, *, create: bool) -> None:
        with self._lock:
            replaced = getattr(self._index, "replaced", False) and not is_index_object(self.index)
            if self._index is not None and replaced:  # folder deleted or recreated: reopen it
                self._index.close()
                self._index = self._encoder = self._searcher = None
            if self._index is not None:
                return
            model, revision = self.model, self.revision
            if model is None:
                model, revision = stored_encoder_name(self.index)
            encoder = load_encoder(
                model, revision=revision, device=self.device, dtype=self.dtype, **self.model_kwargs
            )
            # Searching never creates an index (a mistyped path must not look like an empty index).
            index = open_index(self.index, encoder.info, create=create)
            from mmembed.retrieve import Retriever

            # checks the encoder fits the index; an index created here on purpose may be empty
            self._searcher = Retriever(index, encoder, allow_empty=create)
            self._index, self._encoder = index, encoder

    # -- retrieval --------------------------------------------------------------------

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
    ) -> list[Document]:
        return self._search(query, k, filter)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
    ) -> list[Document]:
        return await run_in_executor(None, self._search, query, k, filter)

    def _search(self, query: str, k: int | None, where: dict[str, Any] | None) -> list[Document]:
        top_k = self.k if k is None else k
        if top_k < 1:
            raise ValueError(f"k must be >= 1, got {top_k}")
        self._ensure_open(create=False)
        hits = self._searcher.search(
            query,
            k=top_k,
            where=where if where is not None else self.filter,
            mode=self.search_mode,
            alpha=self.alpha,
            rrf_k=self.rrf_k,
        )
        documents = [self._to_document(hit) for hit in hits]
        if self.explain:
            from mmembed.retrieve import SIMILARITY_MAP_KEY

            for document, hit in zip(documents, hits, strict=True):
                document.metadata[SIMILARITY_MAP_KEY] = self._searcher.explain_metadata(
                    query, hit, dpi=self.dpi
                )
        return documents

    def _to_document(self, hit: SearchHit) -> Document:
        from mmembed.retrieve import shared_metadata

        record = hit.record
        stored = shared_metadata(record.metadata)
        text = stored.pop(PAGE_CONTENT_KEY, "")
        total_pages = stored.pop("page_count", None)
        meta = {
            **stored,
            **page_metadata(
                source=record.source,
                page=record.page,
                total_pages=total_pages if isinstance(total_pages, int) else None,
                content_hash=record.content_hash,
                page_id=record.id,
            ),
            "score": hit.score,
        }
        if hit.matches:  # text / hybrid: which side(s) found the page, rank and score on each
            meta["matches"] = [m.to_json() for m in hit.matches]
        image = self._image_bytes(hit)
        if image is not None:
            meta[IMAGE_BASE64] = base64.b64encode(image).decode("ascii")
            meta[IMAGE_MIME_TYPE] = sniff_mime_type(image)
        return Document(
            id=record.id, page_content=text if isinstance(text, str) else str(text), metadata=meta
        )

    def _image_bytes(self, hit: SearchHit) -> bytes | None:
        if self.image == "thumbnail":
            return hit.record.thumbnail
        if self.image == "page":
            import mmembed

            return encode_image(mmembed.render_page(hit.record.source, hit.record.page, dpi=self.dpi), "jpeg")
        return None

    # -- indexing ---------------------------------------------------------------------

    def add_documents(self, documents: Iterable[Document], *, thumbnails: bool = True) -> list[str]:
        """Embed page ``Document`` objects (e.g. from :class:`PDFPageImageLoader`) into the index.

        The page image comes from the document's metadata (``image_base64`` /
        ``image_path``), else it is rendered from ``source`` + ``page`` (1-based). Pages
        are upserted in batches of ``batch_size``, keyed by ``Document.id`` (the page id
        when it came from the loader). Non-empty ``page_content`` is stored with the page
        and returned by later searches. Returns the stored ids.
        """
        ids: list[str] = []
        batch: list[Document] = []
        for doc in documents:
            batch.append(doc)
            if len(batch) >= self.batch_size:
                ids += self._add_batch(batch, thumbnails)
                batch = []
        if batch:
            ids += self._add_batch(batch, thumbnails)
        return ids

    async def aadd_documents(self, documents: Iterable[Document], *, thumbnails: bool = True) -> list[str]:
        return await run_in_executor(None, self.add_documents, list(documents), thumbnails=thumbnails)

    def _add_batch(self, documents: Sequence[Document], thumbnails: bool) -> list[str]:
        import mmembed
        from mmembed.explain import LAYOUT_KEY, encoded_layout
        from mmembed.loaders import make_thumbnail

        self._ensure_open(create=True)
        images = [_page_image(doc, self.dpi) for doc in documents]
        embeddings, layouts = self.encoder.encode_pages(images)  # layouts: off the same processor run
        pages = []
        for i, (doc, image, embedding) in enumerate(zip(documents, images, embeddings, strict=True)):
            fields = _page_fields(doc)
            layout = encoded_layout(self.encoder, image, embedding, layouts, i)  # maps from stored vectors
            if layout is not None:
                fields["metadata"][LAYOUT_KEY] = layout
            thumbnail = make_thumbnail(image) if thumbnails else None
            pages.append(mmembed.PageInput(embedding=embedding, **fields, thumbnail=thumbnail))
        return self.vector_index.upsert(pages)

    @classmethod
    def from_documents(
        cls, documents: Iterable[Document], *, index: Any, model: str | None = None, **kwargs: Any
    ) -> MMEmbedRetriever:
        """A retriever over ``index`` (created if missing, with the encoder recorded, even when
        ``documents`` is empty) after adding ``documents`` to it."""
        retriever = cls(index=index, model=model, **kwargs)
        retriever._ensure_open(create=True)
        retriever.add_documents(documents)
        return retriever

    def close(self) -> None:
        """Close the index if this retriever opened it from a path."""
        with self._lock:
            if self._index is not None and not is_index_object(self.index):
                self._index.close()
            self._index = self._encoder = self._searcher = None


def _page_image(doc: Document, dpi: int) -> Any:
    image = document_image(doc)
    if image is not None:
        return image.convert("RGB")
    source, page = doc.metadata.get("source"), doc.metadata.get("page")
    if not isinstance(source, str) or not isinstance(page, int):
        raise ValueError(
            f"document {doc.id!r} carries no page image (image_base64 / image_path) and no source "
            "file + 1-based page number to render it from; load pages with PDFPageImageLoader"
        )
    import mmembed

    return mmembed.render_page(source, page, dpi=dpi)


def _page_fields(doc: Document) -> dict[str, Any]:
    """``PageInput`` fields (minus the vectors) of a page Document."""
    import hashlib

    meta = doc.metadata
    source = str(meta.get("source", ""))
    page = meta.get("page")
    if not source or not isinstance(page, int):
        raise ValueError(
            f"document {doc.id!r} needs metadata 'source' and an integer 1-based 'page' to be indexed"
        )
    content_hash = meta.get("content_hash")
    if not isinstance(content_hash, str) or not content_hash:
        # Not from PDFPageImageLoader: identify the page by its source name.
        content_hash = hashlib.sha256(source.encode()).hexdigest()
    extra = {k: v for k, v in meta.items() if k not in _MANAGED_KEYS and k not in _IMAGE_KEYS}
    if isinstance(meta.get("total_pages"), int):
        extra["page_count"] = meta["total_pages"]
    text = None
    if doc.page_content:
        from mmembed.index.text import clean_text

        extra[PAGE_CONTENT_KEY] = doc.page_content
        text = clean_text(doc.page_content, where=f"document {doc.id!r}") or None  # text search
    return {
        "source": source,
        "page": page,
        "content_hash": content_hash,
        "metadata": extra,
        "id": doc.id or meta.get("id"),
        "text": text,
    }
