"""LlamaIndex multimodal embedding backed by an mmembed encoder."""

from llama_index.embeddings.mmembed.base import MMEmbedEmbedding

__all__ = ["MMEmbedEmbedding"]
