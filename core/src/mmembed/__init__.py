"""mmembed: visual-document retrieval — page images in, ranked pages out.

The public API is small and noun-shaped:

- :func:`load_encoder` / :func:`list_models` — encoders, from a checkpoint's config;
- :func:`open_index` / :class:`LocalIndex` — the embedded on-disk page index;
  :func:`open_backend` — a folder or a backend URI (``qdrant://host:6333/pages``);
- :func:`load_pages` — PDFs, images and folders as page images;
- :func:`index_documents` and :class:`Retriever` / :class:`MaxSimReranker` — the jobs;
- :func:`maxsim` / :func:`score` — exact scoring of ragged multi-vectors;
- :func:`train` — fine-tune the index's model on (query, page) pairs (LoRA).

Names are imported lazily so that ``import mmembed`` stays cheap (no torch import).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # types
    "EncoderInfo": "mmembed.types",
    "PageRecord": "mmembed.types",
    "SearchHit": "mmembed.types",
    "MMEmbedError": "mmembed.types",
    "EncoderMismatchError": "mmembed.types",
    # scoring
    "Ragged": "mmembed.scoring",
    "maxsim": "mmembed.scoring",
    "score": "mmembed.scoring",
    # encoders
    "Encoder": "mmembed.encoders",
    "MediaClip": "mmembed.encoders",
    "load_encoder": "mmembed.encoders",
    "list_models": "mmembed.encoders",
    # index
    "LocalIndex": "mmembed.index",
    "IndexBackend": "mmembed.index",
    "PageInput": "mmembed.index",
    "open_index": "mmembed.index",
    "open_backend": "mmembed.index",
    # loaders
    "load_pages": "mmembed.loaders",
    "load_documents": "mmembed.loaders",
    "MediaSegment": "mmembed.loaders",
    "render_page": "mmembed.loaders",
    "Page": "mmembed.loaders",
    "LoadIssue": "mmembed.loaders",
    # jobs
    "index_documents": "mmembed.pipeline",
    "is_source_complete": "mmembed.pipeline",
    "IndexReport": "mmembed.pipeline",
    "Retriever": "mmembed.retrieve",
    "MaxSimReranker": "mmembed.retrieve",
    "Candidate": "mmembed.retrieve",
    "pool": "mmembed.retrieve",
    # fine-tuning
    "train": "mmembed.finetune",
    "TrainResult": "mmembed.finetune",
    "TrainSettings": "mmembed.finetune",
}

__all__ = [
    "Candidate",
    "Encoder",
    "EncoderInfo",
    "EncoderMismatchError",
    "IndexBackend",
    "IndexReport",
    "LoadIssue",
    "LocalIndex",
    "MMEmbedError",
    "MaxSimReranker",
    "MediaClip",
    "MediaSegment",
    "Page",
    "PageInput",
    "PageRecord",
    "Ragged",
    "Retriever",
    "SearchHit",
    "TrainResult",
    "TrainSettings",
    "index_documents",
    "is_source_complete",
    "list_models",
    "load_documents",
    "load_encoder",
    "load_pages",
    "maxsim",
    "open_backend",
    "open_index",
    "pool",
    "render_page",
    "score",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # A subpackage (``mmembed.index``) stays reachable as an attribute after ``import mmembed``.
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module 'mmembed' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .encoders import Encoder, MediaClip, list_models, load_encoder
    from .finetune import TrainResult, TrainSettings, train
    from .index import IndexBackend, LocalIndex, PageInput, open_backend, open_index
    from .loaders import LoadIssue, MediaSegment, Page, load_documents, load_pages, render_page
    from .pipeline import IndexReport, index_documents, is_source_complete
    from .retrieve import Candidate, MaxSimReranker, Retriever, pool
    from .scoring import Ragged, maxsim, score
    from .types import EncoderInfo, EncoderMismatchError, MMEmbedError, PageRecord, SearchHit
