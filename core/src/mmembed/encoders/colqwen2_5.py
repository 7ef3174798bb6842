"""ColQwen2.5: Qwen2.5-VL + a 128-d linear projection, one L2-normalised vector per token.

Reproduces colpali-engine 0.3.18's ``ColQwen2_5`` / ``ColQwen2_5_Processor`` on plain
transformers classes (no colpali-engine at run time): the same page prompt, the same query
augmentation (ten ``<|endoftext|>`` after the query), left padding, the checkpoint's own
image-processor limits (overridable with ``max_pixels`` / ``max_num_visual_tokens``), and
every non-padding token of the sequence (prompt tokens included) kept as a vector.

Checkpoints: a Qwen2.5-VL ``config.json`` whose weights contain ``custom_text_proj`` (e.g.
``vidore/colqwen2.5-base``, merged fine-tunes), or a PEFT LoRA adapter over such a base or
over a plain Qwen2.5-VL whose adapter carries ``custom_text_proj`` (``vidore/colqwen2.5-v0.2``,
``nomic-ai/colnomic-embed-multimodal-3b`` / ``-7b``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..types import EncoderInfo, MMEmbedError
from .base import Encoder
from .checkpoint import CheckpointFacts
from .registry import LoadRequest, ModelFamily, register_family
from .runtime import default_attention, run_batched
from .weights import load_weights, merge_lora, replaced_by_adapter

logger = logging.getLogger(__name__)

FAMILY_ID = "colqwen2_5"
EMBEDDING_DIM = 128
# colpali-engine 0.3.18, ColQwen2_5_Processor.
VISUAL_PROMPT = (
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>"
)
QUERY_PREFIX = ""
QUERY_AUGMENTATION = "<|endoftext|>" * 10
DEFAULT_BATCH_SIZE = 4

# Checkpoint key layouts -> this module's names (``model.`` = Qwen2_5_VLModel). Already
# right: transformers 5's ``model.language_model.*`` / ``model.visual.*`` and
# ``custom_text_proj.*``. Renamed: the original Qwen2.5-VL layout the published ColQwen2.5
# checkpoints use (``model.layers.*``, ``visual.*``) and colpali-engine 0.3.18's own class,
# a Qwen2_5_VLModel subclass (``language_model.*``).
_RENAMES = (
    (re.compile(r"^model\.(layers|embed_tokens|norm)\."), r"model.language_model.\1."),
    (re.compile(r"^(language_model|visual)\."), r"model.\1."),
)
_UNUSED = re.compile(r"^(lm_head|model\.lm_head)\.")


def rename_weight(key: str) -> str | None:
    """Any known ColQwen2.5 / Qwen2.5-VL checkpoint key -> :class:`ColQwen2_5Model` name."""
    if _UNUSED.match(key):
        return None
    for pattern, target in _RENAMES:
        if pattern.match(key):
            return pattern.sub(target, key, count=1)
    return key


class ColQwen2_5Model(nn.Module):
    """Qwen2.5-VL backbone + ``custom_text_proj``; returns L2-normalised token vectors."""

    model: Any  # transformers' Qwen2_5_VLModel

    def __init__(self, backbone: nn.Module, hidden_size: int, dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.model = backbone
        self.custom_text_proj = nn.Linear(hidden_size, dim)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.model(
            **inputs, use_cache=False, return_dict=True
        ).last_hidden_state  # (batch, tokens, hidden)
        proj = self.custom_text_proj(hidden).float()  # (batch, tokens, dim)
        return proj / proj.norm(dim=-1, keepdim=True)


def _text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Text-only rope positions counted from each sequence's first real token, so a
    left-padded query gets the same positions whatever else is in its batch."""
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (batch, tokens)
    return positions.unsqueeze(0).expand(3, -1, -1)  # (3 rope axes, batch, tokens)


class ColQwen2_5Encoder(Encoder):
    """Multi-vector ColQwen2.5 encoder (see module docstring)."""

    def __init__(
        self,
        model: ColQwen2_5Model,
        processor: Any,
        *,
        info: EncoderInfo,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.model = model
        self.processor = processor
        self.info = info
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        processor.tokenizer.padding_side = "left"
        # One batch at a time: the tokenizer is not safe to call from several threads at
        # once ("Already borrowed"), and a shared GPU gains nothing from interleaving.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ColQwen2_5Encoder({self.info.name!r}, device={self.device}, dtype={self.dtype})"

    @property
    def image_processor(self) -> Any:
        return self.processor.image_processor

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        if isinstance(queries, str):
            raise MMEmbedError("encode_queries takes a list of strings; use encode_query() for one query")
        for i, query in enumerate(queries):
            if not isinstance(query, str):
                raise MMEmbedError(f"query {i} is a {type(query).__name__}, not a str")
        texts = [QUERY_PREFIX + q + QUERY_AUGMENTATION for q in queries]
        with self._lock:
            sizes = [len(ids) for ids in self.processor.tokenizer(texts)["input_ids"]] if texts else []
        return run_batched(
            texts, sizes, batch_size or self.batch_size, self._encode_texts, progress=progress, desc="queries"
        )

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        rgb = [self._checked_image(i, image) for i, image in enumerate(images)]
        sizes = [self._n_patches(i, image) for i, image in enumerate(rgb)]
        return run_batched(
            rgb, sizes, batch_size or self.batch_size, self._encode_pages, progress=progress, desc="pages"
        )

    @staticmethod
    def _checked_image(i: int, image: Image.Image) -> Image.Image:
        if not isinstance(image, Image.Image):
            raise MMEmbedError(f"image {i} is a {type(image).__name__}, not a PIL.Image.Image")
        if image.width < 1 or image.height < 1:
            raise MMEmbedError(f"image {i} is empty ({image.width}x{image.height} pixels)")
        return image.convert("RGB")

    def _n_patches(self, i: int, image: Image.Image) -> int:
        try:
            return int(self.image_processor.get_number_of_image_patches(image.height, image.width))
        except ValueError as err:
            raise MMEmbedError(
                f"image {i} ({image.width}x{image.height} pixels) cannot be encoded: {err}"
            ) from err

    @torch.inference_mode()
    def _encode_texts(self, texts: list[str]) -> list[torch.Tensor]:
        with self._lock:
            batch = self.processor(text=texts, return_tensors="pt", padding="longest")
            mask = batch["attention_mask"]  # (batch, tokens), left padded
            inputs = {
                "input_ids": batch["input_ids"].to(self.device),
                "attention_mask": mask.to(self.device),
                "position_ids": _text_positions(mask).to(self.device),
            }
            return self._unpad(self.model(**inputs), mask, "query")

    @torch.inference_mode()
    def _encode_pages(self, images: list[Image.Image]) -> list[torch.Tensor]:
        with self._lock:
            batch = self.processor(
                text=[VISUAL_PROMPT] * len(images), images=images, return_tensors="pt", padding="longest"
            )
            inputs = {k: v.to(self.device) for k, v in batch.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)  # (total_patches, patch_dim)
            return self._unpad(self.model(**inputs), batch["attention_mask"], "page")

    def _unpad(self, embeddings: torch.Tensor, mask: torch.Tensor, what: str) -> list[torch.Tensor]:
        """(batch, tokens, dim) -> one (real_tokens, dim) float32 CPU tensor per input."""
        keep = mask.to(torch.bool)
        out = [e[k.to(e.device)].float().cpu() for e, k in zip(embeddings, keep, strict=True)]
        if any(bool(torch.isnan(o).any()) for o in out):
            raise MMEmbedError(
                f"the model produced NaN {what} embeddings on {self.device} with {self.dtype}; try "
                "attn_implementation='eager' or dtype='float32' when loading the encoder."
            )
        return out


def _is_colqwen2_5(facts: CheckpointFacts) -> bool:
    """A Qwen2.5-VL checkpoint with a ``custom_text_proj``: declared by architecture
    (colpali's ``ColQwen2_5``), present in the weights, or brought by the adapter."""
    if facts.model_type != "qwen2_5_vl":
        return False
    return "ColQwen2_5" in facts.architectures or facts.has_module("custom_text_proj")


def _processor_folder(facts: CheckpointFacts) -> Path:
    """Adapters usually carry their own tokenizer / processor files; else use the base's."""
    for folder in (facts.path, facts.model_path):
        has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()
        has_images = (folder / "preprocessor_config.json").is_file() or (
            folder / "processor_config.json"
        ).is_file()
        if has_tokenizer and has_images:
            return folder
    raise MMEmbedError(
        f"no tokenizer / image processor files (tokenizer.json, preprocessor_config.json) in {facts.path}"
        + (f" or {facts.model_path}" if facts.model_path != facts.path else "")
    )


def _load_processor(facts: CheckpointFacts, options: dict[str, Any]) -> Any:
    from transformers import Qwen2VLProcessor

    # colpali-engine's ColQwen2_5_Processor is a Qwen2VLProcessor subclass.
    processor = Qwen2VLProcessor.from_pretrained(str(_processor_folder(facts)))
    image_processor = processor.image_processor
    max_pixels = options.get("max_pixels")
    if options.get("max_num_visual_tokens") is not None:
        side = image_processor.patch_size * image_processor.merge_size
        max_pixels = int(options["max_num_visual_tokens"]) * side * side
    if max_pixels is not None:
        if int(max_pixels) < image_processor.size["shortest_edge"]:
            raise MMEmbedError(
                f"max_pixels={max_pixels} is below the image processor's min_pixels "
                f"({image_processor.size['shortest_edge']})"
            )
        image_processor.size["longest_edge"] = int(max_pixels)
    return processor


def _build_model(facts: CheckpointFacts, dtype: torch.dtype, attn_implementation: str) -> ColQwen2_5Model:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel
    from transformers.initialization import no_init_weights

    from .checkpoint import safetensors_files

    config = Qwen2_5_VLConfig.from_pretrained(str(facts.model_path))
    with no_init_weights():  # every weight is overwritten below
        backbone = Qwen2_5_VLModel._from_config(config, dtype=dtype, attn_implementation=attn_implementation)
        text_config: Any = config.text_config
        model = ColQwen2_5Model(backbone, int(text_config.hidden_size)).to(dtype)
    if not facts.has_module("custom_text_proj"):
        raise MMEmbedError(f"{facts.name}: no custom_text_proj weights in the checkpoint or its adapter")
    from_adapter = replaced_by_adapter(facts.adapter, rename_weight) if facts.adapter is not None else set()
    load_weights(
        model,
        safetensors_files(facts.model_path),
        rename_weight,
        source=str(facts.model_path),
        provided_elsewhere=from_adapter,
    )
    if facts.adapter is not None:
        merge_lora(model, facts.adapter, rename_weight)
    return model.eval().requires_grad_(False)


_OPTIONS = ("batch_size", "max_pixels", "max_num_visual_tokens", "attn_implementation")


def build_encoder(request: LoadRequest) -> ColQwen2_5Encoder:
    options = dict(request.options)
    attn = options.get("attn_implementation") or default_attention(request.device)
    model = _build_model(request.facts, request.dtype, attn).to(request.device)
    batch_size = int(options.get("batch_size") or DEFAULT_BATCH_SIZE)
    info = EncoderInfo(
        name=request.name,
        family=FAMILY_ID,
        kind="multi",
        dim=model.custom_text_proj.out_features,
        similarity="maxsim",
        revision=request.revision,
    )
    logger.info(
        "loaded %s (%s) on %s as %s, %s attention",
        request.name,
        FAMILY_ID,
        request.device,
        request.dtype,
        attn,
    )
    return ColQwen2_5Encoder(
        model,
        _load_processor(request.facts, options),
        info=info,
        device=request.device,
        dtype=request.dtype,
        batch_size=batch_size,
    )


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=EMBEDDING_DIM,
        description="ColQwen2.5: Qwen2.5-VL + custom_text_proj, late interaction",
        matches=_is_colqwen2_5,
        build=build_encoder,
        known_checkpoints=(
            "vidore/colqwen2.5-v0.2",
            "vidore/colqwen2.5-v0.1",
            "nomic-ai/colnomic-embed-multimodal-3b",
            "nomic-ai/colnomic-embed-multimodal-7b",
        ),
        notes=(
            "3B: ~7.5 GB in bfloat16, needs a GPU for real use (~75 s per page on CPU). LoRA adapters "
            "are merged at load time; their base (base_model_name_or_path) must be a local folder or "
            "reachable on the Hub (or pass base_model=...)."
        ),
        options=_OPTIONS,
    )
)
