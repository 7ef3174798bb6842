"""Tiny ColQwen2.5 checkpoints laid out like the published ones.

``vidore/colqwen2.5-base`` (and merged ColQwen2.5 checkpoints) are a Qwen2.5-VL
``config.json`` with ``architectures: ["ColQwen2_5"]``, safetensors weights in the
original Qwen2.5-VL key layout (``model.layers.*``, ``visual.*``, ``lm_head.weight``) plus
``custom_text_proj.*``, a tokenizer and a ``preprocessor_config.json``.
``vidore/colqwen2.5-v0.2`` is a PEFT LoRA folder (``adapter_config.json`` whose
``base_model_name_or_path`` names the base, ``adapter_model.safetensors`` with
``base_model.model.<module>.lora_{A,B}.weight`` keys, LoRA on the language model's
projections and on ``custom_text_proj``) that also carries the tokenizer and processor files.
The builders below write exactly those files, only with a model of ~0.6 M parameters.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .tiny_qwen_vl import LORA_TARGETS_WITH_HEAD, MAX_PIXELS, MIN_PIXELS, Layout, set_processor_class
from .tiny_qwen_vl import write_lora_adapter as write_qwen_vl_lora_adapter
from .tiny_tokenizers import make_qwen2_tokenizer

EMBEDDING_DIM = 128
# The regex vidore's ColQwen2 / ColQwen2.5 adapters use for LoRA targets.
LORA_TARGET_MODULES = LORA_TARGETS_WITH_HEAD


def _tiny_config(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}
    ids.update({t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")})
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,  # head_dim 32
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            # mrope sections (temporal, height, width) must sum to head_dim / 2.
            "rope_parameters": {"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1000000.0},
            "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": 128,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],  # block 0 windowed, block 1 full attention
            "tokens_per_second": 2,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    config.architectures = ["ColQwen2_5"]
    return config


def _to_layout(key: str, layout: Layout) -> str:
    """transformers 5 names (``model.language_model.*``, ``model.visual.*``) -> the chosen layout."""
    if layout == "transformers":
        return key
    key = re.sub(r"^model\.language_model\.", "model.", key)
    return re.sub(r"^model\.visual\.", "visual.", key)


def _random_weights(config: Any, seed: int, layout: Layout) -> dict[str, torch.Tensor]:
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
        proj = torch.nn.Linear(config.text_config.hidden_size, EMBEDDING_DIM)
    weights = {_to_layout(k, layout): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    weights.update({f"custom_text_proj.{k}": v.detach().clone() for k, v in proj.state_dict().items()})
    return dict(sorted(weights.items()))


def _save_processor_files(folder: Path, tokenizer: Any) -> None:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    image_processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    set_processor_class(folder, "ColQwen2_5_Processor")


def write_model(folder: Path, *, seed: int, layout: Layout = "legacy") -> Path:
    """A full (merged) tiny ColQwen2.5 checkpoint, like ``vidore/colqwen2.5-base``."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_qwen2_tokenizer()
    config = _tiny_config(tokenizer)
    config.save_pretrained(folder)
    save_file(
        _random_weights(config, seed, layout), str(folder / "model.safetensors"), metadata={"format": "pt"}
    )
    _save_processor_files(folder, tokenizer)
    return folder


def write_lora_adapter(folder: Path, base: Path, *, seed: int) -> Path:
    """A PEFT LoRA folder over ``base``, like ``vidore/colqwen2.5-v0.2`` over
    ``vidore/colqwen2.5-base``."""
    return write_qwen_vl_lora_adapter(
        folder,
        base,
        seed=seed,
        target_modules=LORA_TARGET_MODULES,
        save_processor=lambda adapter: _save_processor_files(adapter, make_qwen2_tokenizer()),
    )


def build(path: Path, *, seed: int, lora: bool, layout: Layout = "legacy") -> Path:
    """Merged: ``path`` is the checkpoint. LoRA: ``path/colqwen2.5-tiny-base`` and
    ``path/colqwen2.5-tiny-lora``; the adapter folder is returned."""
    if not lora:
        return write_model(path, seed=seed, layout=layout)
    base = write_model(path / "colqwen2.5-tiny-base", seed=seed, layout=layout)
    return write_lora_adapter(path / "colqwen2.5-tiny-lora", base, seed=seed + 1)
