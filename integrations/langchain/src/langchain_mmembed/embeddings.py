"""``Embeddings`` backed by an mmembed encoder (single- or multi-vector)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from pydantic import BaseModel, ConfigDict, PrivateAttr

from ._core import load_encoder
from .images import open_image_uri

if TYPE_CHECKING:
    from mmembed.encoders.base import Encoder
    from mmembed.types import EncoderInfo


class MMEmbedEmbeddings(BaseModel, Embeddings):
    """LangChain embeddings from any model mmembed supports (ColQwen2.5, ColPali, Nomic, ...).

    ``embed_query`` uses the model's query side, ``embed_documents`` its document side (e.g.
    Nomic's ``search_document: `` prefix, Nemotron's ``passage: ``, no query augmentation
    tokens for ColPali-style models; see ``Encoder.encode_text_documents``), images go
    through ``embed_image`` (the LangChain community convention for multimodal embeddings).

    **Pooled vectors for multi-vector models.** LangChain's ``Embeddings`` returns one
    vector per input. For a single-vector model that is the model's own vector. For a
    multi-vector (late-interaction) model it is :func:`mmembed.retrieve.pool`: the mean
    of the L2-normalised token vectors, L2-normalised again, so cosine similarity
    between pooled vectors approximates the average token similarity. Pooled vectors
    suit a first stage in any LangChain vector store; for exact late-interaction scores
    use :class:`~langchain_mmembed.MMEmbedRetriever` or rerank with
    :class:`~langchain_mmembed.MMEmbedMaxSimReranker`.

    The model loads on first use and is shared (through mmembed's encoder cache) with
    every other object naming the same checkpoint.

    Example:
        .. code-block:: python

            from langchain_mmembed import MMEmbedEmbeddings

            embeddings = MMEmbedEmbeddings(model="vidore/colqwen2.5-v0.2")
            vector = embeddings.embed_query("solar panel efficiency")
            page_vectors = embeddings.embed_image(["page1.png", "page2.png"])
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    """Hugging Face model id or local checkpoint folder."""
    revision: str | None = None
    """Model revision (commit, tag or branch) to pin."""
    device: str | None = None
    """Torch device (``"cuda"``, ``"cpu"``...); default: the best available."""
    dtype: str | None = None
    """Torch dtype name (``"bfloat16"``, ``"float32"``...); default: the encoder's choice."""
    batch_size: int | None = None
    """Inputs per forward pass; default: the encoder's choice."""
    model_kwargs: dict[str, Any] = {}
    """Options of the model family (see ``mmembed models``), e.g. Nomic Embed Vision's
    ``{"text_model": "nomic-ai/nomic-embed-text-v1.5", "matryoshka_dim": 256}``."""

    _encoder: Encoder | None = PrivateAttr(default=None)

    @property
    def encoder(self) -> Encoder:
        """The core encoder (loaded on first access, shared process-wide)."""
        if self._encoder is None:
            self._encoder = load_encoder(
                self.model, revision=self.revision, device=self.device, dtype=self.dtype, **self.model_kwargs
            )
        return self._encoder

    @property
    def info(self) -> EncoderInfo:
        """Family, kind (``multi``/``single``), dimension and similarity of the model."""
        return self.encoder.info

    def _pooled(self, embeddings: Any) -> list[list[float]]:
        from mmembed.retrieve import as_single_vectors

        return as_single_vectors(embeddings)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text document, with the model's document prompt (pooled for
        multi-vector models)."""
        if not texts:
            return []
        return self._pooled(self.encoder.encode_text_documents(list(texts), batch_size=self.batch_size))

    def embed_query(self, text: str) -> list[float]:
        """One vector for the query, with the model's query prompt (pooled for multi-vector models)."""
        return self._pooled(self.encoder.encode_queries([text], batch_size=self.batch_size))[0]

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """One vector per image: local file paths (``file://`` accepted) or base64 data URLs."""
        if not uris:
            return []
        images = [open_image_uri(uri) for uri in uris]
        return self._pooled(self.encoder.encode_images(images, batch_size=self.batch_size))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await run_in_executor(None, self.embed_query, text)

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_image, uris)
