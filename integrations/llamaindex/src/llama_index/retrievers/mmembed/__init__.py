"""LlamaIndex retriever over an mmembed page index (MaxSim or dense scoring)."""

from llama_index.retrievers.mmembed.base import MMEmbedRetriever
from llama_index.retrievers.mmembed.filters import UnsupportedFilterError, to_where

__all__ = ["MMEmbedRetriever", "UnsupportedFilterError", "to_where"]
