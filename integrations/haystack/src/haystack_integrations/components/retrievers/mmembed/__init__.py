"""mmembed retrievers for Haystack: exact MaxSim / dense search (optionally hybrid) and bm25
keyword search of an MMEmbedDocumentStore."""

from .bm25_retriever import MMEmbedBM25Retriever
from .retriever import MMEmbedRetriever

__all__ = ["MMEmbedBM25Retriever", "MMEmbedRetriever"]
