"""Tiny sentence-transformers v6 ``MultiVectorEncoder`` checkpoints, saved by sentence-transformers.

Two text late-interaction pipelines over a ~0.1 M-parameter BERT (WordPiece tokenizer built
in code), saved with ``MultiVectorEncoder.save`` (``modules.json``, the transformer at the
root, one folder per further module):

- ``colbert``: PyLate / Stanford ColBERT's recipe as sentence-transformers expresses it:
  ``[Q] `` / ``[D] `` prompts (added tokens), ``query_expansion`` ``fixed`` to 16 tokens with
  ``[MASK]`` (not attended), ``document_length`` 48, a 32-d bias-free ``Dense``, a
  ``MultiVectorMask`` skipping punctuation in documents.
- ``minimal``: no prompts, ``query_expansion`` ``min`` (attended), ``Dense`` (with bias) then
  ``Normalize``, the skiplist applied to queries too.

Building needs ``sentence-transformers`` (a test dependency: requirements/dev.txt).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

import torch

Variant = Literal["colbert", "minimal"]

_WORDS = [
    "the",
    "quarterly",
    "revenue",
    "grew",
    "by",
    "percent",
    "in",
    "compared",
    "with",
    "what",
    "is",
    "organizational",
    "structure",
    "of",
    "research",
    "and",
    "development",
    "department",
    "figure",
    "shows",
    "distribution",
    "energy",
    "consumption",
    "across",
    "european",
    "countries",
    "table",
    "operating",
    "expenses",
    "net",
    "income",
    "earnings",
    "per",
    "share",
    "for",
    "each",
    "segment",
    "solar",
    "capacity",
    "annual",
    "report",
]


def make_tokenizer() -> Any:
    """A lower-casing WordPiece ``BertTokenizer`` with whole words, characters and ``##`` pieces."""
    from transformers import BertTokenizer

    chars = sorted(set("".join(_WORDS)) | set(string.punctuation) | set(string.digits))
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *sorted(set(_WORDS)),
        *chars,
        *("##" + c for c in chars),
    ]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    tokenizer.add_tokens(["[Q]", "[D]"], special_tokens=False)
    return tokenizer


def build(variant: Variant, path: Path, *, seed: int, lora: bool = False, layout: str = "legacy") -> Path:
    """Write the checkpoint to ``path`` (``lora`` / ``layout`` are not used: ST saves merged)."""
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from transformers import BertConfig, BertModel

    if lora:
        raise ValueError(
            "sentence-transformers multi-vector checkpoints are saved merged; build with lora=False"
        )
    backbone = path.parent / f"{path.name}-backbone"
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
        BertModel(config).save_pretrained(str(backbone))
        tokenizer.save_pretrained(str(backbone))
        if variant == "colbert":
            transformer = Transformer(
                str(backbone),
                query_length=16,
                document_length=48,
                query_expansion={"strategy": "fixed", "attend": False, "length": 16},
            )
            modules: list[Any] = [
                transformer,
                Dense(64, 32, bias=False, activation_function=torch.nn.Identity(), **_PER_TOKEN),
                MultiVectorMask(skiplist_words=list(string.punctuation)),
            ]
            prompts = {"query": "[Q] ", "document": "[D] "}
        else:
            transformer = Transformer(
                str(backbone),
                document_length=40,
                query_expansion={"strategy": "min", "attend": True, "length": 12},
            )
            modules = [
                transformer,
                Dense(64, 24, bias=True, activation_function=torch.nn.Identity(), **_PER_TOKEN),
                Normalize(module_input_name="token_embeddings"),
                MultiVectorMask(
                    skiplist_words=list(string.punctuation), skiplist_tasks=["query", "document"]
                ),
            ]
            prompts = {}
        model = MultiVectorEncoder(modules=modules, prompts=prompts, device="cpu")
    model.save(str(path))
    return path


_PER_TOKEN: dict[str, Any] = {
    "module_input_name": "token_embeddings",
    "module_output_name": "token_embeddings",
}
