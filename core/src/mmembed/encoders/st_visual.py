"""sentence-transformers v6 ``MultiVectorEncoder`` saves of transformers-native visual retrievers.

sentence-transformers 6.2 loads a ``*ForRetrieval`` checkpoint (``ColPaliForRetrieval``,
``ColQwen2ForRetrieval``, ``ColModernVBertForRetrieval``) as a ``Transformer`` with
``transformer_task: retrieval`` over text and images (its ``forward`` gives the projected,
L2-normalised, padding-zeroed ``embeddings``) followed by a ``MultiVectorMask``; ``save()``
writes that checkpoint unchanged at the folder's root plus ``modules.json``,
``config_sentence_transformers.json`` (``model_type: MultiVectorEncoder``),
``sentence_bert_config.json`` and ``1_MultiVectorMask/``. The vectors are then the native
model's: queries (and text documents, which sentence-transformers renders as queries too) through
the processor's query path, pages through its image path, padding dropped.

So such a folder loads through the native family of its ``config.json`` (``colpali_hf``,
``colqwen2_hf``, ``colmodernvbert_hf``), once :func:`check_wrapper` has made sure that the
sentence-transformers layer adds nothing those families do not do (prompts, a skiplist, kept
token ids, other modules): what it would add is refused with its name, never ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..types import MMEmbedError
from .checkpoint import CheckpointFacts
from .registry import LoadRequest

_SBERT = "sentence_bert_config.json"
_FORWARD = {"method": "forward", "method_output_name": "embeddings"}


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MMEmbedError(f"cannot read {path}: {err}") from err


def is_wrapper(folder: Path) -> bool:
    """Whether ``folder`` is a sentence-transformers save whose root Transformer runs a
    ``retrieval`` task (a visual ``*ForRetrieval`` model), not a text pipeline."""
    if not (folder / "modules.json").is_file() or not (folder / _SBERT).is_file():
        return False
    sbert = _read(folder / _SBERT)
    return isinstance(sbert, dict) and sbert.get("transformer_task") == "retrieval"


def check_wrapper(facts: CheckpointFacts) -> None:
    """Refuse a sentence-transformers layer over a native retriever that asks for more than the
    native model computes (no-op for a plain transformers checkpoint)."""
    folder = facts.model_path
    if not is_wrapper(folder):
        return
    where = f"{facts.name} (a sentence-transformers MultiVectorEncoder save of {list(facts.architectures)})"
    sbert = _read(folder / _SBERT)
    modality = sbert.get("modality_config") or {}
    if set(modality) - {"text", "image"} or any(dict(v or {}) != _FORWARD for v in modality.values()):
        raise MMEmbedError(f"{where}: modality_config {modality!r} is not the model's forward embeddings")
    settings = _read(folder / "config_sentence_transformers.json")
    prompts = {k: v for k, v in (settings.get("prompts") or {}).items() if v}
    if prompts:
        raise MMEmbedError(
            f"{where}: prompts {prompts!r} on top of the processor's own are not supported; remove them "
            "from config_sentence_transformers.json"
        )
    modules = _read(folder / "modules.json")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds[:1] != ["Transformer"] or any(k != "MultiVectorMask" for k in kinds[1:]):
        raise MMEmbedError(f"{where}: modules {kinds} are not supported (Transformer + MultiVectorMask only)")
    for module in modules[1:]:
        config_file = folder / str(module.get("path", "")) / "config.json"
        config = _read(config_file) if config_file.is_file() else {}
        if config.get("skiplist_words") or config.get("keep_only_token_ids"):
            raise MMEmbedError(
                f"{where}: a MultiVectorMask with a skiplist or kept token ids ({config_file}) is not "
                "supported for page images"
            )


def checked(request: LoadRequest) -> LoadRequest:
    """``request`` after :func:`check_wrapper` of its checkpoint (for a family's ``build``)."""
    check_wrapper(request.facts)
    return request
