"""``MMEmbedDocumentImageEmbedder``: page documents → page embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack_integrations.document_stores.mmembed._component import EncoderComponentMixin
from haystack_integrations.document_stores.mmembed.documents import (
    RENDER_META_KEY,
    InvalidDocumentError,
    attach_embedding,
    blob_image,
    page_location,
)

import mmembed
from mmembed.explain import encoded_layout

if TYPE_CHECKING:
    from PIL import Image


@component
class MMEmbedDocumentImageEmbedder(EncoderComponentMixin):
    """Embeds page images with a visual-document retrieval model (ColQwen2.5, ColPali, ...).

    The page image is the document's ``image/*`` blob if it has one, else the page
    ``meta["page_number"]`` of ``meta["file_path"]`` rendered by mmembed (documents from
    ``PDFToPageImageDocuments`` or Haystack's image converters qualify).

    Output documents are new objects (the input is not modified) with
    ``Document.embedding`` set to the single-vector view of the page (the model's vector,
    or the pooled vector of a multi-vector model) and the exact vectors attached under
    ``meta["_mmembed_embedding"]``, which ``MMEmbedDocumentStore`` stores in its index
    (see ``haystack_integrations.document_stores.mmembed.documents``).

    The model is loaded by ``warm_up()`` through mmembed's process-wide encoder cache, so
    every component naming the same model shares one copy.

    ```python
    from haystack_integrations.components.embedders.mmembed import MMEmbedDocumentImageEmbedder

    embedder = MMEmbedDocumentImageEmbedder(model="vidore/colqwen2.5-v0.2")
    embedder.warm_up()
    documents = embedder.run(documents=page_documents)["documents"]
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
        dpi: float | None = None,
        progress_bar: bool = False,
    ) -> None:
        """
        :param model: Hugging Face model id or local checkpoint folder.
        :param revision: Model revision (commit, branch or tag) to pin.
        :param device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; default: the best available.
        :param dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; default: chosen for the device.
        :param model_kwargs: Options of the model family (see ``mmembed models``), e.g.
            ``{"text_model": "nomic-ai/nomic-embed-text-v1.5", "matryoshka_dim": 256}``.
        :param batch_size: Pages rendered and encoded together.
        :param dpi: Resolution pages are rendered at when they carry no image. Default: the
            ``dpi`` ``PDFToPageImageDocuments`` rendered the document at (it travels in the
            document's meta), so the vectors match ``mmembed index --dpi N``; 144 for documents
            from elsewhere. A document's recorded dpi wins over this value.
        :param progress_bar: Show a progress bar while encoding.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._init_model(model, revision, device, dtype, model_kwargs)
        self.batch_size = batch_size
        self.dpi = dpi
        self.progress_bar = progress_bar

    def to_dict(self) -> dict[str, Any]:
        """Serialise the component."""
        return default_to_dict(
            self,
            **self._model_params(),
            batch_size=self.batch_size,
            dpi=self.dpi,
            progress_bar=self.progress_bar,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMEmbedDocumentImageEmbedder:
        """Deserialise the component."""
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Embed the page image of every document.

        :param documents: Page documents (image blob, or ``file_path`` + ``page_number`` meta).
        :returns: ``documents``: new documents carrying their embeddings, in input order.
        :raises TypeError: ``documents`` is not a list of ``Document``.
        :raises ValueError: a document has no image and no file to render it from.
        """
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise TypeError(
                "MMEmbedDocumentImageEmbedder expects a list of Documents; to embed a query use MMEmbedTextEmbedder"
            )
        encoder = self._loaded_encoder()
        embedded: list[Document] = []
        for start in range(0, len(documents), self.batch_size):
            batch = documents[start : start + self.batch_size]
            images = [self._image(d) for d in batch]
            # each (n_vectors, dim); the layouts come off the same processor run (None: ask page_layout)
            vectors, layouts = encoder.encode_pages(images, progress=self.progress_bar)
            embedded += [
                attach_embedding(d, v, encoder.info, layout=encoded_layout(encoder, image, v, layouts, i))
                for i, (d, v, image) in enumerate(zip(batch, vectors, images, strict=True))
            ]
        return {"documents": embedded}

    def _image(self, document: Document) -> Image.Image:
        image = blob_image(document)
        if image is not None:
            return image
        file_path, page_number = page_location(document)
        if file_path is None:
            raise InvalidDocumentError(
                f"document {document.id!r} has no image blob and no meta['file_path'] to render the page from; "
                "convert files with PDFToPageImageDocuments (or attach the page image as an image/* ByteStream)"
            )
        return mmembed.render_page(file_path, page_number or 1, dpi=self._dpi_of(document))

    def _dpi_of(self, document: Document) -> float:
        """The converter's dpi for ``document`` when it recorded one, else ``dpi`` (144)."""
        recorded = document.meta.get(RENDER_META_KEY)
        if isinstance(recorded, dict) and isinstance(recorded.get("dpi"), int | float):
            return float(recorded["dpi"])
        return 144.0 if self.dpi is None else float(self.dpi)
