"""mmembed ranker for Haystack: exact MaxSim reranking of page documents."""

from .ranker import MMEmbedMaxSimRanker

__all__ = ["MMEmbedMaxSimRanker"]
