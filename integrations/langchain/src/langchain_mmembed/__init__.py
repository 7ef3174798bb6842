"""LangChain integration of mmembed: PDF pages as images, MaxSim retrieval and reranking.

- :class:`PDFPageImageLoader` — one ``Document`` per page, the page image in metadata;
- :class:`MediaSegmentLoader` — one ``Document`` per segment of an audio / video file;
- :class:`MMEmbedEmbeddings` — ``Embeddings`` (plus ``embed_image``) from any mmembed model;
- :class:`MMEmbedRetriever` — pages from an mmembed index, MaxSim or dense;
- :class:`MMEmbedMaxSimReranker` — MaxSim rerank of any retriever's documents;
- :func:`image_content_blocks` — retrieved pages as ``image_url`` blocks for a chat model.

Importing this package is cheap: models load on first use.
"""

from __future__ import annotations

from .document_loaders import PDFPageImageLoader
from .embeddings import MMEmbedEmbeddings
from .images import image_content_blocks, image_data_url
from .media_loaders import MediaSegmentLoader
from .rerankers import MMEmbedMaxSimReranker
from .retrievers import MMEmbedRetriever

__version__ = "0.1.0"

__all__ = [
    "MMEmbedEmbeddings",
    "MMEmbedMaxSimReranker",
    "MMEmbedRetriever",
    "MediaSegmentLoader",
    "PDFPageImageLoader",
    "__version__",
    "image_content_blocks",
    "image_data_url",
]
