"""Tiny transformers-native ColPali / ColQwen2 checkpoints (``vidore/colpali-v1.3-hf``,
``vidore/colqwen2-v1.0-hf``).

Those are what ``ColPaliForRetrieval`` / ``ColQwen2ForRetrieval`` ``save_pretrained``
writes: a ``config.json`` with ``model_type: colpali`` / ``colqwen2`` wrapping the VLM's
config under ``vlm_config``, merged weights (``vlm.*``, ``embedding_proj_layer.*``) and the
``ColPaliProcessor`` / ``ColQwen2Processor`` files. The builders save exactly that, from
the same tiny VLM configs, tokenizers and image processors as the colpali-engine-format
tiny checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import tiny_paligemma, tiny_qwen_vl
from .tiny_tokenizers import make_qwen2_tokenizer

EMBEDDING_DIM = 128


def _colpali() -> tuple[Any, Any]:
    """``(config, processor)`` of a tiny ColPali-hf."""
    import transformers

    tokenizer = tiny_paligemma.make_gemma_tokenizer()
    processor = transformers.ColPaliProcessor(
        image_processor=tiny_paligemma.siglip_image_processor(), tokenizer=tokenizer
    )
    vlm = tiny_paligemma.paligemma_config(tokenizer)
    vlm.architectures = ["PaliGemmaForConditionalGeneration"]
    config = transformers.ColPaliConfig(vlm_config=vlm.to_dict(), embedding_dim=EMBEDDING_DIM)
    config.architectures = ["ColPaliForRetrieval"]
    return config, processor


def _colqwen2() -> tuple[Any, Any]:
    """``(config, processor)`` of a tiny ColQwen2-hf."""
    import transformers
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    tokenizer = make_qwen2_tokenizer()
    image_processor = Qwen2VLImageProcessor(
        min_pixels=tiny_qwen_vl.MIN_PIXELS, max_pixels=tiny_qwen_vl.MAX_PIXELS
    )
    processor = transformers.ColQwen2Processor(image_processor=image_processor, tokenizer=tokenizer)
    vlm = tiny_qwen_vl.tiny_config(tokenizer, "qwen2", ("Qwen2VLForConditionalGeneration",))
    config = transformers.ColQwen2Config(vlm_config=vlm.to_dict(), embedding_dim=EMBEDDING_DIM)
    config.architectures = ["ColQwen2ForRetrieval"]
    return config, processor


def build(family: str, path: Path, *, seed: int, lora: bool, layout: str = "transformers") -> Path:
    """``family`` is ``colpali_hf`` or ``colqwen2_hf``; these checkpoints ship merged, in
    transformers' own layout, so ``lora`` must be false (``layout`` is ignored)."""
    import transformers

    if lora:
        raise ValueError(f"{family} checkpoints ship merged; there is no LoRA form to build")
    config, processor = _colpali() if family == "colpali_hf" else _colqwen2()
    model_class = (
        transformers.ColPaliForRetrieval if family == "colpali_hf" else transformers.ColQwen2ForRetrieval
    )
    path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a few-MB checkpoint needs no "Writing model shards" bar
    try:
        model.save_pretrained(path)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(path)
    return path


def to_colpali_engine_layout(hf_checkpoint: Path, out: Path) -> Path:
    """The same weights as a colpali-engine-style checkpoint (what vidore's ``-hf``
    conversion started from): the VLM's own ``config.json`` with ``architectures:
    ["ColPali"]`` / ``["ColQwen2"]``, ``vlm.*`` -> ``model.*``, ``embedding_proj_layer`` ->
    ``custom_text_proj``, and the tokenizer / image-processor files. Loading both folders
    must give the same page embeddings (the prompts for pages are the same)."""
    import json

    import transformers
    from safetensors.torch import load_file, save_file

    config = json.loads((hf_checkpoint / "config.json").read_text())
    vlm = dict(config["vlm_config"])
    vlm["architectures"] = ["ColPali" if config["model_type"] == "colpali" else "ColQwen2"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(vlm, indent=2, sort_keys=True) + "\n")
    renamed = {}
    for key, value in load_file(str(hf_checkpoint / "model.safetensors")).items():
        if key.startswith("embedding_proj_layer."):
            renamed["custom_text_proj." + key.removeprefix("embedding_proj_layer.")] = value
        else:
            renamed["model." + key.removeprefix("vlm.")] = value
    save_file(renamed, str(out / "model.safetensors"), metadata={"format": "pt"})
    processor = transformers.AutoProcessor.from_pretrained(str(hf_checkpoint))
    processor.image_processor.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    return out
