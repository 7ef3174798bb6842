"""Tiny ColIdefics3 (ColSmol) checkpoints laid out like the published ones.

``vidore/colSmol-256M`` / ``-500M`` are PEFT LoRA adapters over a ColIdefics3 base
(``architectures: ["ColIdefics3"]``, ``model_type: idefics3``) whose weights are colpali's
``ColIdefics3`` class: the Idefics3 model under ``model.`` (``model.vision_model.*``,
``model.connector.*``, ``model.text_model.*``) and the 128-d head as ``linear.*``; the
tokenizer is SmolLM2's byte-level BPE with SmolVLM's image tokens, and the processor splits
pages into square tiles plus one global view. The builders write those files with a model
of ~0.3 M parameters: 32-pixel tiles, 16 image tokens per tile, pages up to 4x4 tiles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from .tiny_qwen_vl import set_processor_class, write_lora_adapter
from .tiny_tokenizers import train_bpe

Layout = Literal["legacy", "transformers"]

EMBEDDING_DIM = 128
TILE = 32
PATCH = 4
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (TILE // PATCH) ** 2 // SCALE_FACTOR**2
LORA_TARGET_MODULES = (
    r"(.*(model.text_model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(linear).*$)"
)
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
)
_CORPUS = (
    "The quarterly revenue grew by 12 percent in 2023 compared with 2022.",
    "What is the organizational structure of the research and development department?",
    "User: Describe the image. Assistant: the annual report and the balance sheet.",
    "Les revenus ont augmenté de douze pour cent; die Umsätze stiegen deutlich.",
)


def make_smollm_tokenizer(vocab_size: int = 400) -> Any:
    """A ``GPT2Tokenizer`` (byte-level BPE, as SmolLM2's) with SmolVLM's special tokens;
    ``<|im_end|>`` is eos and ``<|endoftext|>`` pad. Deterministic."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Tokenizer

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    vocab, merges = train_bpe(trainer_tok, trainer, _CORPUS)
    tokenizer = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # (left, right) pairs, which the backend takes too
        unk_token="<|endoftext|>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True
    )
    return tokenizer


def _processor() -> Any:
    from transformers import Idefics3ImageProcessor, Idefics3Processor

    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 4 * TILE},
        max_image_size={"longest_edge": TILE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Idefics3Processor(
        image_processor=image_processor, tokenizer=make_smollm_tokenizer(), image_seq_len=IMAGE_SEQ_LEN
    )


def _config(tokenizer: Any) -> Any:
    from transformers import Idefics3Config

    config = Idefics3Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TILE,
            "patch_size": PATCH,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 2048,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=SCALE_FACTOR,
        tie_word_embeddings=False,
    )
    config.architectures = ["ColIdefics3"]
    return config


def _save_processor_files(folder: Path) -> None:
    """Separate image-processor, processor and tokenizer configs, as the published
    checkpoints (saved before transformers 5 merged them into processor_config.json)."""
    processor = _processor()
    processor.image_processor.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    settings = {"image_seq_len": IMAGE_SEQ_LEN, "processor_class": "ColIdefics3Processor"}
    (folder / "processor_config.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    set_processor_class(folder, "ColIdefics3Processor")


def write_model(folder: Path, *, seed: int, layout: Layout = "legacy") -> Path:
    """A full (merged) tiny ColIdefics3 checkpoint. Both layouts name the Idefics3 model
    ``model.*``; ``legacy`` keeps colpali's ``linear.*`` head name, ``transformers`` uses
    ``custom_text_proj.*``."""
    from transformers import Idefics3ForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    processor = _processor()
    config = _config(processor.tokenizer)
    config.save_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Idefics3ForConditionalGeneration(config)
        head = torch.nn.Linear(config.text_config.hidden_size, EMBEDDING_DIM)
    weights = {
        k: v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("lm_head.")
    }
    head_name = "linear" if layout == "legacy" else "custom_text_proj"
    weights.update({f"{head_name}.{k}": v.detach().clone() for k, v in head.state_dict().items()})
    save_file(dict(sorted(weights.items())), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _save_processor_files(folder)
    return folder


def build(path: Path, *, seed: int, lora: bool, layout: Layout = "legacy") -> Path:
    """Merged: ``path`` is the checkpoint. LoRA: ``path/colidefics3-tiny-base`` and
    ``path/colidefics3-tiny-lora`` (like ``vidore/colSmol-256M``); the adapter folder is returned."""
    if not lora:
        return write_model(path, seed=seed, layout=layout)
    base = write_model(path / "colidefics3-tiny-base", seed=seed, layout=layout)
    return write_lora_adapter(
        path / "colidefics3-tiny-lora",
        base,
        seed=seed + 1,
        target_modules=LORA_TARGET_MODULES,
        save_processor=_save_processor_files,
    )
