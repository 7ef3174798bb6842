"""ColBERT text checkpoints in their own formats: PyLate's and Stanford ColBERT's.

Both load without a re-save, recognised from their files:

- **PyLate** (``pylate.models.ColBERT.save``): a sentence-transformers folder whose
  ``config_sentence_transformers.json`` carries PyLate's keys (``model_type: ColBERT``,
  ``query_prefix`` / ``document_prefix``, ``query_length`` / ``document_length``,
  ``do_query_expansion``, ``attend_to_expansion_tokens``, ``skiplist_words``) and whose
  ``modules.json`` lists the Transformer at the root and ``Dense`` projections
  (``pylate.models.Dense.Dense``, one sub-folder each).
- **Stanford ColBERT** (``colbert-ir/colbertv2.0``): ``config.json`` with
  ``architectures: ["HF_ColBERT"]``, the encoder's weights under its base-model prefix
  (``bert.``) beside the projection ``linear.weight`` in the same file, and
  ``artifact.metadata`` (the ``ColBERTConfig``: ``query_token_id`` / ``doc_token_id``,
  ``query_maxlen`` / ``doc_maxlen``, ``attend_to_mask_tokens``, ``mask_punctuation``).

What they compute (PyLate 1.6's ``ColBERT.encode``, which reproduces Stanford's
``QueryTokenizer`` / ``DocTokenizer``): the text is stripped (lower-cased when the
Transformer says ``do_lower_case``) and tokenized to ``length - 1`` tokens; the marker token
(``[Q] ``/``[D] ``, or ``[unused0]``/``[unused1]``) is inserted after the first token, attended.
Queries with expansion are padded to the full length with ``[MASK]`` (else the eos token), which
the encoder attends to only with ``attend_to_expansion_tokens``, and every query position is a
vector; documents keep their attended tokens outside the skiplist (punctuation by default).
The token states go through the projections and are L2-normalised. The running code is
sentence-transformers v6's :mod:`.st_multi_vector` pipeline with this tokenization.
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path
from typing import Any

import torch

from ..types import EncoderInfo, MMEmbedError
from .checkpoint import CheckpointFacts
from .registry import LoadRequest, ModelFamily, register_family
from .runtime import default_attention
from .st_multi_vector import (
    MODULES,
    ST_CONFIG,
    Expansion,
    Pipeline,
    STMultiVectorEncoder,
    _Dense,
    _dense,
    _Normalize,
    _read,
    _token_ids,
)

logger = logging.getLogger(__name__)

PYLATE_ID = "pylate_colbert"
STANFORD_ID = "stanford_colbert"
OPTIONS = ("batch_size",)
DEFAULT_BATCH_SIZE = 32
STANFORD_METADATA = "artifact.metadata"
_PYLATE_KEYS = ("query_prefix", "document_prefix", "do_query_expansion", "attend_to_expansion_tokens")
# PyLate's defaults when its config leaves a value out (pylate.models.ColBERT.__init__).
_PYLATE_DEFAULTS: dict[str, Any] = {
    "query_prefix": "[Q] ",
    "document_prefix": "[D] ",
    "query_length": 32,
    "document_length": 180,
    "do_query_expansion": True,
    "attend_to_expansion_tokens": False,
}


def is_pylate_checkpoint(facts: CheckpointFacts) -> bool:
    """A sentence-transformers folder written by PyLate (not re-saved by sentence-transformers v6)."""
    folder = facts.model_path
    if facts.adapter is not None or not (folder / MODULES).is_file() or not (folder / ST_CONFIG).is_file():
        return False
    settings = _read(folder / ST_CONFIG)
    if not isinstance(settings, dict) or settings.get("model_type") == "MultiVectorEncoder":
        return False
    modules = _read(folder / MODULES)
    pylate_module = isinstance(modules, list) and any(
        str(m.get("type", "")).startswith("pylate.") for m in modules if isinstance(m, dict)
    )
    return (
        settings.get("model_type") == "ColBERT" or pylate_module or any(k in settings for k in _PYLATE_KEYS)
    )


def is_stanford_checkpoint(facts: CheckpointFacts) -> bool:
    """A Stanford ColBERT ``HF_ColBERT`` save (its ``config.json`` says so; a sentence-transformers
    folder around it belongs to the sentence-transformers families)."""
    return (
        facts.adapter is None
        and "HF_ColBERT" in facts.architectures
        and not (facts.model_path / MODULES).is_file()
    )


class ColBERTEncoder(STMultiVectorEncoder):
    """A ColBERT text model in PyLate's or Stanford's format (see module docstring)."""

    def __init__(self, pipeline: Pipeline, *, markers: dict[str, int | None], lowercase: bool, **kwargs: Any):
        super().__init__(pipeline, **kwargs)
        self.markers = markers
        """Task -> the marker token id inserted after the first token (``None``: no marker)."""
        self.lowercase = lowercase

    def __repr__(self) -> str:
        return f"ColBERTEncoder({self.info.name!r}, {self.info.family}, dim={self.info.dim}, device={self.device})"

    def _tokenize(self, texts: list[str], task: str) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        p = self.pipeline
        marker = self.markers.get(task)
        length = int((p.query_length if task == "query" else p.document_length) or 0)
        expansion = p.expansion if task == "query" else None
        texts = [t.strip().lower() if self.lowercase else t.strip() for t in texts]
        batch = dict(
            p.tokenizer(
                texts,
                padding="max_length" if expansion is not None else True,
                truncation="longest_first",
                max_length=length - 1 if marker is not None else length,
                return_tensors="pt",
            )
        )  # each (batch, tokens)
        padded = batch["attention_mask"] == 0  # (batch, tokens)
        if expansion is not None:  # [MASK] augmentation: the padding becomes the expansion token
            batch["input_ids"] = batch["input_ids"].masked_fill(padded, self._expansion_id())
        if marker is not None:  # after [CLS]: what Stanford's '. ' placeholder and PyLate's insertion give
            inserts = {"input_ids": marker, "attention_mask": 1, "token_type_ids": 0}
            for key, value in inserts.items():
                if key in batch:
                    column = torch.full_like(batch[key][:, :1], value)
                    batch[key] = torch.cat([batch[key][:, :1], column, batch[key][:, 1:]], dim=1)
        if expansion is None:
            return batch, None
        if expansion.attend:
            batch["attention_mask"] = torch.ones_like(batch["attention_mask"])
        return batch, torch.ones_like(batch["input_ids"], dtype=torch.bool)  # every query position counts

    def _expansion_id(self) -> int:
        tokenizer = self.pipeline.tokenizer
        token_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.eos_token_id
        if token_id is None:
            raise MMEmbedError(
                f"{self.info.name}: the tokenizer has neither a mask nor an eos token to expand queries with"
            )
        return int(token_id)


def _marker_id(tokenizer: Any, marker: str, where: str) -> int | None:
    if not marker:
        return None
    if marker not in tokenizer.get_vocab():
        raise MMEmbedError(
            f"{where}: the marker token {marker!r} is not in the checkpoint's tokenizer, so its embedding was "
            "never trained; the checkpoint is incomplete (save it again with its tokenizer)"
        )
    return int(tokenizer.convert_tokens_to_ids(marker))


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _transformer(folder: Path, device: torch.device, dtype: torch.dtype, where: str) -> torch.nn.Module:
    """The encoder at ``folder``, refused when any of its weights is missing from the checkpoint."""
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(
        str(folder), dtype=dtype, attn_implementation=default_attention(device), output_loading_info=True
    )
    missing = [k for k in info.get("missing_keys", ()) if "pooler" not in k]
    if missing:
        raise MMEmbedError(f"{where}: weights missing from the checkpoint: {sorted(missing)[:8]}")
    return model.eval().requires_grad_(False).to(device)


def load_pylate(
    facts: CheckpointFacts, device: torch.device, dtype: torch.dtype
) -> tuple[Pipeline, dict, bool]:
    folder = facts.model_path
    settings = {**_PYLATE_DEFAULTS, **{k: v for k, v in _read(folder / ST_CONFIG).items() if v is not None}}
    modules = _read(folder / MODULES)
    if not isinstance(modules, list) or not modules or str(modules[0].get("path", "")) != "":
        raise MMEmbedError(
            f"{facts.name}: expected the Transformer module first in {MODULES}, at the folder's root"
        )
    sbert = (
        _read(folder / "sentence_bert_config.json")
        if (folder / "sentence_bert_config.json").is_file()
        else {}
    )
    tokenizer = _tokenizer(folder)
    heads: list[torch.nn.Module] = []
    for module in modules[1:]:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Dense":
            heads.append(_dense(folder / str(module.get("path", "")), facts.name, dtype).to(device))
        elif kind != "Normalize":  # PyLate drops a saved Normalize and normalises itself
            raise MMEmbedError(
                f"{facts.name}: module {module.get('type')!r} ({module.get('path')!r}) is not supported; "
                "PyLate checkpoints run a Transformer and Dense projections"
            )
    heads.append(_Normalize())
    prompt_name = settings.get("default_prompt_name")
    prompt = str((settings.get("prompts") or {}).get(prompt_name) or "") if prompt_name else ""
    expand = bool(settings["do_query_expansion"])
    query_length = int(settings["query_length"])
    pipeline = Pipeline(
        transformer=_transformer(folder, device, dtype, facts.name),
        tokenizer=tokenizer,
        heads=heads,
        prompts={"query": prompt, "document": prompt},  # PyLate applies the default prompt, if any, to both
        query_length=query_length,
        document_length=int(settings["document_length"]),
        expansion=Expansion("fixed", query_length, bool(settings["attend_to_expansion_tokens"]), None)
        if expand
        else None,
        skiplist_ids=_token_ids(tokenizer, settings.get("skiplist_words", list(string.punctuation))),
        has_mask=True,
    )
    markers = {
        "query": _marker_id(tokenizer, str(settings["query_prefix"]), facts.name),
        "document": _marker_id(tokenizer, str(settings["document_prefix"]), facts.name),
    }
    return pipeline, markers, bool(sbert.get("do_lower_case", False))


def load_stanford(
    facts: CheckpointFacts, device: torch.device, dtype: torch.dtype
) -> tuple[Pipeline, dict, bool]:
    from safetensors import safe_open

    folder = facts.model_path
    meta_file = folder / STANFORD_METADATA
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    else:
        logger.warning(
            "%s: no %s; using ColBERT's defaults (markers, lengths 32 / 180)", facts.name, STANFORD_METADATA
        )
        meta = {}
    weights = [p for p in sorted(folder.glob("*.safetensors")) if p.name != "adapter_model.safetensors"]
    linear: torch.Tensor | None = None
    for file in weights:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            if "linear.weight" in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                linear = handle.get_tensor("linear.weight")  # (dim, hidden)
    if linear is None:
        raise MMEmbedError(
            f"{facts.name}: an HF_ColBERT checkpoint without its projection 'linear.weight' in "
            f"{[p.name for p in weights]}"
        )
    projection = _Dense(int(linear.shape[1]), int(linear.shape[0]), False, torch.nn.Identity())
    projection.linear.weight.data.copy_(linear)
    tokenizer = _tokenizer(folder)
    query_length = int(meta.get("query_maxlen") or 32)
    punctuation = meta.get("mask_punctuation", True)
    pipeline = Pipeline(
        transformer=_transformer(folder, device, dtype, facts.name),
        tokenizer=tokenizer,
        heads=[projection.to(dtype).eval().requires_grad_(False).to(device), _Normalize()],
        prompts={},
        query_length=query_length,
        document_length=int(meta.get("doc_maxlen") or 180),
        expansion=Expansion("fixed", query_length, bool(meta.get("attend_to_mask_tokens", False)), None),
        skiplist_ids=_token_ids(tokenizer, list(string.punctuation)) if punctuation else [],
        has_mask=True,
    )
    markers = {
        "query": _marker_id(tokenizer, str(meta.get("query_token_id") or "[unused0]"), facts.name),
        "document": _marker_id(tokenizer, str(meta.get("doc_token_id") or "[unused1]"), facts.name),
    }
    return pipeline, markers, False  # the tokenizer lower-cases itself


def _builder(family_id: str, load: Any) -> Any:
    def build(request: LoadRequest) -> ColBERTEncoder:
        pipeline, markers, lowercase = load(request.facts, request.device, request.dtype)
        dims = [h.linear.out_features for h in pipeline.heads if isinstance(h, _Dense)]
        hidden = int(getattr(pipeline.transformer, "config").hidden_size)  # noqa: B009 - a transformers model
        info = EncoderInfo(
            name=request.name,
            family=family_id,
            kind="multi",
            dim=int(dims[-1]) if dims else hidden,
            similarity="maxsim",
            revision=request.revision,
        )
        return ColBERTEncoder(
            pipeline,
            markers=markers,
            lowercase=lowercase,
            info=info,
            device=request.device,
            dtype=request.dtype,
            batch_size=int(request.options.get("batch_size") or DEFAULT_BATCH_SIZE),
        )

    return build


_TEXT_ONLY = "Text only: queries and text documents (PDF pages are indexed by their text layer). "

PYLATE = register_family(
    ModelFamily(
        id=PYLATE_ID,
        kind="multi",
        similarity="maxsim",
        dim=None,
        description="ColBERT saved by PyLate (text late interaction)",
        matches=is_pylate_checkpoint,
        build=_builder(PYLATE_ID, load_pylate),
        known_checkpoints=("lightonai/GTE-ModernColBERT-v1", "lightonai/colbertv2.0"),
        notes=_TEXT_ONLY
        + "PyLate's own folder (modules.json with pylate Dense modules, its query_prefix / query_length / "
        "skiplist keys in config_sentence_transformers.json) loads as saved; parity with PyLate 1.6 and "
        "sentence-transformers v6 on tiny checkpoints.",
        options=OPTIONS,
    )
)

STANFORD = register_family(
    ModelFamily(
        id=STANFORD_ID,
        kind="multi",
        similarity="maxsim",
        dim=None,
        description="Stanford ColBERT checkpoint (HF_ColBERT, text late interaction)",
        matches=is_stanford_checkpoint,
        build=_builder(STANFORD_ID, load_stanford),
        known_checkpoints=("colbert-ir/colbertv2.0", "answerdotai/answerai-colbert-small-v1"),
        notes=_TEXT_ONLY
        + "config.json architectures HF_ColBERT, the encoder and its linear.weight projection in "
        "safetensors, artifact.metadata for markers and lengths; parity with PyLate 1.6 and "
        "sentence-transformers v6 on tiny checkpoints.",
        options=OPTIONS,
    )
)
