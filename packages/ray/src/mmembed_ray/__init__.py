"""Distributed indexing for mmembed on Ray Data.

>>> report = index_documents(["corpus/"], "qdrant://db:6333/pages", "vidore/colqwen2.5-v0.2",
...                          address="auto", encoders=4, gpus_per_encoder=1)  # doctest: +SKIP
"""

from __future__ import annotations

from .pipeline import index_documents

__all__ = ["index_documents"]
