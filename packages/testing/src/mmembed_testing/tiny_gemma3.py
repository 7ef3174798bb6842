"""Tiny ColGemma3 / BiGemma3 checkpoints laid out like colpali-engine 0.3.18 saves them.

colpali's ``ColGemma3`` / ``BiGemma3`` subclass ``Gemma3Model``, so a saved checkpoint is a
``Gemma3Config`` (``model_type: gemma3``, a Gemma3 text model and a SigLIP vision tower
whose patches are average-pooled to ``mm_tokens_per_image`` tokens) with
``architectures: ["ColGemma3"]`` / ``["BiGemma3"]``, weights named ``language_model.*``,
``vision_tower.*``, ``multi_modal_projector.*`` and, for Col, the 128-d
``custom_text_proj.*``. Prompts come from the tokenizer's chat template (Gemma 3's turn
format), so the tiny tokenizer carries one. ~0.2 M parameters: 32x32 pages, 16 image tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from .tiny_paligemma import make_gemma_tokenizer
from .tiny_qwen_vl import write_lora_adapter

Variant = Literal["col", "bi"]

EMBEDDING_DIM = 128
IMAGE_SIZE = 32
PATCH_SIZE = 4
MM_TOKENS_PER_IMAGE = 16
LORA_TARGET_MODULES = r"(.*(language_model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(custom_text_proj).*$)"
GEMMA3_SPECIAL_TOKENS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}
# Gemma 3's chat format for the message shapes colpali sends (one user turn of images and text).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def make_tokenizer() -> Any:
    from tokenizers import AddedToken

    tokenizer = make_gemma_tokenizer()
    tokenizer.add_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t in ("<start_of_turn>", "<end_of_turn>", *GEMMA3_SPECIAL_TOKENS.values())
        ],
        special_tokens=True,
    )
    tokenizer._set_model_specific_special_tokens(special_tokens=dict(GEMMA3_SPECIAL_TOKENS))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def _processor() -> Any:
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    image_processor = Gemma3ImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=make_tokenizer(),
        chat_template=CHAT_TEMPLATE,
        image_seq_length=MM_TOKENS_PER_IMAGE,
    )


def gemma3_config(tokenizer: Any) -> Any:
    from transformers import Gemma3Config

    return Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "sliding_window": 16,
            "layer_types": ["sliding_attention", "full_attention"],
            "max_position_embeddings": 2048,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        mm_tokens_per_image=MM_TOKENS_PER_IMAGE,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
    )


def _save_processor_files(folder: Path) -> None:
    """transformers 5's processor files, naming colpali-engine's processor class."""
    _processor().save_pretrained(str(folder))
    for name in ("processor_config.json", "tokenizer_config.json"):
        data = json.loads((folder / name).read_text())
        data["processor_class"] = "ColGemmaProcessor3"
        (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_model(folder: Path, *, seed: int, variant: Variant) -> Path:
    """A full (merged) tiny checkpoint in colpali's layout (``Gemma3Model`` at the top level)."""
    from transformers import Gemma3Model

    folder.mkdir(parents=True, exist_ok=True)
    config = gemma3_config(make_tokenizer())
    config.architectures = ["ColGemma3" if variant == "col" else "BiGemma3"]
    config.save_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3Model(config)
        weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        if variant == "col":
            head = torch.nn.Linear(config.text_config.hidden_size, EMBEDDING_DIM)
            weights.update(
                {f"custom_text_proj.{k}": v.detach().clone() for k, v in head.state_dict().items()}
            )
    save_file(dict(sorted(weights.items())), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _save_processor_files(folder)
    return folder


def build(variant: Variant, path: Path, *, seed: int, lora: bool, layout: str = "legacy") -> Path:
    """Merged: ``path`` is the checkpoint. LoRA (Col only): ``path/colgemma3-tiny-base`` and
    ``path/colgemma3-tiny-lora``; the adapter folder is returned. ``layout`` is unused."""
    if not lora:
        return write_model(path, seed=seed, variant=variant)
    if variant != "col":
        raise ValueError("tiny BiGemma3 checkpoints are merged only; build with lora=False")
    base = write_model(path / "colgemma3-tiny-base", seed=seed, variant=variant)
    return write_lora_adapter(
        path / "colgemma3-tiny-lora",
        base,
        seed=seed + 1,
        target_modules=LORA_TARGET_MODULES,
        save_processor=_save_processor_files,
    )
