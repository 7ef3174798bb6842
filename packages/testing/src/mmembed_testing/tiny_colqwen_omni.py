"""Tiny ColQwen2.5-Omni checkpoints laid out like colpali-engine 0.3.18 saves them.

colpali's ``ColQwen2_5Omni`` subclasses ``Qwen2_5OmniThinkerForConditionalGeneration`` with its
``lm_head`` replaced by an identity and a 128-d ``custom_text_proj``: a saved checkpoint is a
Thinker config (``model_type: qwen2_5_omni_thinker``, ``architectures: ["ColQwen2_5Omni"]``),
weights in transformers 5's Thinker layout (``model.language_model.*``, ``model.visual.*``,
``model.audio_tower.*``) plus ``custom_text_proj.*``, and Qwen2.5-Omni's processor files (the
tokenizer with its media tokens and chat template, a ``WhisperFeatureExtractor``, Qwen2-VL image
processing). The tiny model reuses the Omni-Embed builder's tokenizer, config and processor files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .tiny_omni_embed import CHAT_TEMPLATE, _config, _save_processor_files, _token_ids, make_omni_tokenizer
from .tiny_qwen_vl import write_lora_adapter

EMBEDDING_DIM = 128
LORA_TARGET_MODULES = r"(.*(model\.language_model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(custom_text_proj).*$)"


def write_model(folder: Path, *, seed: int) -> Path:
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_omni_tokenizer()
    config = _config(tokenizer)
    config.architectures = ["ColQwen2_5Omni"]
    config.pad_token_id = int(tokenizer.pad_token_id)
    for name, value in _token_ids(tokenizer).items():  # all media token ids, as the published configs
        setattr(config, name, value)
    config.save_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
        head = torch.nn.Linear(config.text_config.hidden_size, EMBEDDING_DIM)
    weights = {
        k: v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("lm_head.")
    }
    weights.update({f"custom_text_proj.{k}": v.detach().clone() for k, v in head.state_dict().items()})
    save_file(dict(sorted(weights.items())), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _save_processor_files_with_template(folder)
    return folder


def _save_processor_files_with_template(folder: Path) -> None:
    """Qwen2.5-Omni's processor files, the chat template also in ``tokenizer_config.json`` (as
    Qwen2.5-Omni-3B publishes it; colpali's processor reads the tokenizer's)."""
    _save_processor_files(folder, make_omni_tokenizer())
    for name in ("preprocessor_config.json", "tokenizer_config.json"):
        data = json.loads((folder / name).read_text())
        data["processor_class"] = "ColQwen2_5OmniProcessor"
        if name == "tokenizer_config.json":
            data["chat_template"] = CHAT_TEMPLATE
        (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def build(path: Path, *, seed: int, lora: bool, layout: str = "legacy") -> Path:
    """Merged: ``path`` is the checkpoint. LoRA: ``path/colqwen_omni-tiny-base`` and
    ``path/colqwen_omni-tiny-lora``; the adapter folder is returned. ``layout`` is unused."""
    if not lora:
        return write_model(path, seed=seed)
    base = write_model(path / "colqwen_omni-tiny-base", seed=seed)
    return write_lora_adapter(
        path / "colqwen_omni-tiny-lora",
        base,
        seed=seed + 1,
        target_modules=LORA_TARGET_MODULES,
        save_processor=_save_processor_files_with_template,
    )
