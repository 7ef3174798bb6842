"""LlamaIndex node postprocessor: MaxSim reranking with an mmembed late-interaction model."""

from llama_index.postprocessor.mmembed_rerank.base import MMEmbedRerank

__all__ = ["MMEmbedRerank"]
