"""Tiny Omni-Embed-Nemotron checkpoints laid out like ``nvidia/omni-embed-nemotron-3b``.

The published checkpoint is a Qwen2.5-Omni *Thinker* saved by NVIDIA's remote code: a
``config.json`` with ``model_type: "nvomniembed"``, ``architectures: ["NVOmniEmbedModel"]`` and
an ``auto_map`` onto ``modeling_nv_omni_embed.py``; safetensors weights in the layout the
Thinker had when it was saved (``model.layers.*`` for the language model, ``visual.*``,
``audio_tower.*``, ``lm_head.weight``); a Qwen2.5-Omni tokenizer (the ``<|AUDIO|>``,
``<|IMAGE|>``, ``<|VIDEO|>``, ``<|audio_bos|>`` ... special tokens and the chat template); a
``WhisperFeatureExtractor`` for audio and Qwen2-VL image / video processors. The builder writes
the same files around a model of well under a million parameters. The remote code file itself
is not written: mmembed never runs it (``layout="transformers"`` gives the names
``save_pretrained`` of transformers 5 writes instead).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .tiny_qwen_vl import Layout
from .tiny_tokenizers import make_qwen2_tokenizer

# Qwen2.5-Omni's special tokens after the Qwen2 ones (same names as the real tokenizer's).
OMNI_SPECIAL_TOKENS = (
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
)
# What the processor reads off the tokenizer (``tokenizer.image_token`` ...).
EXTRA_SPECIAL_TOKENS = {
    "image_token": "<|IMAGE|>",
    "audio_token": "<|AUDIO|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}
# Qwen2.5-Omni's chat template: the default system turn, then each message; media items become
# ``<|vision_bos|><|IMAGE|><|vision_eos|>``, ``<|audio_bos|><|AUDIO|><|audio_eos|>`` or
# ``<|vision_bos|><|VIDEO|><|vision_eos|>`` where they stand among the text items.
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}"
    "<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT_HIDDEN = 64
# Image / video pixel budgets: the published processor's image limits scaled down; the paper's
# video limits (32*14*14 .. 64*28*28) are applied by the encoder, not stored here.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 224 * 224
AUTO_MAP = {
    "AutoConfig": "modeling_nv_omni_embed.NVOmniEmbedConfig",
    "AutoModel": "modeling_nv_omni_embed.NVOmniEmbedModel",
}


def make_omni_tokenizer():  # -> transformers.Qwen2Tokenizer
    """The tiny Qwen2 tokenizer with Qwen2.5-Omni's media tokens and chat template."""
    from tokenizers import AddedToken

    tokenizer = make_qwen2_tokenizer()
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in OMNI_SPECIAL_TOKENS], special_tokens=True
    )
    tokenizer._set_model_specific_special_tokens(special_tokens=EXTRA_SPECIAL_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _token_ids(tokenizer: Any) -> dict[str, int]:
    ids = {name: int(tokenizer.convert_tokens_to_ids(token)) for name, token in EXTRA_SPECIAL_TOKENS.items()}
    return {
        "audio_token_index": ids["audio_token"],
        "image_token_index": ids["image_token"],
        "video_token_index": ids["video_token"],
        "vision_start_token_id": ids["vision_bos_token"],
        "vision_end_token_id": ids["vision_eos_token"],
        "audio_start_token_id": ids["audio_bos_token"],
        "audio_end_token_id": ids["audio_eos_token"],
    }


def _config(tokenizer: Any) -> Any:
    from transformers import Qwen2_5OmniThinkerConfig

    ids = _token_ids(tokenizer)
    config_class: Any = Qwen2_5OmniThinkerConfig
    config = config_class(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,  # head_dim 32
            "num_key_value_heads": 1,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            # mrope sections (temporal, height, width) sum to head_dim / 2.
            "rope_parameters": {"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1000000.0},
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],  # block 0 windowed, block 1 full attention
        },
        audio_config={
            "num_mel_bins": 128,  # the WhisperFeatureExtractor's feature_size
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "max_source_positions": 1500,
            "n_window": 100,
            "output_dim": TEXT_HIDDEN,
        },
        position_id_per_seconds=25,
        seconds_per_chunk=2,
        **{k: v for k, v in ids.items() if k.endswith("_index") or k.startswith("audio_")},
    )
    return config


def _config_json(config: Any, tokenizer: Any) -> dict[str, Any]:
    """The published config.json: a Thinker config under NVIDIA's model type and auto_map."""
    data = config.to_dict()
    data.update(_token_ids(tokenizer))
    # Published with transformers 4.5x: rope settings as rope_scaling + rope_theta.
    rope = dict(data["text_config"].pop("rope_parameters"))
    data["text_config"]["rope_theta"] = rope.pop("rope_theta")
    data["text_config"]["rope_scaling"] = {**rope, "type": rope["rope_type"]}
    data["model_type"] = "nvomniembed"
    data["architectures"] = ["NVOmniEmbedModel"]
    data["auto_map"] = AUTO_MAP
    data["pad_token_id"] = int(tokenizer.pad_token_id)
    return dict(sorted(data.items()))


def _to_layout(key: str, layout: Layout) -> str:
    """transformers 5 names (``model.language_model.*``, ``model.visual.*``,
    ``model.audio_tower.*``) -> the chosen layout (the published one is the Thinker's of
    transformers 4.5x: ``model.*``, ``visual.*``, ``audio_tower.*``)."""
    if layout == "transformers":
        return key
    key = re.sub(r"^model\.language_model\.", "model.", key)
    return re.sub(r"^model\.(visual|audio_tower)\.", r"\1.", key)


def _random_weights(config: Any, seed: int, layout: Layout) -> dict[str, torch.Tensor]:
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    weights = {_to_layout(k, layout): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return dict(sorted(weights.items()))


def _save_processor_files(folder: Path, tokenizer: Any) -> None:
    """Qwen2.5-Omni's processor files as published: one ``preprocessor_config.json`` holding the
    ``WhisperFeatureExtractor`` and ``Qwen2VLImageProcessor`` settings (videos use the same
    limits), ``chat_template.json`` and the tokenizer files."""
    from transformers import WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    # Qwen2.5-Omni's feature extractor settings (128 mel bins, 16 kHz, 300 s chunks).
    feature_extractor = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=300, n_fft=400
    )
    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    preprocessor = {
        **feature_extractor.to_dict(),
        **image_processor.to_dict(),
        "feature_extractor_type": "WhisperFeatureExtractor",
        "image_processor_type": "Qwen2VLImageProcessor",
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
        "processor_class": "Qwen2_5OmniProcessor",
    }
    _write_json(folder / "preprocessor_config.json", preprocessor)
    _write_json(folder / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)  # the template lives in chat_template.json
    config_path = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text(encoding="utf-8"))
    tokenizer_config.pop("chat_template", None)
    tokenizer_config["extra_special_tokens"] = EXTRA_SPECIAL_TOKENS
    tokenizer_config["processor_class"] = "Qwen2_5OmniProcessor"
    _write_json(config_path, tokenizer_config)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_model(folder: Path, *, seed: int, layout: Layout = "legacy") -> Path:
    """A full tiny checkpoint, like ``nvidia/omni-embed-nemotron-3b``."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_omni_tokenizer()
    config = _config(tokenizer)
    (folder / "config.json").write_text(
        json.dumps(_config_json(config, tokenizer), indent=2) + "\n", encoding="utf-8"
    )
    save_file(
        _random_weights(config, seed, layout), str(folder / "model.safetensors"), metadata={"format": "pt"}
    )
    _save_processor_files(folder, tokenizer)
    return folder


def build(path: Path, *, seed: int, lora: bool, layout: Layout = "legacy") -> Path:
    if lora:
        raise ValueError("omni_embed_nemotron is published as a full checkpoint; there is no LoRA layout")
    return write_model(path, seed=seed, layout=layout)
