"""Tiny ColPali (PaliGemma) checkpoints laid out like the published ones.

``vidore/colpaligemma-3b-pt-448-base`` is a PaliGemma ``config.json`` with
``architectures: ["ColPali"]`` and weights saved by colpali-engine's ``ColPali`` class on
transformers 4.4x (``model.language_model.model.*``, ``model.vision_tower.*``,
``model.multi_modal_projector.*``, no tied ``lm_head``) plus ``custom_text_proj.*``, a Gemma
tokenizer and a SigLIP ``preprocessor_config.json`` with ``image_seq_length``.
``vidore/colpali-v1.2`` / ``-v1.3`` are PEFT LoRA adapters over it (LoRA on the language
model's projections and on ``custom_text_proj``). The builders write those files with a
model of ~0.3 M parameters: 112-pixel pages, 64 image tokens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from .tiny_qwen_vl import set_processor_class, write_lora_adapter
from .tiny_tokenizers import train_bpe

Layout = Literal["legacy", "transformers"]

EMBEDDING_DIM = 128
IMAGE_SIZE = 112
PATCH_SIZE = 14
IMAGE_SEQ_LENGTH = (IMAGE_SIZE // PATCH_SIZE) ** 2
LORA_TARGET_MODULES = r"(.*(language_model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(custom_text_proj).*$)"
_CORPUS = (
    "The quarterly revenue grew by 12 percent in 2023 compared with 2022.",
    "What is the organizational structure of the research and development department?",
    "Describe the image. Which page mentions the annual report and the balance sheet?",
    "Les revenus ont augmenté de douze pour cent; die Umsätze stiegen deutlich.",
)


def make_gemma_tokenizer(vocab_size: int = 500) -> Any:
    """A ``GemmaTokenizer`` (BPE on ``▁``-joined words with byte fallback, ``<pad>`` 0,
    ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, ``<mask>`` 4) with the PaliGemma processor's extra
    tokens (``<image>``, ``<locNNNN>``, ``<segNNN>``) already added. Deterministic."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    trainer_tok.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials + byte_tokens, show_progress=False
    )
    vocab, merges = train_bpe(trainer_tok, trainer, _CORPUS)
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges)  # type: ignore[arg-type]  # (left, right) pairs
    tokenizer.padding_side = "right"  # as the real PaliGemma tokenizer
    return tokenizer


def siglip_image_processor() -> Any:
    from transformers import SiglipImageProcessor

    return SiglipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_seq_length=IMAGE_SEQ_LENGTH
    )


def _processor() -> Any:
    from transformers import PaliGemmaProcessor

    return PaliGemmaProcessor(image_processor=siglip_image_processor(), tokenizer=make_gemma_tokenizer())


def paligemma_config(tokenizer: Any) -> Any:
    from transformers import PaliGemmaConfig

    config = PaliGemmaConfig(
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "projection_dim": 64,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "max_position_embeddings": 2048,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=64,
        vocab_size=len(tokenizer),
    )
    config.architectures = ["ColPali"]
    return config


def _to_layout(key: str, layout: Layout) -> str | None:
    """transformers 5 ``PaliGemmaForConditionalGeneration`` names -> the checkpoint's names
    (the ColPali class keeps the whole model under ``model.``)."""
    if key == "lm_head.weight":  # tied to the input embeddings, not saved
        return None
    if layout == "transformers":
        return f"model.{key}"
    return re.sub(r"^model\.language_model\.", "model.language_model.model.", key)


def write_model(folder: Path, *, seed: int, layout: Layout = "legacy") -> Path:
    """A full (merged) tiny ColPali checkpoint, like ``vidore/colpaligemma-3b-pt-448-base``."""
    from transformers import PaliGemmaForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    processor = _processor()
    config = paligemma_config(processor.tokenizer)
    config.save_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PaliGemmaForConditionalGeneration(config)
        proj = torch.nn.Linear(config.text_config.hidden_size, EMBEDDING_DIM)
    weights: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        name = _to_layout(key, layout)
        if name is not None:
            weights[name] = value.detach().clone().contiguous()
    weights.update({f"custom_text_proj.{k}": v.detach().clone() for k, v in proj.state_dict().items()})
    save_file(dict(sorted(weights.items())), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _save_processor_files(folder)
    return folder


def _save_processor_files(folder: Path) -> None:
    processor = _processor()
    processor.image_processor.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    set_processor_class(folder, "ColPaliProcessor")


def build(path: Path, *, seed: int, lora: bool, layout: Layout = "legacy") -> Path:
    """Merged: ``path`` is the checkpoint. LoRA: ``path/colpali-tiny-base`` and
    ``path/colpali-tiny-lora`` (like ``vidore/colpali-v1.3``); the adapter folder is returned."""
    if not lora:
        return write_model(path, seed=seed, layout=layout)
    base = write_model(path / "colpali-tiny-base", seed=seed, layout=layout)
    return write_lora_adapter(
        path / "colpali-tiny-lora",
        base,
        seed=seed + 1,
        target_modules=LORA_TARGET_MODULES,
        save_processor=_save_processor_files,
    )
