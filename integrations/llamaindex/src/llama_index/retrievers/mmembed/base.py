"""MMEmbedRetriever: pages from an mmembed index as LlamaIndex ``ImageNode`` results."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import MetadataFilters, VectorStoreQueryMode
from llama_index.readers.mmembed.pages import (
    HIDDEN_KEYS,
    IMAGE_MIMETYPES,
    PAGE_COUNT,
    bytes_to_base64,
    image_to_base64,
    page_image_file,
    page_metadata,
    sniff_mimetype,
)

from mmembed.types import MMEmbedError

from .filters import Where, to_where

if TYPE_CHECKING:
    from mmembed.encoders.base import Encoder
    from mmembed.index.protocol import IndexBackend
    from mmembed.pipeline import IndexReport
    from mmembed.types import PageRecord, SearchHit

logger = logging.getLogger(__name__)

ImageMode = Literal["base64", "thumbnail", "path", "none"]


class MMEmbedRetriever(BaseRetriever):
    """Retrieve pages from an mmembed index (any backend) for a text query.

    Scoring follows the encoder the index was built with: exact MaxSim for multi-vector
    models (ColQwen2.5, ColPali, ...), dot / cosine for single-vector ones. Each result is a
    ``NodeWithScore`` around an ``ImageNode`` whose id is the page's id in the index (so
    ``MMEmbedRerank`` reuses its stored vectors) and whose metadata follows
    :mod:`llama_index.readers.mmembed.pages` plus the metadata stored with the page.

    ``index`` is an index folder (opened on first use) or an already open index object
    (``mmembed.open_backend(...)``, a Qdrant backend, ...). ``model_name`` defaults to the
    encoder recorded in the index; ``model_kwargs`` are the model family's options (see
    ``mmembed models``), as for ``MMEmbedEmbedding``. ``image_mode`` decides what the node carries:
    ``"base64"`` — the page rendered at ``dpi``; ``"thumbnail"`` — the small JPEG stored in
    the index (no rendering); ``"path"`` — a rendered image file in ``image_dir``;
    ``"none"`` — metadata only. ``filters`` (LlamaIndex ``MetadataFilters`` or an mmembed
    filter dict) are applied before scoring. ``explain=True`` adds each page's similarity
    overlay under ``metadata["similarity_map"]`` (``png_base64``, ``rows``, ``cols``,
    ``tokens``, ``vectors_from``; multi-vector image models only; hidden from the LLM and
    the embedder).

    ``vector_store_query_mode`` (as on LlamaIndex's own vector retrievers): ``DEFAULT`` ranks
    by the page images' vectors, ``TEXT_SEARCH`` by the pages' own text layer (bm25),
    ``HYBRID`` fuses both — by reciprocal rank fusion, or with ``alpha`` by
    ``alpha * visual + (1 - alpha) * text`` of normalised scores (1 = vectors only). Other
    modes are refused.

    The constructor is cheap: the model and the index load on the first query.
    """

    def __init__(
        self,
        index: str | os.PathLike[str] | IndexBackend,
        model_name: str | None = None,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        similarity_top_k: int = 5,
        filters: MetadataFilters | Where | None = None,
        image_mode: ImageMode = "base64",
        image_format: Literal["PNG", "JPEG"] = "PNG",
        image_dir: str | None = None,
        dpi: float = 144,
        explain: bool = False,
        vector_store_query_mode: VectorStoreQueryMode | str = VectorStoreQueryMode.DEFAULT,
        alpha: float | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        object_map: dict[str, Any] | None = None,
    ) -> None:
        if similarity_top_k < 1:
            raise ValueError(f"similarity_top_k must be >= 1, got {similarity_top_k}")
        if image_mode not in ("base64", "thumbnail", "path", "none"):
            raise ValueError(
                f"image_mode must be 'base64', 'thumbnail', 'path' or 'none', got {image_mode!r}"
            )
        if isinstance(index, str | os.PathLike):
            self.index_path: str | None = os.fspath(index)
            self._index: IndexBackend | None = None
        else:
            self.index_path = _path_of(index)
            self._index = index
        self._owns_index = self._index is None
        self.model_name = model_name
        self.revision = revision
        self.device = device
        self.dtype = dtype
        self.model_kwargs = dict(model_kwargs or {})
        self.similarity_top_k = similarity_top_k
        to_where(filters)  # fail fast on an unsupported filter
        self.filters = filters
        self.image_mode: ImageMode = image_mode
        self.image_format: Literal["PNG", "JPEG"] = image_format
        self.image_dir = image_dir
        self.dpi = dpi
        self.explain = explain
        self.vector_store_query_mode = VectorStoreQueryMode(vector_store_query_mode)
        self.alpha = alpha
        _search_mode(self.vector_store_query_mode)  # fail fast on a mode mmembed has not
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()
        super().__init__(callback_manager=callback_manager, object_map=object_map, verbose=verbose)

    @classmethod
    def class_name(cls) -> str:
        return "MMEmbedRetriever"

    # Lazy resources ---------------------------------------------------------------
    @property
    def index(self) -> IndexBackend:
        """The mmembed index (opened now if this is its first use)."""
        return self._open_index(create=False)

    @property
    def encoder(self) -> Encoder:
        """The query encoder, shared process-wide through mmembed's encoder cache."""
        with self._lock:
            if self._encoder is None:
                import mmembed

                if self.model_name is None:
                    # Use the encoder that built the index.
                    stored = self._open_index_locked(create=False).encoder
                    self.model_name, self.revision = stored.name, self.revision or stored.revision
                self._encoder = mmembed.load_encoder(
                    self.model_name,
                    revision=self.revision,
                    device=self.device,
                    dtype=self.dtype,
                    **self.model_kwargs,
                )
            return self._encoder

    def _open_index(self, create: bool) -> IndexBackend:
        encoder = self.encoder
        with self._lock:
            index = self._open_index_locked(create=create, encoder=encoder)
        index.encoder.check_compatible(encoder.info, index_path=self.index_path or "")
        return index

    def _open_index_locked(self, create: bool, encoder: Encoder | None = None) -> IndexBackend:
        """Only indexing may create a missing index; a search on a wrong path fails clearly."""
        if self._owns_index and self._index is not None and getattr(self._index, "replaced", False):
            self._index.close()  # the folder was deleted or recreated: follow it, not the ghost
            self._index = None
        if self._index is None:
            import mmembed

            info = encoder.info if encoder is not None else None
            # Shared: a reranker or an indexer on the same folder in this process uses the
            # same open index (and writer lock).
            self._index = mmembed.open_backend(
                self._require_path(), encoder=info, create=create and info is not None, shared=True
            )
        return self._index

    def _require_path(self) -> str:
        if self.index_path is None:
            raise MMEmbedError("MMEmbedRetriever has no index: pass an index folder or an open index.")
        return self.index_path

    def close(self) -> None:
        """Close the index if this retriever opened it."""
        if self._owns_index and self._index is not None:
            self._index.close()
            self._index = None

    # Indexing convenience -----------------------------------------------------------
    def index_documents(self, sources: Any, **kwargs: Any) -> IndexReport:
        """Render, embed and store ``sources`` (PDFs, images, folders) in this retriever's index
        (created when missing).

        A thin call to :func:`mmembed.index_documents` (same keyword arguments); unchanged
        files are skipped, unreadable ones are listed in the report's ``issues``.
        """
        import mmembed

        return mmembed.index_documents(sources, self._open_index(create=True), self.encoder, **kwargs)

    # Retrieval ------------------------------------------------------------------------
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        import mmembed

        where = to_where(self.filters)
        searcher = mmembed.Retriever(self.index, self.encoder)
        mode = _search_mode(self.vector_store_query_mode)
        hits = searcher.search(
            query_bundle.query_str,
            k=self.similarity_top_k,
            where=where,
            mode=mode,
            alpha=self.alpha if mode == "hybrid" else None,
        )
        nodes = [self._node(hit) for hit in hits]
        if self.explain:
            from mmembed.retrieve import SIMILARITY_MAP_KEY

            for node, hit in zip(nodes, hits, strict=True):
                node.metadata[SIMILARITY_MAP_KEY] = searcher.explain_metadata(
                    query_bundle.query_str, hit, dpi=self.dpi
                )
                node.excluded_embed_metadata_keys.append(SIMILARITY_MAP_KEY)
                node.excluded_llm_metadata_keys.append(SIMILARITY_MAP_KEY)
        return [NodeWithScore(node=node, score=hit.score) for node, hit in zip(nodes, hits, strict=True)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def _node(self, hit: SearchHit) -> ImageNode:
        from mmembed.retrieve import shared_metadata

        record = hit.record
        metadata = page_metadata(
            record.source,
            record.page,
            record.content_hash,
            page_count=record.metadata.get(PAGE_COUNT),
            extra=shared_metadata(record.metadata),
        )
        return ImageNode(
            id_=hit.id,
            text="",
            metadata=metadata,
            excluded_embed_metadata_keys=list(HIDDEN_KEYS),
            excluded_llm_metadata_keys=list(HIDDEN_KEYS),
            **self._image_fields(record),
        )

    def _image_fields(self, record: PageRecord) -> dict[str, Any]:
        if self.image_mode == "none":
            return {}
        if self.image_mode == "thumbnail" and record.thumbnail is not None:
            return {
                "image": bytes_to_base64(record.thumbnail),
                "image_mimetype": sniff_mimetype(record.thumbnail),
            }
        import mmembed

        def render() -> Any:
            return mmembed.render_page(record.source, record.page, dpi=self.dpi)

        try:
            if self.image_mode == "path":
                path = page_image_file(
                    render, record.id, dpi=self.dpi, image_format=self.image_format, folder=self.image_dir
                )
                return {"image_path": str(path), "image_mimetype": IMAGE_MIMETYPES[self.image_format]}
            return {
                "image": image_to_base64(render(), self.image_format),
                "image_mimetype": IMAGE_MIMETYPES[self.image_format],
            }
        except (MMEmbedError, OSError) as error:
            # The file moved or changed since indexing: keep the hit, with what the index has.
            if record.thumbnail is not None:
                logger.warning(
                    "cannot render %s page %d (%s); using its thumbnail", record.source, record.page, error
                )
                return {
                    "image": bytes_to_base64(record.thumbnail),
                    "image_mimetype": sniff_mimetype(record.thumbnail),
                }
            logger.warning(
                "cannot render %s page %d (%s); the node has no image", record.source, record.page, error
            )
            return {}

    # Serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Settings as JSON-able data. An open index object is not serialised, only its path
        when it has one; ``from_dict(data, index=...)`` supplies it again."""
        filters = self.filters.model_dump() if isinstance(self.filters, MetadataFilters) else self.filters
        return {
            "class_name": self.class_name(),
            "index_path": self.index_path,
            "model_name": self.model_name,
            "revision": self.revision,
            "device": self.device,
            "dtype": self.dtype,
            "model_kwargs": self.model_kwargs,
            "similarity_top_k": self.similarity_top_k,
            "filters": filters,
            "filters_kind": "llama_index" if isinstance(self.filters, MetadataFilters) else "mmembed",
            "image_mode": self.image_mode,
            "image_format": self.image_format,
            "image_dir": self.image_dir,
            "dpi": self.dpi,
            "explain": self.explain,
            "vector_store_query_mode": self.vector_store_query_mode.value,
            "alpha": self.alpha,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> MMEmbedRetriever:
        settings = {k: v for k, v in data.items() if k not in ("class_name", "index_path", "filters_kind")}
        if settings.get("filters") is not None and data.get("filters_kind") == "llama_index":
            settings["filters"] = MetadataFilters.model_validate(settings["filters"])
        settings.update(kwargs)
        index = settings.pop("index", None) or data.get("index_path")
        if index is None:
            raise MMEmbedError(
                "the serialised retriever had an open index without a path; pass index=... to from_dict"
            )
        return cls(index, **settings)


_MODES = {
    VectorStoreQueryMode.DEFAULT: "visual",
    VectorStoreQueryMode.TEXT_SEARCH: "text",
    VectorStoreQueryMode.HYBRID: "hybrid",
}


def _search_mode(mode: VectorStoreQueryMode) -> str:
    """LlamaIndex's query mode as mmembed's search mode."""
    if mode not in _MODES:
        raise ValueError(
            f"vector_store_query_mode={mode.value!r} is not served by mmembed; use "
            + ", ".join(repr(m.value) for m in _MODES)
        )
    return _MODES[mode]


def _path_of(index: Any) -> str | None:
    path = getattr(index, "path", None)
    return os.fspath(path) if isinstance(path, str | os.PathLike) else None
