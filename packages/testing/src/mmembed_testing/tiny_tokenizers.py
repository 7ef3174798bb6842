"""Small byte-level BPE tokenizers built in code, shaped like the real ones.

The tiny checkpoints must tokenize the same way a real one does (byte-level BPE, the
model family's pre-tokenizer regex and special tokens) so that prompts, query
augmentation tokens and padding go down the real code paths; only the vocabulary is small.
"""

from __future__ import annotations

import json
from typing import Any

# Fixed corpus: the merges learnt from it (and so every token id) never change.
_CORPUS = (
    "The quarterly revenue grew by 12 percent in 2023 compared with 2022.",
    "What is the organizational structure of the research and development department?",
    "Figure 3 shows the distribution of energy consumption across European countries.",
    "Table 2: operating expenses, net income and earnings per share for each segment.",
    "Describe the image. Which page mentions the annual report and the balance sheet?",
    "Les revenus ont augmenté de douze pour cent; die Umsätze stiegen deutlich.",
)

# Qwen2 / Qwen2.5 special tokens in their real order (ids follow the byte vocabulary here).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def train_bpe(
    tokenizer: Any, trainer: Any, corpus: tuple[str, ...]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train ``tokenizer`` (a ``tokenizers.Tokenizer``) on ``corpus`` (x4) and return its
    vocabulary and merges as ``(left, right)`` pairs, ready for a transformers tokenizer."""
    tokenizer.train_from_iterator(list(corpus) * 4, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _byte_level_bpe(vocab_size: int) -> tuple[dict[str, int], Any]:
    """Train a byte-level BPE on the fixed corpus with Qwen2's pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return train_bpe(tok, trainer, _CORPUS)


def make_qwen2_tokenizer(vocab_size: int = 400):  # -> transformers.Qwen2Tokenizer
    """A ``Qwen2Tokenizer`` (byte-level BPE + Qwen special tokens, ``<|endoftext|>`` as pad,
    ``<|im_end|>`` as eos) with a few hundred tokens. Deterministic."""
    from tokenizers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = _byte_level_bpe(vocab_size)
    options: dict[str, Any] = {"unk_token": None, "errors": "replace"}  # Qwen2's real settings
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>", **options
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS], special_tokens=True
    )
    return tokenizer
