"""Tiny Nemotron ColEmbed V2 checkpoints (the 4B / 8B layout), built from Qwen3-VL classes.

``nvidia/nemotron-colembed-vl-4b-v2`` / ``-8b-v2`` ship a ``Qwen3VLForConditionalGeneration``
state dict (``model.language_model.*``, ``model.visual.*``, ``lm_head.weight``; the final
RMSNorm's weight is present but unused) with a ``config.json`` of ``model_type:
"qwen3_vl_nemotron_embed"``, ``architectures: ["Qwen3VLNemotronEmbedModel"]``, ``pooling:
"colbert"`` and an ``auto_map`` to NVIDIA's remote code, plus Qwen3-VL's processor files and
chat template. The tiny checkpoint is laid out the same way; NVIDIA's code itself is not
shipped (mmembed runs the family natively).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .tiny_qwen_vl import TinySpec, random_weights, save_processor_files, tiny_config
from .tiny_tokenizers import make_qwen2_tokenizer

MODEL_TYPE = "qwen3_vl_nemotron_embed"
ARCHITECTURES = ("Qwen3VLNemotronEmbedModel",)
PROCESSOR_CLASS = "Qwen3VLNemotronEmbedProcessor"
MODELING_MODULE = "modeling_qwen3_vl_nemotron_embed"
PROCESSING_MODULE = "processing_qwen3_vl_nemotron_embed"
AUTO_MAP = {
    "AutoConfig": f"{MODELING_MODULE}.Qwen3VLNemotronEmbedConfig",
    "AutoModel": f"{MODELING_MODULE}.Qwen3VLNemotronEmbedModel",
}
SPEC = TinySpec("qwen3", ARCHITECTURES, None, PROCESSOR_CLASS)

# Qwen3-VL's chat template, reduced to what embedding prompts use (user turns of text and
# images, the generation prompt); the published checkpoints ship Qwen3-VL's full template.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' or 'image' in content %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _update_json(path: Path, **values: Any) -> None:
    data = json.loads(path.read_text())
    data.update(values)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def build(
    path: Path, *, seed: int, lora: bool, layout: str = "legacy", hidden_size: int | None = None
) -> Path:
    """A full checkpoint folder at ``path`` (Nemotron ColEmbed ships merged only).
    ``hidden_size`` changes the per-token width (128 by default), as 2560 (4B) / 4096 (8B) do."""
    if lora:
        raise ValueError("nemotron_colembed checkpoints ship merged only; build it with lora=False")
    path.mkdir(parents=True, exist_ok=True)
    config = tiny_config(make_qwen2_tokenizer(), "qwen3", ARCHITECTURES)
    if hidden_size is not None:
        config.text_config.hidden_size = hidden_size
        config.vision_config.out_hidden_size = hidden_size
    config.save_pretrained(path)
    _update_json(path / "config.json", model_type=MODEL_TYPE, auto_map=AUTO_MAP, pooling="colbert")
    weights = random_weights(config, "qwen3", seed=seed, head_dim=None, layout="transformers")
    # Freshly initialised RMSNorm weights are all ones, and a norm with uniform weights is
    # undone by the per-token L2 normalisation: trained-looking ones make skipping the final
    # norm (what the reference does) visible in the embeddings.
    generator = torch.Generator().manual_seed(seed + 1)
    for name in sorted(weights):
        if "norm" in name and name.endswith(".weight"):
            weights[name] = 1.0 + 0.5 * torch.randn(weights[name].shape, generator=generator)
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    save_processor_files(path, "qwen3", PROCESSOR_CLASS)
    processor_map = {"AutoProcessor": f"{PROCESSING_MODULE}.{PROCESSOR_CLASS}"}
    for name in ("preprocessor_config.json", "tokenizer_config.json"):
        _update_json(path / name, auto_map=processor_map)
    (path / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return path
