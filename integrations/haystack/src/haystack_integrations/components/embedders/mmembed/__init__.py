"""mmembed embedders for Haystack: page images, text documents and queries → (multi-)vector embeddings."""

from .document_image_embedder import MMEmbedDocumentImageEmbedder
from .document_text_embedder import MMEmbedDocumentTextEmbedder
from .text_embedder import MMEmbedTextEmbedder

__all__ = ["MMEmbedDocumentImageEmbedder", "MMEmbedDocumentTextEmbedder", "MMEmbedTextEmbedder"]
