"""MMEmbedEmbedding: text and page-image embeddings from any mmembed encoder."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageType
from llama_index.readers.mmembed.pages import open_image

from mmembed.types import MMEmbedError

if TYPE_CHECKING:
    import torch

    from mmembed.encoders.base import Encoder
    from mmembed.types import EncoderInfo


class MMEmbedEmbedding(MultiModalEmbedding):
    """Single-vector text and image embeddings from an mmembed encoder.

    Made for single-vector models (e.g. Nomic Embed Multimodal), where each text or page
    is one vector. A multi-vector (late-interaction) model such as ColQwen2.5 gives one
    vector per token; then, with ``multi_vector="pool"`` (the default), the embedding is
    :func:`mmembed.retrieve.pool` of those vectors — the mean of the L2-normalised token
    vectors, L2-normalised again — so any LlamaIndex vector store can serve as a cheap
    first stage before an exact MaxSim rerank with ``MMEmbedRerank``. ``multi_vector="error"``
    refuses multi-vector models instead.

    Queries go through the encoder's query side and texts (node contents) through its
    document side (e.g. Nomic's ``search_document: `` prefix, no query augmentation tokens for
    ColPali-style models; see ``Encoder.encode_text_documents``). The model is
    loaded on first use, once per process: every mmembed component given the same
    ``model_name`` / ``revision`` / ``device`` / ``dtype`` shares one copy of the weights.

    >>> embed = MMEmbedEmbedding(model_name="nomic-ai/nomic-embed-multimodal-3b")  # doctest: +SKIP
    >>> embed.get_query_embedding("solar capacity in 2023")  # doctest: +SKIP
    """

    model_name: str = Field(description="Checkpoint id or local folder of the mmembed encoder.")
    revision: str | None = Field(default=None, description="Checkpoint revision (commit, tag or branch).")
    device: str | None = Field(
        default=None, description="Torch device, e.g. 'cuda:0' (None: best available)."
    )
    dtype: str | None = Field(
        default=None, description="Torch dtype name, e.g. 'bfloat16' (None: model default)."
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of the model family (see `mmembed models`), e.g. Nomic Embed Vision's "
        "{'text_model': 'nomic-ai/nomic-embed-text-v1.5', 'matryoshka_dim': 256}.",
    )
    multi_vector: Literal["pool", "error"] = Field(
        default="pool",
        description="With a multi-vector model: return the pooled single vector, or raise.",
    )

    _encoder: Encoder | None = PrivateAttr(default=None)

    def __init__(self, model_name: str, **data: Any) -> None:
        super().__init__(model_name=model_name, **data)

    @classmethod
    def class_name(cls) -> str:
        return "MMEmbedEmbedding"

    @property
    def encoder(self) -> Encoder:
        """The mmembed encoder (loaded now if this is its first use in the process)."""
        if self._encoder is None:
            import mmembed

            self._encoder = mmembed.load_encoder(
                self.model_name,
                revision=self.revision,
                device=self.device,
                dtype=self.dtype,
                **self.model_kwargs,
            )
        return self._encoder

    @property
    def info(self) -> EncoderInfo:
        return self.encoder.info

    def _single_vectors(self, embeddings: Sequence[torch.Tensor]) -> list[Embedding]:
        from mmembed.retrieve import as_single_vectors

        info = self.encoder.info
        if info.kind == "multi" and self.multi_vector == "error":
            raise MMEmbedError(
                f"{info.name} is a multi-vector ({info.similarity}) model; MMEmbedEmbedding was "
                "created with multi_vector='error'. Use multi_vector='pool' for a pooled first-stage "
                "vector, or MMEmbedRetriever / MMEmbedRerank for exact late-interaction scores."
            )
        return as_single_vectors(embeddings)

    # Text: queries take the encoder's query prompt, texts (documents) its document prompt.
    def _get_query_embedding(self, query: str) -> Embedding:
        return self._single_vectors(self.encoder.encode_queries([query], batch_size=self.embed_batch_size))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        if not texts:
            return []
        return self._single_vectors(
            self.encoder.encode_text_documents(texts, batch_size=self.embed_batch_size)
        )

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    # Images: file paths or BytesIO, as LlamaIndex's ImageNode.resolve_image() gives them.
    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._get_image_embeddings([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        if not img_file_paths:
            return []
        images = [open_image(image) for image in img_file_paths]
        return self._single_vectors(self.encoder.encode_images(images, batch_size=self.embed_batch_size))

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_image_embeddings, img_file_paths)
