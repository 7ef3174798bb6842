"""Tiny Qwen-VL checkpoints (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) laid out like the published ones.

One builder serves every Qwen-VL family mmembed supports; the families differ only in
the backbone generation, the head and how the checkpoint is shipped:

- ``biqwen2_5`` (``nomic-ai/nomic-embed-multimodal-3b`` / ``-7b``): a PEFT LoRA adapter
  (``task_type: FEATURE_EXTRACTION``, LoRA on the language model's projections, no
  projection head) over the plain ``Qwen/Qwen2.5-VL-*-Instruct`` checkpoint; merged:
  ``architectures: ["BiQwen2_5"]``.
- ``colqwen2`` (``vidore/colqwen2-v1.0``): a LoRA adapter over ``vidore/colqwen2-base``
  (``architectures: ["ColQwen2"]``, ``custom_text_proj``), exactly like ColQwen2.5.
- ``biqwen2``: colpali-engine's BiQwen2 (merged: ``architectures: ["BiQwen2"]``; LoRA:
  a FEATURE_EXTRACTION adapter over plain Qwen2-VL).
- ``dse_qwen2`` (``llamaindex/vdr-2b-multi-v1``): a full ``Qwen2VLForConditionalGeneration``
  checkpoint packaged for sentence-transformers (``modules.json``).
- ``colqwen3`` (``TomoroAI/tomoro-colqwen3-embed-4b``): a Qwen3-VL checkpoint with
  ``architectures: ["ColQwen3"]`` and a 320-d ``custom_text_proj``.
- ``colqwen3_5`` / ``biqwen3_5``: colpali-engine 0.3.18's ColQwen3.5 / BiQwen3.5 (Qwen3.5:
  Gated DeltaNet linear-attention layers interleaved with full attention), merged
  (``architectures: ["ColQwen3_5"]`` / ``["BiQwen3_5"]``), ColQwen3.5 also as a LoRA adapter.

Published Qwen2 / Qwen2.5-VL weights use the original key layout (``model.layers.*``,
``visual.*``, ``lm_head.weight``); Qwen3-VL was published with transformers' layout
(``model.language_model.*``, ``model.visual.*``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from .tiny_tokenizers import make_qwen2_tokenizer

Generation = Literal["qwen2", "qwen2_5", "qwen3", "qwen3_5"]
Layout = Literal["legacy", "transformers"]

# LoRA targets of the vidore / nomic adapters: the language model's projections (and the
# projection head, when there is one).
LORA_TARGETS_WITH_HEAD = (
    r"(.*(model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(custom_text_proj).*$)"
)
LORA_TARGETS_NO_HEAD = r"(.*(model).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$)"
LORA_RANK = 4
LORA_ALPHA = 8
MIN_PIXELS = 56 * 56
MAX_PIXELS = 448 * 448
TEXT_HIDDEN = 128


@dataclass(frozen=True)
class TinySpec:
    """What one tiny Qwen-VL family checkpoint looks like."""

    generation: Generation
    architectures: tuple[str, ...]
    head_dim: int | None
    """Output size of ``custom_text_proj``; ``None`` for single-vector (no head)."""
    processor_class: str
    lora_base_architectures: tuple[str, ...] | None = None
    """Architectures of the base under a LoRA adapter when it differs from the merged
    checkpoint's (a plain ``*ForConditionalGeneration`` for the Bi* adapters)."""
    sentence_transformers: bool = False


SPECS: dict[str, TinySpec] = {
    "biqwen2_5": TinySpec(
        "qwen2_5", ("BiQwen2_5",), None, "BiQwen2_5_Processor", ("Qwen2_5_VLForConditionalGeneration",)
    ),
    "colqwen2": TinySpec("qwen2", ("ColQwen2",), 128, "ColQwen2Processor"),
    "biqwen2": TinySpec(
        "qwen2", ("BiQwen2",), None, "BiQwen2Processor", ("Qwen2VLForConditionalGeneration",)
    ),
    "dse_qwen2": TinySpec(
        "qwen2", ("Qwen2VLForConditionalGeneration",), None, "Qwen2VLProcessor", sentence_transformers=True
    ),
    "colqwen3": TinySpec("qwen3", ("ColQwen3",), 320, "ColQwen3Processor"),
    "colqwen3_5": TinySpec("qwen3_5", ("ColQwen3_5",), 128, "ColQwen3_5Processor"),
    "biqwen3_5": TinySpec("qwen3_5", ("BiQwen3_5",), None, "BiQwen3_5Processor"),
}


def _token_ids(tokenizer: Any) -> dict[str, Any]:
    names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    image, video, start, end = (tokenizer.convert_tokens_to_ids(n) for n in names)
    return {
        "image_token_id": image,
        "video_token_id": video,
        "vision_start_token_id": start,
        "vision_end_token_id": end,
    }


def _text_config(tokenizer: Any, generation: Generation) -> dict[str, Any]:
    # mrope sections (temporal, height, width) sum to head_dim / 2 = 16.
    rope: dict[str, Any] = {"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1000000.0}
    if generation == "qwen3_5":  # partial rotary (1/4 of head_dim 32): sections sum to 4
        rope = {
            "rope_type": "default",
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
            "rope_theta": 10000000.0,
            "partial_rotary_factor": 0.25,
        }
    if generation == "qwen3":
        rope = {
            "rope_type": "default",
            "mrope_section": [6, 5, 5],
            "mrope_interleaved": True,
            "rope_theta": 5000000.0,
        }
    config: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": rope,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "tie_word_embeddings": False,
    }
    if generation in ("qwen3", "qwen3_5"):
        config["head_dim"] = 32
    if generation == "qwen3_5":
        config.update(
            layer_types=["linear_attention", "full_attention"],
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
        )
    return config


def _vision_config(generation: Generation) -> dict[str, Any]:
    if generation == "qwen2":
        return {
            "depth": 2,
            "embed_dim": 64,
            "hidden_size": TEXT_HIDDEN,  # Qwen2-VL's merger output size
            "mlp_ratio": 2,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
    if generation == "qwen2_5":
        return {
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        }
    config: dict[str, Any] = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "out_hidden_size": TEXT_HIDDEN,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 256,  # a 16x16 grid, interpolated to each image's
    }
    if generation == "qwen3":
        config["deepstack_visual_indexes"] = [0]
    return config


def tiny_config(tokenizer: Any, generation: Generation, architectures: tuple[str, ...]) -> Any:
    """A real transformers config of the given generation with ~0.6 M parameters."""
    import transformers

    config_class = {
        "qwen2": transformers.Qwen2VLConfig,
        "qwen2_5": transformers.Qwen2_5_VLConfig,
        "qwen3": transformers.Qwen3VLConfig,
        "qwen3_5": transformers.Qwen3_5Config,
    }[generation]
    config = config_class(
        text_config=_text_config(tokenizer, generation),
        vision_config=_vision_config(generation),
        tie_word_embeddings=False,
        **_token_ids(tokenizer),
    )
    config.architectures = list(architectures)
    return config


def _to_layout(key: str, generation: Generation, layout: Layout) -> str:
    """transformers 5 names (``model.language_model.*``, ``model.visual.*``) -> the layout
    the published checkpoints of that generation use."""
    if layout == "transformers" or generation in ("qwen3", "qwen3_5"):
        return key
    key = re.sub(r"^model\.language_model\.", "model.", key)
    return re.sub(r"^model\.visual\.", "visual.", key)


def random_weights(
    config: Any, generation: Generation, *, seed: int, head_dim: int | None, layout: Layout
) -> dict[str, torch.Tensor]:
    """Random weights of a ``*ForConditionalGeneration`` model (+ ``custom_text_proj``)."""
    import transformers

    model_class = {
        "qwen2": transformers.Qwen2VLForConditionalGeneration,
        "qwen2_5": transformers.Qwen2_5_VLForConditionalGeneration,
        "qwen3": transformers.Qwen3VLForConditionalGeneration,
        "qwen3_5": transformers.Qwen3_5ForConditionalGeneration,
    }[generation]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        head = torch.nn.Linear(config.text_config.hidden_size, head_dim) if head_dim else None
    weights = {
        _to_layout(k, generation, layout): v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
    }
    if head is not None:
        weights.update({f"custom_text_proj.{k}": v.detach().clone() for k, v in head.state_dict().items()})
    return dict(sorted(weights.items()))


def save_processor_files(folder: Path, generation: Generation, processor_class: str) -> None:
    """Tokenizer + image (and, for Qwen3-VL, video) processor files, as the checkpoints ship them."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    tokenizer = make_qwen2_tokenizer()
    if generation in ("qwen3", "qwen3_5"):
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        image_processor = Qwen2VLImageProcessor(
            patch_size=16,
            merge_size=2,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
            size={"shortest_edge": 64 * 64, "longest_edge": 512 * 512},
        )
        Qwen3VLVideoProcessor(patch_size=16, merge_size=2).save_pretrained(folder)
    else:
        image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    image_processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    set_processor_class(folder, processor_class)


def set_processor_class(folder: Path, processor_class: str) -> None:
    """Name ``processor_class`` in the saved image-processor and tokenizer configs, as the
    published checkpoints do (colpali-engine's class, which loaders must cope with)."""
    for name in ("preprocessor_config.json", "tokenizer_config.json"):
        data = json.loads((folder / name).read_text())
        data["processor_class"] = processor_class
        (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _write_sentence_transformers_files(folder: Path) -> None:
    """The sentence-transformers packaging vdr-2b-multi-v1 ships (its custom module's code
    is not needed by mmembed and not written)."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "custom_st.Transformer"}]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    settings: dict[str, Any] = {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(settings, indent=2) + "\n")


def write_model(
    folder: Path,
    spec: TinySpec,
    *,
    seed: int,
    layout: Layout = "legacy",
    architectures: tuple[str, ...] | None = None,
) -> Path:
    """A full (merged) checkpoint folder."""
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_config(make_qwen2_tokenizer(), spec.generation, architectures or spec.architectures)
    config.save_pretrained(folder)
    weights = random_weights(config, spec.generation, seed=seed, head_dim=spec.head_dim, layout=layout)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    save_processor_files(folder, spec.generation, spec.processor_class)
    if spec.sentence_transformers:
        _write_sentence_transformers_files(folder)
    return folder


def write_lora_adapter(
    folder: Path,
    base: Path,
    *,
    seed: int,
    target_modules: str,
    save_processor: Callable[[Path], None],
    extra_weights: dict[str, torch.Tensor] | None = None,
) -> Path:
    """A PEFT LoRA folder over ``base`` (``adapter_config.json`` naming the base by absolute
    path, ``base_model.model.<module>.lora_{A,B}.weight`` tensors). ``lora_B`` is random, not
    PEFT's zeros, so that the adapter really changes the embeddings. ``extra_weights`` are
    saved as full tensors (PEFT's ``modules_to_save``)."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    folder.mkdir(parents=True, exist_ok=True)
    base_weights = load_file(str(base / "model.safetensors"))
    pattern = re.compile(target_modules)
    modules = sorted({k.removesuffix(".weight") for k in base_weights if k.endswith(".weight")})
    targets = [m for m in modules if pattern.fullmatch(m) and base_weights[f"{m}.weight"].ndim == 2]
    generator = torch.Generator().manual_seed(seed)
    adapter: dict[str, torch.Tensor] = {}
    for module in targets:
        out_features, in_features = base_weights[f"{module}.weight"].shape
        adapter[f"base_model.model.{module}.lora_A.weight"] = (
            torch.randn(LORA_RANK, in_features, generator=generator) / in_features**0.5
        )
        adapter[f"base_model.model.{module}.lora_B.weight"] = (
            torch.randn(out_features, LORA_RANK, generator=generator) * 0.1
        )
    for name, tensor in (extra_weights or {}).items():
        adapter[f"base_model.model.{name}"] = tensor
    save_file(
        dict(sorted(adapter.items())), str(folder / "adapter_model.safetensors"), metadata={"format": "pt"}
    )
    LoraConfig(
        r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.1,
        target_modules=target_modules,
        init_lora_weights="gaussian",
        task_type="FEATURE_EXTRACTION",
        inference_mode=True,
        base_model_name_or_path=str(base.resolve()),
    ).save_pretrained(str(folder))
    save_processor(folder)
    return folder


def build(family: str, path: Path, *, seed: int, lora: bool, layout: Layout = "legacy") -> Path:
    """Merged: ``path`` is the checkpoint. LoRA: ``path/<family>-tiny-base`` and
    ``path/<family>-tiny-lora``; the adapter folder is returned."""
    spec = SPECS[family]
    if not lora:
        return write_model(path, spec, seed=seed, layout=layout)
    if spec.sentence_transformers:
        raise ValueError(f"{family} checkpoints ship merged only; build it with lora=False")
    base = write_model(
        path / f"{family}-tiny-base",
        spec,
        seed=seed,
        layout=layout,
        architectures=spec.lora_base_architectures,
    )
    targets = LORA_TARGETS_WITH_HEAD if spec.head_dim else LORA_TARGETS_NO_HEAD
    return write_lora_adapter(
        path / f"{family}-tiny-lora",
        base,
        seed=seed + 1,
        target_modules=targets,
        save_processor=lambda folder: save_processor_files(folder, spec.generation, spec.processor_class),
    )
