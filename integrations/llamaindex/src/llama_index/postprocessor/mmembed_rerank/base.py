"""MMEmbedRerank: exact late-interaction (MaxSim) reranking of LlamaIndex candidate nodes."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle
from llama_index.readers.mmembed.pages import (
    CONTENT_HASH,
    FILE_PATH,
    open_image,
    page_id_of,
    page_number_of,
)

from mmembed.types import MMEmbedError

if TYPE_CHECKING:
    from mmembed.index.protocol import IndexBackend
    from mmembed.retrieve import Candidate, MaxSimReranker


class MMEmbedRerank(BaseNodePostprocessor):
    """Rerank candidate pages by exact MaxSim with a late-interaction mmembed model.

    Works after any first-stage retriever. For each node the page vectors come from, in
    order: the mmembed ``index`` (when given and built with the same model) under the node's
    id or the page id implied by its ``content_hash`` + page number; pages this reranker
    has already encoded; or encoding the page now — rendered from ``file_path`` + page
    number (``page_number`` / ``page_label``), else the node's own image. Nodes without any
    of these raise an error naming the node. :attr:`pages_encoded` / :attr:`pages_reused`
    count the two paths.

    The model loads on first use and is shared process-wide with every mmembed component
    given the same ``model_name`` / ``revision`` / ``device`` / ``dtype``.

    >>> rerank = MMEmbedRerank(index="my_index", top_n=3)  # doctest: +SKIP
    >>> engine = RetrieverQueryEngine.from_args(dense_retriever, node_postprocessors=[rerank])  # doctest: +SKIP
    """

    model_name: str | None = Field(
        default=None, description="Checkpoint of the late-interaction encoder (default: the index's encoder)."
    )
    revision: str | None = Field(default=None, description="Checkpoint revision.")
    device: str | None = Field(default=None, description="Torch device (None: best available).")
    dtype: str | None = Field(default=None, description="Torch dtype name (None: model default).")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of the model family (see `mmembed models`), as for MMEmbedEmbedding.",
    )
    top_n: int = Field(default=5, ge=1, description="How many nodes to keep.")
    index_path: str | None = Field(default=None, description="mmembed index whose stored vectors to reuse.")
    dpi: float = Field(default=144, gt=0, description="Rendering resolution for pages that must be encoded.")
    batch_size: int | None = Field(default=None, description="Encoder batch size for unseen pages.")
    cache_size: int = Field(default=1024, ge=0, description="Encoded pages kept in memory for later queries.")

    _index: IndexBackend | None = PrivateAttr(default=None)
    _owns_index: bool = PrivateAttr(default=False)
    _reranker: MaxSimReranker | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self,
        model_name: str | None = None,
        *,
        index: str | os.PathLike[str] | IndexBackend | None = None,
        **data: Any,
    ) -> None:
        """``index`` is an index folder or an open index object (never serialised; its path is)."""
        index_object = None
        if isinstance(index, str | os.PathLike):
            data["index_path"] = os.fspath(index)
        elif index is not None:
            index_object = index
            path = getattr(index, "path", None)
            if data.get("index_path") is None and isinstance(path, str | os.PathLike):
                data["index_path"] = os.fspath(path)
        data["model_name"] = model_name
        super().__init__(**data)
        if self.model_name is None and index_object is None and self.index_path is None:
            raise MMEmbedError("MMEmbedRerank needs a model_name, or an index whose encoder it can use.")
        self._index = index_object

    @classmethod
    def class_name(cls) -> str:
        return "MMEmbedRerank"

    @property
    def reranker(self) -> MaxSimReranker:
        """mmembed's MaxSim reranker (model and index are loaded on first use)."""
        with self._lock:
            if self._reranker is None:
                self._reranker = self._build()
            return self._reranker

    def _build(self) -> MaxSimReranker:
        import mmembed

        if self._index is None and self.index_path is not None:
            # Only reads vectors; shared so an indexer or retriever on the folder in this
            # process keeps working alongside.
            self._index = mmembed.open_backend(self.index_path, readonly=True, shared=True)
            self._owns_index = True
        if self.model_name is None:
            assert self._index is not None
            self.model_name = self._index.encoder.name
            self.revision = self.revision or self._index.encoder.revision
        encoder = mmembed.load_encoder(
            self.model_name, revision=self.revision, device=self.device, dtype=self.dtype, **self.model_kwargs
        )
        # The core reranker decides whether the index's vectors are reusable (see reuses_index);
        # a single-vector model reranks by its own similarity (dot/cosine), as in every adapter.
        return mmembed.MaxSimReranker(
            encoder, index=self._index, cache_size=self.cache_size, dpi=self.dpi, batch_size=self.batch_size
        )

    @property
    def pages_encoded(self) -> int:
        """Pages this reranker had to encode (not found in the index or its cache)."""
        return self._reranker.pages_encoded if self._reranker is not None else 0

    @property
    def pages_reused(self) -> int:
        """Pages whose vectors were read from the index instead of being encoded."""
        return self._reranker.pages_reused if self._reranker is not None else 0

    def close(self) -> None:
        """Close the index if this reranker opened it."""
        if self._owns_index and self._index is not None:
            self._index.close()
            self._index = None
            self._reranker = None

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("MMEmbedRerank needs the query: pass query_bundle or query_str.")
        if not nodes:
            return []
        reranker = self.reranker  # loads first: candidates depend on whether the index is reusable
        candidates = self._candidates([n.node for n in nodes], reranker.reuses_index)
        ranked = reranker.rerank(query_bundle.query_str, candidates, top_n=self.top_n)
        return [NodeWithScore(node=nodes[position].node, score=score) for position, score in ranked]

    def _candidates(self, nodes: list[BaseNode], reuse_index: bool) -> list[Candidate]:
        implied = [page_id_of(node.metadata) for node in nodes]
        if self._index is None or not reuse_index:
            # Content-addressed ids where possible, so the in-memory cache recognises a page
            # whichever first stage returned it.
            ids = [page_id or node.node_id for node, page_id in zip(nodes, implied, strict=True)]
            return [self._candidate(node, node_id, False) for node, node_id in zip(nodes, ids, strict=True)]
        ids = [node.node_id for node in nodes]
        stored = [record is not None and record.n_vectors > 0 for record in self._index.get(ids)]
        # Nodes re-created by a node parser or a vector store lose the page id; their
        # content hash + page number still imply it.
        retry = {
            i: page_id for i, page_id in enumerate(implied) if page_id and not stored[i] and page_id != ids[i]
        }
        if retry:
            for (i, page_id), record in zip(
                retry.items(), self._index.get(list(retry.values())), strict=True
            ):
                # Stored or not, the content-addressed id is the better cache key.
                ids[i], stored[i] = page_id, record is not None and record.n_vectors > 0
        return [
            self._candidate(node, node_id, is_stored)
            for node, node_id, is_stored in zip(nodes, ids, stored, strict=True)
        ]

    def _candidate(self, node: BaseNode, node_id: str, is_stored: bool) -> Candidate:
        from mmembed.retrieve import Candidate

        source = node.metadata.get(FILE_PATH)
        page = page_number_of(node.metadata)
        content_hash = node.metadata.get(CONTENT_HASH)
        # Core refuses to render a file whose bytes no longer match the indexed hash.
        known_hash = content_hash if isinstance(content_hash, str) and content_hash else None
        if is_stored or (isinstance(source, str) and os.path.isfile(source)):
            return Candidate(id=node_id, source=source, page=page, content_hash=known_hash)
        resolve = getattr(node, "resolve_image", None)
        if resolve is not None:
            try:
                return Candidate(id=node_id, image=open_image(resolve()), source=source, page=page)
            except ValueError:  # LlamaIndex: "No image found in node."
                pass
        if isinstance(source, str):  # core names the missing file
            return Candidate(id=node_id, source=source, page=page, content_hash=known_hash)
        raise MMEmbedError(
            f"cannot rerank node {node.node_id}: it is not in the index and has neither an image nor "
            f"{FILE_PATH!r} + page number metadata. Use PDFPageImageReader / MMEmbedRetriever nodes, or keep "
            "the page's file path and page number in the node metadata."
        )
