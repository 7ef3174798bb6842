"""mmembed embedders for Haystack: page images and queries → (multi-)vector embeddings."""

from .document_image_embedder import MMEmbedDocumentImageEmbedder
from .text_embedder import MMEmbedTextEmbedder

__all__ = ["MMEmbedDocumentImageEmbedder", "MMEmbedTextEmbedder"]
