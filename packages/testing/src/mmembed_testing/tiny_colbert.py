"""A tiny ColBERT checkpoint in Stanford ColBERT's own format (``colbert-ir/colbertv2.0``'s layout).

Stanford's ``HF_ColBERT`` is a ``BertPreTrainedModel`` holding the encoder under ``bert.`` and a
bias-free projection ``linear``; ``save_pretrained`` writes both into one ``model.safetensors``
(``bert.embeddings...``, ..., ``linear.weight``) beside a ``config.json`` whose ``architectures``
is ``["HF_ColBERT"]`` (``model_type`` ``bert``), the BERT tokenizer files, and
``artifact.metadata``: the ``ColBERTConfig`` as JSON (``query_token_id`` / ``doc_token_id``
markers, ``query_maxlen``, ``doc_maxlen``, ``dim``, ``mask_punctuation``,
``attend_to_mask_tokens`` ...). Built here from ``transformers``' ``BertModel`` with a ~0.1 M
parameter config and a WordPiece vocabulary that keeps BERT's ``[unused0]`` / ``[unused1]``.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch

from .tiny_st_multi_vector import _WORDS

QUERY_MAXLEN = 16
DOC_MAXLEN = 48
DIM = 32


def make_tokenizer() -> Any:
    """A lower-casing WordPiece tokenizer with BERT's special tokens and first unused slots."""
    from transformers import BertTokenizer

    chars = sorted(set("".join(_WORDS)) | set(string.punctuation) | set(string.digits))
    vocab = [
        "[PAD]",
        "[unused0]",
        "[unused1]",
        "[unused2]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *sorted(set(_WORDS)),
        *chars,
        *("##" + c for c in chars),
    ]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})


def metadata(**changes: Any) -> dict[str, Any]:
    """The part of ``artifact.metadata`` that concerns encoding (a real one holds the whole
    ``ColBERTConfig``: paths, training settings, index settings; those are left out)."""
    meta: dict[str, Any] = {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_token": "[Q]",
        "doc_token": "[D]",
        "query_maxlen": QUERY_MAXLEN,
        "doc_maxlen": DOC_MAXLEN,
        "dim": DIM,
        "similarity": "cosine",
        "mask_punctuation": True,
        "attend_to_mask_tokens": False,
        "interaction": "colbert",
        "checkpoint": "bert-base-uncased",
        "nbits": 2,
        "kmeans_niters": 4,
        "ncells": None,
        "centroid_score_threshold": None,
        "ndocs": None,
        "index_path": None,
        "meta": {"hostname": "tiny", "git_branch": "main", "version": "colbert-v0.2.0"},
    }
    meta.update(changes)
    return meta


def build(path: Path, *, seed: int, lora: bool = False, layout: str = "legacy") -> Path:
    """Write the checkpoint to ``path`` (``lora`` / ``layout`` do not apply: Stanford saves merged)."""
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    if lora:
        raise ValueError("Stanford ColBERT checkpoints are saved merged; build with lora=False")
    tokenizer = make_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bert = BertModel(config)  # with its pooler, as HF_ColBERT's BertModel has one
        linear = torch.nn.Linear(config.hidden_size, DIM, bias=False)
    path.mkdir(parents=True, exist_ok=True)
    weights = {f"bert.{name}": tensor.contiguous() for name, tensor in bert.state_dict().items()}
    weights["linear.weight"] = linear.weight.detach().contiguous()
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    saved = config.to_dict()
    saved.update(architectures=["HF_ColBERT"], model_type="bert")
    (path / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(str(path))
    (path / "artifact.metadata").write_text(json.dumps(metadata(), indent=4) + "\n")
    return path
