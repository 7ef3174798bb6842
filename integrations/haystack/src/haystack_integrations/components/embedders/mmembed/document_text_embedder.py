"""``MMEmbedDocumentTextEmbedder``: text documents → document embeddings."""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack_integrations.document_stores.mmembed._component import EncoderComponentMixin
from haystack_integrations.document_stores.mmembed.documents import InvalidDocumentError, attach_embedding


@component
class MMEmbedDocumentTextEmbedder(EncoderComponentMixin):
    """Embeds text documents (their ``content``) on the model's document side: Nomic's
    ``search_document:``, Omni's ``passage:``, colpali-engine's ``process_texts`` for the
    ColPali-style families; the same vectors LangChain's ``embed_documents`` and LlamaIndex's
    text embeddings give.

    Output documents are new objects carrying the embeddings like
    ``MMEmbedDocumentImageEmbedder``'s (``Document.embedding`` the single-vector view, the exact
    vectors under ``meta["_mmembed_embedding"]``), so text and page documents share one
    ``MMEmbedDocumentStore`` and one retriever.

    ```python
    from haystack import Document
    from haystack_integrations.components.embedders.mmembed import MMEmbedDocumentTextEmbedder

    embedder = MMEmbedDocumentTextEmbedder(model="nomic-ai/nomic-embed-vision-v1.5")
    embedder.warm_up()
    documents = embedder.run(documents=[Document(content="Solar capacity grew 30% in 2023.")])["documents"]
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
        batch_size: int = 8,
        progress_bar: bool = False,
    ) -> None:
        """
        :param model: Hugging Face model id or local checkpoint folder.
        :param revision: Model revision (commit, branch or tag) to pin.
        :param device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; default: the best available.
        :param dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; default: chosen for the device.
        :param model_kwargs: Options of the model family (see ``mmembed models``).
        :param batch_size: Documents encoded together.
        :param progress_bar: Show a progress bar while encoding.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._init_model(model, revision, device, dtype, model_kwargs)
        self.batch_size = batch_size
        self.progress_bar = progress_bar

    def to_dict(self) -> dict[str, Any]:
        """Serialise the component."""
        return default_to_dict(
            self, **self._model_params(), batch_size=self.batch_size, progress_bar=self.progress_bar
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMEmbedDocumentTextEmbedder:
        """Deserialise the component."""
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Embed the text of every document.

        :param documents: Documents with text ``content``.
        :returns: ``documents``: new documents carrying their embeddings, in input order.
        :raises TypeError: ``documents`` is not a list of ``Document``.
        :raises InvalidDocumentError: a document has no text content (page images go to
            ``MMEmbedDocumentImageEmbedder``).
        """
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise TypeError(
                "MMEmbedDocumentTextEmbedder expects a list of Documents; to embed a query use MMEmbedTextEmbedder"
            )
        for d in documents:
            if not isinstance(d.content, str) or not d.content.strip():
                raise InvalidDocumentError(
                    f"document {d.id!r} has no text content to embed; embed page images with "
                    "MMEmbedDocumentImageEmbedder"
                )
        if not documents:
            return {"documents": []}
        encoder = self._loaded_encoder()
        vectors = encoder.encode_text_documents(
            [d.content or "" for d in documents], batch_size=self.batch_size, progress=self.progress_bar
        )  # each (n_vectors, dim)
        return {
            "documents": [
                attach_embedding(d, v, encoder.info) for d, v in zip(documents, vectors, strict=True)
            ]
        }
