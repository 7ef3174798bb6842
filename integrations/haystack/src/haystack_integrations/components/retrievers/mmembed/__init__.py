"""mmembed retriever for Haystack: exact MaxSim / dense search of an MMEmbedDocumentStore."""

from .retriever import MMEmbedRetriever

__all__ = ["MMEmbedRetriever"]
