"""A tiny checkpoint that only runs through its own code (``config.json``'s ``auto_map``),
laid out like NVIDIA's SigLIP2 + Llama ColEmbed checkpoints: ``config.json`` naming the
checkpoint's module, the module file beside it, safetensors weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

MODULE = "modeling_tiny_colembed"
SOURCE = Path(__file__).resolve().parent / "remote_code" / f"{MODULE}.py"
DIM = 16


def build(path: Path, *, seed: int = 0, with_code: bool = True) -> Path:
    """Write the folder; ``with_code=False`` leaves the module file out (a broken download)."""
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["TinyColEmbedModel"],
        "auto_map": {
            "AutoConfig": f"{MODULE}.TinyColEmbedConfig",
            "AutoModel": f"{MODULE}.TinyColEmbedModel",
        },
        "dim": DIM,
        "model_type": "tiny_remote_colembed",
    }
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generator = torch.Generator().manual_seed(seed)
    weights = {
        "chars.weight": torch.randn(256, DIM, generator=generator),
        "patch.weight": torch.randn(DIM, 3 * 8 * 8, generator=generator) / 8.0,
        "patch.bias": torch.randn(DIM, generator=generator) * 0.1,
    }
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    if with_code:
        shutil.copy(SOURCE, path / f"{MODULE}.py")
    return path
