"""Tiny Nomic Embed v1.5 checkpoints (``nomic-ai/nomic-embed-text-v1.5`` and
``nomic-ai/nomic-embed-vision-v1.5``), laid out like the published ones.

Both published checkpoints are ``trust_remote_code`` folders: a ``config.json`` with Nomic's
GPT-2-style field names (``n_embd``, ``n_head``, ...), ``model_type: nomic_bert``, an
``auto_map`` into ``nomic-ai/nomic-bert-2048``'s code, and safetensors under the names of
that code (``encoder.layers.N.attn.Wqkv``, ``emb_ln``, ``selector.attn.latent``, ...). The
text side is built with transformers' ``NomicBertModel`` and saved under those names; the
vision side with mmembed's own module (transformers has none), whose names already are the
published ones. The width is the published 768 so that every Matryoshka size (768 ... 64)
can be exercised; depth and MLP width are tiny.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

HIDDEN = 768
HEADS = 12
TEXT_LAYERS = 2
VISION_LAYERS = 2
MLP_WIDTH = 256
MAX_POSITIONS = 128
"""Published: 8192 (trained at 2048); small here so that truncation is cheap to reach."""
IMAGE_SIZE = 64
PATCH_SIZE = 16
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
_AUTO_MAP_BASE = "nomic-ai/nomic-bert-2048--"

_CORPUS = (
    "The quarterly revenue grew by 12 percent in 2023 compared with 2022.",
    "What is the organizational structure of the research and development department?",
    "Figure 3 shows the distribution of energy consumption across European countries.",
    "Table 2: operating expenses, net income and earnings per share for each segment.",
    "search_query: search_document: classification: clustering: a photo of a cat on a mat",
    "Describe the image. Which page mentions the annual report and the balance sheet?",
)
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def make_bert_tokenizer() -> Any:  # -> transformers.BertTokenizer
    """A lower-casing WordPiece ``BertTokenizer`` (bert-base-uncased's pipeline and special
    tokens) whose vocabulary is the corpus' words, then single characters and ``##``
    continuations (so any lower-case ASCII word tokenizes). Deterministic: the vocabulary is
    written out, not trained (the WordPiece trainer's order varies between runs)."""
    import re
    import string

    from transformers import BertTokenizer

    words = sorted({w for text in _CORPUS for w in re.findall(r"[a-z0-9]+", text.lower())})
    chars = sorted(
        set(string.ascii_lowercase + string.digits + string.punctuation) | {c for w in words for c in w}
    )
    tokens = list(_SPECIAL) + chars + [f"##{c}" for c in chars if c.isalnum()]
    tokens += [w for w in words if w not in tokens]
    vocab = {token: i for i, token in enumerate(tokens)}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=MAX_POSITIONS)


def _padded_vocab(size: int, multiple: int = 64) -> int:
    return -(-size // multiple) * multiple


def text_config(vocab_size: int) -> dict[str, Any]:
    """``config.json`` of nomic-embed-text-v1.5, shrunk."""
    return {
        "_name_or_path": "nomic-ai/nomic-bert-2048",
        "activation_function": "swiglu",
        "architectures": ["NomicBertModel"],
        "attn_pdrop": 0.0,
        "auto_map": {
            "AutoConfig": _AUTO_MAP_BASE + "configuration_hf_nomic_bert.NomicBertConfig",
            "AutoModel": _AUTO_MAP_BASE + "modeling_hf_nomic_bert.NomicBertModel",
            "AutoModelForMaskedLM": _AUTO_MAP_BASE + "modeling_hf_nomic_bert.NomicBertForPreTraining",
        },
        "bos_token_id": None,
        "causal": False,
        "dense_seq_output": True,
        "embd_pdrop": 0.0,
        "eos_token_id": None,
        "fused_bias_fc": True,
        "fused_dropout_add_ln": True,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-12,
        "max_trained_positions": MAX_POSITIONS // 2,
        "mlp_fc1_bias": False,
        "mlp_fc2_bias": False,
        "model_type": "nomic_bert",
        "n_embd": HIDDEN,
        "n_head": HEADS,
        "n_inner": MLP_WIDTH,
        "n_layer": TEXT_LAYERS,
        "n_positions": MAX_POSITIONS,
        "pad_vocab_size_multiple": 64,
        "parallel_block": False,
        "parallel_block_tied_norm": False,
        "prenorm": False,
        "qkv_proj_bias": False,
        "resid_pdrop": 0.0,
        "rotary_emb_base": 1000,
        "rotary_emb_fraction": 1.0,
        "rotary_emb_interleaved": False,
        "rotary_emb_scale_base": None,
        "rotary_scaling_factor": None,
        "torch_dtype": "float32",
        "type_vocab_size": 2,
        "use_cache": True,
        "use_flash_attn": True,
        "use_rms_norm": False,
        "use_xentropy": True,
        "vocab_size": vocab_size,
    }


def vision_config() -> dict[str, Any]:
    """``config.json`` of nomic-embed-vision-v1.5 (EVA02-B/16 at 224), shrunk."""
    return {
        "activation_function": "swiglu",
        "architectures": ["NomicVisionModel"],
        "attn_pdrop": 0.0,
        "auto_map": {
            "AutoConfig": _AUTO_MAP_BASE + "configuration_hf_nomic_bert.NomicBertConfig",
            "AutoModel": _AUTO_MAP_BASE + "modeling_hf_nomic_bert.NomicVisionModel",
        },
        "bos_token_id": None,
        "causal": False,
        "drop_path_rate": 0.0,
        "embd_pdrop": 0.0,
        "eos_token_id": None,
        "fused_bias_fc": True,
        "fused_dropout_add_ln": True,
        "global_pool": None,
        "hidden_features_scaling_factor": 1.0,
        "img_size": IMAGE_SIZE,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-06,
        "layer_scale": False,
        "layer_scale_init": 1.0,
        "learned_pos_embedding": False,
        "mask_token": False,
        "mlp_fc1_bias": True,
        "mlp_fc2_bias": True,
        "model_type": "nomic_bert",
        "n_embd": HIDDEN,
        "n_head": HEADS,
        "n_inner": MLP_WIDTH,
        "n_layer": VISION_LAYERS,
        "n_positions": 0,
        "no_cls_token": False,
        "no_embed_class": False,
        "no_last_ln": True,
        "norm_mlp": True,
        "num_channels": 3,
        "patch_dropout": 0,
        "patch_embed_bias": True,
        "patch_size": PATCH_SIZE,
        "prenorm": True,
        "prepre_layernom": False,
        "qkv_proj_bias": True,
        "ref_feat_shape": [14, 14],  # a list: the reference cannot take a bare int
        "register_tokens": 0,
        "resid_pdrop": 0.0,
        "rotary_emb_fraction": 0,
        "sinusoidal_pos_embedding": False,
        "torch_dtype": "float32",
        "use_flash_attn": True,
        "use_pos_embed": True,
        "use_rms_norm": False,
        "use_rotary_pos_emb": True,
        "vocab_size": 0,
    }


def preprocessor_config() -> dict[str, Any]:
    """The published CLIP ``preprocessor_config.json`` at this checkpoint's image size."""
    return {
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor",
        "image_std": CLIP_STD,
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": IMAGE_SIZE},
    }


def published_text_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' ``NomicBertModel`` state dict -> the published names (q/k/v fused)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
            continue
        if ".self_attn.q_proj." in name:
            parts = [state[name.replace("q_proj", which)] for which in ("q_proj", "k_proj", "v_proj")]
            out[name.replace("layers.", "encoder.layers.").replace("self_attn.q_proj", "attn.Wqkv")] = (
                torch.cat(parts)
            )
            continue
        for ours, theirs in (
            ("embeddings.LayerNorm", "emb_ln"),
            ("layers.", "encoder.layers."),
            ("self_attn.o_proj", "attn.out_proj"),
            ("mlp.up_proj", "mlp.fc11"),
            ("mlp.gate_proj", "mlp.fc12"),
            ("mlp.down_proj", "mlp.fc2"),
            ("post_attention_layernorm", "norm1"),
            ("post_mlp_layernorm", "norm2"),
        ):
            name = name.replace(ours, theirs)
        out[name] = tensor.contiguous()
    return out


def _randomise(module: torch.nn.Module) -> None:
    """Random weights that keep activations in a normal range, LayerNorms perturbed from
    identity so that their weights matter."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "norm" in name.lower() or "emb_ln" in name:
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(param))
            elif name.endswith("bias"):
                param.copy_(0.02 * torch.randn_like(param))
            else:
                param.copy_(0.05 * torch.randn_like(param))


def build_text(path: Path, *, seed: int = 0) -> Path:
    """A tiny nomic-embed-text-v1.5 folder: config, ``model.safetensors``, tokenizer files."""
    from safetensors.torch import save_file
    from transformers import NomicBertConfig, NomicBertModel

    tokenizer = make_bert_tokenizer()
    vocab_size = _padded_vocab(len(tokenizer))
    config = NomicBertConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=MLP_WIDTH,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
    )
    path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NomicBertModel(config)
        _randomise(model)
    state = {
        k: v for k, v in model.state_dict().items() if "position_ids" not in k and "token_type_ids" not in k
    }
    save_file(published_text_names(state), str(path / "model.safetensors"), metadata={"format": "pt"})
    _write_json(path / "config.json", text_config(vocab_size))
    tokenizer.save_pretrained(path)
    return path


def build_vision(path: Path, *, seed: int = 0) -> Path:
    """A tiny nomic-embed-vision-v1.5 folder: config, ``model.safetensors``, ``preprocessor_config.json``."""
    from safetensors.torch import save_file

    from mmembed.encoders.nomic_vision import NomicVisionModel, VisionConfig

    config = vision_config()
    path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NomicVisionModel(VisionConfig.from_dict(config, "tiny"))
        _randomise(model)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    _write_json(path / "config.json", config)
    _write_json(path / "preprocessor_config.json", preprocessor_config())
    return path


def build(family: str, path: Path, *, seed: int, lora: bool, layout: str = "legacy") -> Path:
    """``nomic_text_v1_5``: the text checkpoint at ``path``. ``nomic_v1_5``: the vision
    checkpoint at ``path`` (load it with ``text_model=`` a tiny text checkpoint; the hub's
    partner is the default)."""
    if lora:
        raise ValueError("Nomic Embed v1.5 checkpoints ship merged; there is no LoRA form to build")
    return build_text(path, seed=seed) if family == "nomic_text_v1_5" else build_vision(path, seed=seed)
