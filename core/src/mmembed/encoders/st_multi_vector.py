"""sentence-transformers v6 ``MultiVectorEncoder`` checkpoints (text ColBERT / PyLate models).

Long because it is one model family in one file, as every family here (colpali-engine's
shape): the checkpoint reader, its module pipeline and the encoder read together.

A saved ``MultiVectorEncoder`` is a folder with ``modules.json`` (the module pipeline),
``config_sentence_transformers.json`` (``model_type: MultiVectorEncoder``, the ``query`` /
``document`` prompts), the transformer at the root (``config.json``, weights, tokenizer,
``sentence_bert_config.json`` with ``query_length`` / ``document_length`` /
``query_expansion``) and one sub-folder per further module. mmembed runs that pipeline on
plain transformers + torch (sentence-transformers is not needed at run time; it is the parity
reference in the tests), reproducing sentence-transformers 6.2's behaviour:

- the prompt is prepended to the text; queries and documents are truncated to
  ``query_length`` / ``document_length`` (else the tokenizer's ``model_max_length``);
- ``query_expansion`` (ColBERT's [MASK] augmentation): ``fixed`` pads every query to
  ``length`` tokens, ``min`` only up to it; the padding positions below ``length`` become the
  expansion token (``token``, else the tokenizer's mask token, else eos) and count as query
  vectors; ``attend`` says whether the encoder attends to them;
- ``Dense`` projections (no activation, or ``Tanh``), ``Normalize`` (L2, when it reads
  ``token_embeddings``; on its default ``sentence_embedding`` it does nothing here, as in ST), and
  ``MultiVectorMask``: which token vectors are kept (the skiplist — punctuation for PyLate
  models — on the tasks it names, documents by default; ``keep_only_token_ids`` on documents).

Supported modules: ``Transformer`` (text, ``feature-extraction``, at the folder's root),
``Dense``, ``Normalize``, ``MultiVectorMask``. Anything else (token pooling, routers) is refused
with the module's name. ST saves of visual ``*ForRetrieval`` models are not this family's: their
native family loads them (:mod:`.st_visual`). Scores are MaxSim sums (``meanmaxsim`` divides each query's scores by
its token count, which does not change a query's ranking).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..types import EncoderInfo, MMEmbedError
from . import st_visual
from .base import Document, Encoder, checked_texts
from .checkpoint import CheckpointFacts
from .registry import LoadRequest, ModelFamily, register_family
from .runtime import default_attention, run_batched
from .weights import load_weights

logger = logging.getLogger(__name__)

FAMILY_ID = "st_multi_vector"
OPTIONS = ("batch_size",)
DEFAULT_BATCH_SIZE = 32
ST_CONFIG = "config_sentence_transformers.json"
MODULES = "modules.json"
_MODULE_KINDS = {  # the class name at the end of modules.json's "type" -> what mmembed runs
    "Transformer": "transformer",
    "Dense": "dense",
    "Normalize": "normalize",
    "MultiVectorMask": "mask",
}
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "torch.nn.modules.linear.Identity": nn.Identity,
    "torch.nn.modules.activation.Tanh": nn.Tanh,
}


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MMEmbedError(f"cannot read {path}: {err}") from err


def is_multi_vector_checkpoint(facts: CheckpointFacts) -> bool:
    """A sentence-transformers folder whose ``config_sentence_transformers.json`` says
    ``model_type: MultiVectorEncoder``."""
    folder = facts.model_path
    if facts.adapter is not None or not (folder / MODULES).is_file() or not (folder / ST_CONFIG).is_file():
        return False
    settings = _read(folder / ST_CONFIG)
    if not isinstance(settings, dict) or settings.get("model_type") != "MultiVectorEncoder":
        return False
    return not st_visual.is_wrapper(folder)  # a visual retriever: its native *_hf family loads it


@dataclass(frozen=True)
class Expansion:
    """``query_expansion`` of the Transformer module."""

    strategy: str
    length: int
    attend: bool
    token: str | None


@dataclass
class Pipeline:
    """What the checkpoint's modules say, resolved against its tokenizer."""

    transformer: nn.Module
    tokenizer: Any
    heads: list[nn.Module]
    """Dense / Normalize modules, in order, applied to the token embeddings."""
    prompts: dict[str, str]
    query_length: int | None
    document_length: int | None
    expansion: Expansion | None
    skiplist_ids: list[int] = field(default_factory=list)
    skiplist_tasks: tuple[str, ...] = ("document",)
    keep_only_token_ids: list[int] | None = None
    has_mask: bool = False


class _Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, p=2, dim=-1)


class _Dense(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, activation: nn.Module) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


def _dense(folder: Path, where: str, dtype: torch.dtype) -> _Dense:
    config = _read(folder / "config.json")
    input_name = config.get("module_input_name", "token_embeddings")
    output_name = config.get("module_output_name", "token_embeddings")
    if input_name != "token_embeddings" or output_name != "token_embeddings":
        raise MMEmbedError(
            f"{where}: a Dense module reading {input_name!r} / writing {output_name!r} is not a per-token "
            "projection; mmembed runs Dense modules on token_embeddings only"
        )
    if config.get("use_residual"):
        raise MMEmbedError(f"{where}: Dense modules with use_residual are not supported")
    activation_name = str(config.get("activation_function", "torch.nn.modules.linear.Identity"))
    if activation_name not in _ACTIVATIONS:
        raise MMEmbedError(
            f"{where}: Dense activation {activation_name!r} is not supported (supported: {sorted(_ACTIVATIONS)})"
        )
    dense = _Dense(
        int(config["in_features"]),
        int(config["out_features"]),
        bool(config.get("bias", True)),
        _ACTIVATIONS[activation_name](),
    )
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise MMEmbedError(f"{where}: no model.safetensors (mmembed only loads safetensors weights)")
    load_weights(dense, files, lambda key: key, source=str(folder))
    return dense.to(dtype).eval().requires_grad_(False)


def _expansion(config: Any, where: str) -> Expansion | None:
    if config is None:
        return None
    strategy = config.get("strategy")
    if strategy not in ("fixed", "min") or not isinstance(config.get("length"), int):
        raise MMEmbedError(
            f"{where}: query_expansion {config!r} needs strategy 'fixed' or 'min' and a length"
        )
    return Expansion(strategy, int(config["length"]), bool(config.get("attend", False)), config.get("token"))


def _token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """Skiplist words -> ids, leaving out words that are not one token (as sentence-transformers
    does, so that real unknown tokens are not dropped)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    ids = []
    for word in words:
        token_id = tokenizer.convert_tokens_to_ids(word)
        if token_id is not None and (token_id != unk or word == tokenizer.unk_token):
            ids.append(int(token_id))
    return ids


def load_pipeline(facts: CheckpointFacts, device: torch.device, dtype: torch.dtype) -> Pipeline:
    from transformers import AutoModel, AutoTokenizer

    folder = facts.model_path
    modules = _read(folder / MODULES)
    settings = _read(folder / ST_CONFIG)
    if not isinstance(modules, list) or not modules:
        raise MMEmbedError(f"{folder / MODULES} lists no modules")
    kinds = []
    for module in modules:
        name = str(module.get("type", "")).rsplit(".", 1)[-1]
        if name not in _MODULE_KINDS:
            raise MMEmbedError(
                f"{facts.name}: module {module.get('type')!r} ({module.get('path')!r}) is not supported; "
                f"mmembed runs {', '.join(_MODULE_KINDS)} pipelines of text multi-vector models"
            )
        kinds.append(_MODULE_KINDS[name])
    if kinds[0] != "transformer" or str(modules[0].get("path", "")) != "" or kinds.count("transformer") != 1:
        raise MMEmbedError(
            f"{facts.name}: expected one Transformer module at the folder's root, first in {MODULES}"
        )
    sbert = (
        _read(folder / "sentence_bert_config.json")
        if (folder / "sentence_bert_config.json").is_file()
        else {}
    )
    task = sbert.get("transformer_task", "feature-extraction")
    modalities = set((sbert.get("modality_config") or {"text": {}}).keys())
    if task != "feature-extraction" or modalities != {"text"}:
        raise MMEmbedError(
            f"{facts.name}: a {task!r} Transformer over {sorted(modalities)} is not a text multi-vector model; "
            "ST-converted visual retrievers load from their colpali / transformers checkpoint instead"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if sbert.get("max_seq_length") is not None:
        tokenizer.model_max_length = int(sbert["max_seq_length"])
    transformer = AutoModel.from_pretrained(
        str(folder), dtype=dtype, attn_implementation=default_attention(device)
    )
    pipeline = Pipeline(
        transformer=transformer.eval().requires_grad_(False).to(device),
        tokenizer=tokenizer,
        heads=[],
        prompts={k: str(v) for k, v in (settings.get("prompts") or {}).items() if v},
        query_length=sbert.get("query_length"),
        document_length=sbert.get("document_length"),
        expansion=_expansion(sbert.get("query_expansion"), str(folder / "sentence_bert_config.json")),
    )
    for module, kind in zip(modules[1:], kinds[1:], strict=True):
        sub = folder / str(module.get("path", ""))
        if kind == "dense":
            pipeline.heads.append(_dense(sub, facts.name, dtype).to(device))
        elif kind == "normalize":
            config = _read(sub / "config.json") if (sub / "config.json").is_file() else {}
            source = config.get("module_input_name", "sentence_embedding")
            if source == "token_embeddings" and config.get("module_output_name", source) == source:
                pipeline.heads.append(_Normalize())
            # else: it normalises a pooled sentence_embedding, which this pipeline never has (a no-op in ST)
        else:  # the scoring mask
            config = _read(sub / "config.json") if (sub / "config.json").is_file() else {}
            pipeline.has_mask = True
            pipeline.skiplist_ids = _token_ids(tokenizer, config.get("skiplist_words") or [])
            tasks = config.get("skiplist_tasks") or ["document"]
            pipeline.skiplist_tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
            keep = config.get("keep_only_token_ids")
            pipeline.keep_only_token_ids = [int(i) for i in keep] if keep else None
    return pipeline


class STMultiVectorEncoder(Encoder):
    """A text multi-vector model saved by sentence-transformers v6 (see module docstring)."""

    text_only = True
    """Indexing pipelines give it each page's text layer instead of its image."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        info: EncoderInfo,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int,
    ) -> None:
        self.pipeline = pipeline
        self.info = info
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"STMultiVectorEncoder({self.info.name!r}, dim={self.info.dim}, device={self.device})"

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        return self._encode(checked_texts(queries, "query"), "query", batch_size, progress)

    def encode_text_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        return self._encode(checked_texts(texts, "text document"), "document", batch_size, progress)

    def encode_documents(
        self, documents: Sequence[Document], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        texts: list[str] = []
        for i, doc in enumerate(documents):
            if not isinstance(doc, str):
                raise MMEmbedError(
                    f"document {i} is a {type(doc).__name__}; {self.info.name!r} is a text-only "
                    "multi-vector model (pass str documents, or index pages with a visual model)"
                )
            texts.append(doc)
        return self.encode_text_documents(texts, batch_size=batch_size, progress=progress)

    def encode_images(
        self, images: Sequence[Any], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        raise MMEmbedError(
            f"{self.info.name!r} is a text-only multi-vector model (sentence-transformers MultiVectorEncoder); "
            "it cannot encode page images. Index text (e.g. `mmembed index --text` sources) or use a visual model."
        )

    # -- running ---------------------------------------------------------------------

    def _encode(
        self, texts: list[str], task: str, batch_size: int | None, progress: bool
    ) -> list[torch.Tensor]:
        prompt = self.pipeline.prompts.get(task, "")
        prompted = [prompt + text for text in texts]
        return run_batched(
            prompted,
            [len(text) for text in prompted],
            batch_size or self.batch_size,
            lambda batch: self._forward(batch, task),
            progress=progress,
            desc=f"{task}s",
        )

    def _tokenize(self, texts: list[str], task: str) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        p = self.pipeline
        expansion = p.expansion if task == "query" else None
        limit = p.query_length if task == "query" else p.document_length
        kwargs: dict[str, Any] = {"padding": True, "truncation": "longest_first", "return_tensors": "pt"}
        if expansion is not None and expansion.strategy == "fixed":
            kwargs.update(padding="max_length", max_length=expansion.length)
        elif limit is not None:
            kwargs["max_length"] = max(int(limit), expansion.length) if expansion is not None else int(limit)
        batch = dict(p.tokenizer(texts, **kwargs))
        if expansion is None:
            return batch, None
        ids, mask = batch["input_ids"], batch["attention_mask"]  # (batch, tokens)
        if ids.shape[1] < expansion.length:  # 'min': widen the batch up to the floor
            missing = expansion.length - ids.shape[1]
            batch = {k: torch.nn.functional.pad(v, (0, missing), value=0) for k, v in batch.items()}
            ids, mask = batch["input_ids"], batch["attention_mask"]
        positions = (mask == 0) & (torch.arange(ids.shape[1]) < expansion.length)  # (batch, tokens)
        token_id = (
            p.tokenizer.convert_tokens_to_ids(expansion.token)
            if expansion.token is not None
            else p.tokenizer.mask_token_id
            if p.tokenizer.mask_token_id is not None
            else p.tokenizer.eos_token_id
        )
        if token_id is not None:
            batch["input_ids"] = ids.masked_fill(positions, int(token_id))
        if expansion.attend:
            batch["attention_mask"] = mask.masked_fill(positions, 1)
        return batch, positions

    def _keep(
        self, batch: dict[str, torch.Tensor], positions: torch.Tensor | None, task: str
    ) -> torch.Tensor:
        """Which token vectors count (sentence-transformers' MultiVectorMask)."""
        p = self.pipeline
        ids, keep = batch["input_ids"], batch["attention_mask"].bool()
        if not p.has_mask:
            return keep
        if task == "query" and positions is not None:
            keep = keep | positions
        if task in p.skiplist_tasks and p.skiplist_ids:
            keep = keep & ~torch.isin(ids, torch.tensor(p.skiplist_ids))
        if task != "query" and p.keep_only_token_ids:
            keep = keep & torch.isin(ids, torch.tensor(p.keep_only_token_ids))
        return keep

    @torch.inference_mode()
    def _forward(self, texts: list[str], task: str) -> list[torch.Tensor]:
        batch, positions = self._tokenize(texts, task)
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        tokens = self.pipeline.transformer(
            **inputs, return_dict=True
        ).last_hidden_state  # (batch, tokens, hidden)
        for head in self.pipeline.heads:
            tokens = head(tokens)  # (batch, tokens, dim)
        keep = self._keep(batch, positions, task)  # (batch, tokens)
        out = [row[k.to(row.device)].float().cpu() for row, k in zip(tokens, keep, strict=True)]
        if any(bool(torch.isnan(o).any()) for o in out):
            raise MMEmbedError(
                f"{self.info.name}: the model produced NaN embeddings on {self.device} with {self.dtype}"
            )
        return out


def build(request: LoadRequest) -> STMultiVectorEncoder:
    pipeline = load_pipeline(request.facts, request.device, request.dtype)
    dims = [h.linear.out_features for h in pipeline.heads if isinstance(h, _Dense)]
    hidden = getattr(pipeline.transformer, "config").hidden_size  # noqa: B009 - a transformers model
    dim = dims[-1] if dims else int(hidden)
    info = EncoderInfo(
        name=request.name,
        family=FAMILY_ID,
        kind="multi",
        dim=int(dim),
        similarity="maxsim",
        revision=request.revision,
    )
    batch_size = int(request.options.get("batch_size") or DEFAULT_BATCH_SIZE)
    return STMultiVectorEncoder(
        pipeline, info=info, device=request.device, dtype=request.dtype, batch_size=batch_size
    )


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=None,
        description="sentence-transformers v6 MultiVectorEncoder (text ColBERT / PyLate), late interaction",
        matches=is_multi_vector_checkpoint,
        build=build,
        notes=(
            "Text only: queries and text documents (no page images). Saved by sentence-transformers v6 "
            "(modules.json + config_sentence_transformers.json with model_type MultiVectorEncoder); "
            "Transformer / Dense / Normalize / MultiVectorMask pipelines run without sentence-transformers. "
            "Checkpoints in PyLate's or Stanford ColBERT's own formats load as saved: families "
            "pylate_colbert / stanford_colbert."
        ),
        options=OPTIONS,
    )
)
