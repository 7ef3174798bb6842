"""``MMEmbedMaxSimReranker``: late-interaction rerank of any retriever's page Documents."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ._core import (
    check_index_argument,
    is_index_object,
    load_encoder,
    open_index_readonly,
    stored_encoder_name,
)
from .images import document_image

if TYPE_CHECKING:
    from mmembed.encoders.base import Encoder
    from mmembed.index.protocol import IndexBackend
    from mmembed.retrieve import Candidate, MaxSimReranker

RELEVANCE_SCORE = "relevance_score"


class MMEmbedMaxSimReranker(BaseDocumentCompressor):
    """Rerank page ``Document`` objects by exact MaxSim (late-interaction) scores.

    Works on the output of any retriever, e.g. as the ``base_compressor`` of LangChain's
    ``ContextualCompressionRetriever``. For each document the page vectors come from, in
    order:

    1. the mmembed ``index`` (when given and built with the same model), looked up by
       ``Document.id`` or ``metadata["id"]`` — no re-encoding of pages it knows;
    2. this reranker's in-memory cache of pages it already encoded;
    3. encoding the page image the document carries (``image_base64`` / ``image_path``),
       else the page rendered from ``metadata["source"]`` + ``metadata["page"]``.

    The top ``top_n`` documents are returned best first, each with
    ``metadata["relevance_score"]``. ``page`` is read as 1-based; set
    ``zero_based_pages=True`` for documents from loaders that count from 0 (LangChain's
    ``PyPDFLoader``).

    Example:
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever
            from langchain_mmembed import MMEmbedMaxSimReranker

            reranker = MMEmbedMaxSimReranker(model="vidore/colqwen2.5-v0.2", index="my_index", top_n=3)
            retriever = ContextualCompressionRetriever(base_compressor=reranker, base_retriever=first_stage)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model: str | None = None
    """Multi-vector model id or folder; default: the model ``index`` was built with."""
    index: Any = None
    """Optional index folder or open mmembed index whose stored vectors are reused."""
    revision: str | None = None
    device: str | None = None
    dtype: str | None = None
    model_kwargs: dict[str, Any] = {}
    """Options of the model family (see ``mmembed models``), as for ``MMEmbedEmbeddings``."""
    top_n: int | None = Field(default=3, ge=1)
    """Documents to keep (``None``: all, reordered)."""
    dpi: float = 144
    """Resolution for pages rendered from their source file."""
    zero_based_pages: bool = False
    """Read ``metadata["page"]`` as 0-based."""
    cache_size: int = Field(default=1024, ge=0)
    """Encoded pages kept in memory between calls."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _reranker: Any = PrivateAttr(default=None)

    @field_validator("index")
    @classmethod
    def _check_index(cls, value: Any) -> Any:
        return check_index_argument(value, "MMEmbedMaxSimReranker")

    @model_validator(mode="after")
    def _check_model(self) -> MMEmbedMaxSimReranker:
        if self.model is None and self.index is None:
            raise ValueError("MMEmbedMaxSimReranker needs model=<checkpoint> (and optionally index=...)")
        return self

    @property
    def reranker(self) -> MaxSimReranker:
        """The core reranker (created on first use; its encoder is shared process-wide)."""
        with self._lock:
            if self._reranker is None:
                from mmembed.retrieve import MaxSimReranker

                model, revision = self.model, self.revision
                if model is None:
                    model, revision = stored_encoder_name(self.index)
                encoder = load_encoder(
                    model, revision=revision, device=self.device, dtype=self.dtype, **self.model_kwargs
                )
                index = self._open_index(encoder)
                self._reranker = MaxSimReranker(
                    encoder, index=index, cache_size=self.cache_size, dpi=self.dpi
                )
            return self._reranker  # type: ignore[no-any-return]

    def _open_index(self, encoder: Encoder) -> IndexBackend | None:
        """The index to reuse vectors from (read-only when opened from a folder)."""
        if self.index is None:
            return None
        if is_index_object(self.index):
            return self.index  # type: ignore[no-any-return]
        # Read-only and without the encoder check: core's reranker itself decides whether the
        # stored vectors are comparable (a dense first-stage index is simply not reused).
        return open_index_readonly(self.index)

    @property
    def pages_encoded(self) -> int:
        """Pages this reranker had to encode (not found in the index or its cache)."""
        return self.reranker.pages_encoded

    @property
    def pages_reused(self) -> int:
        """Pages whose vectors came from the index."""
        return self.reranker.pages_reused

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The ``top_n`` documents, best first, each with ``metadata["relevance_score"]``."""
        if not documents:
            return []
        candidates = [self._candidate(doc) for doc in documents]
        ranked = self.reranker.rerank(query, candidates, top_n=self.top_n)
        out = []
        for position, score in ranked:
            doc = documents[position]
            out.append(
                Document(
                    id=doc.id,
                    page_content=doc.page_content,
                    metadata={**doc.metadata, RELEVANCE_SCORE: score},
                )
            )
        return out

    def _candidate(self, doc: Document) -> Candidate:
        from mmembed.retrieve import Candidate

        meta = doc.metadata
        page_id = doc.id or meta.get("id")
        page = meta.get("page")
        if isinstance(page, int) and self.zero_based_pages:
            page += 1
        source = meta.get("source")
        return Candidate(
            id=str(page_id) if page_id else None,
            image=document_image(doc, lazy=True),
            source=str(source) if source is not None else None,
            page=page if isinstance(page, int) else None,
            content_hash=_file_hash(meta, source),
        )


def _file_hash(meta: dict[str, Any], source: Any) -> str | None:
    """The file's content hash recorded in ``meta``, which lets core refuse to render a file
    changed since indexing. ``MMEmbedRetriever.add_documents`` names pages that had no hash
    by the hash of their source *name*: that one says nothing about the file's bytes."""
    content_hash = meta.get("content_hash")
    if not isinstance(content_hash, str) or not content_hash:
        return None
    if isinstance(source, str) and content_hash == hashlib.sha256(source.encode()).hexdigest():
        return None
    return content_hash
