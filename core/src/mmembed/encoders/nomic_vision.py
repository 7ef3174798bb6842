"""Nomic Embed Vision v1.5, natively: an EVA02-B/16-style ViT with an attention-pooling head.

transformers has no class for it (the published code is ``trust_remote_code`` that breaks on
transformers 5), so mmembed builds it from ``config.json`` — the GPT-2-style fields Nomic's
``NomicBertConfig`` uses (``n_embd``, ``n_head``, ``n_layer``, ``n_inner``, ``img_size``,
``patch_size``, ...) — and loads the published safetensors names strictly, no renaming:

- ``embeddings.proj``: the patch embedding as a linear map of each flattened
  ``(channel, row, column)`` patch; ``embeddings.cls_token``; ``embeddings.pos_embed`` (learned,
  CLS included);
- ``layers.N``: pre-LayerNorm blocks (``norm1`` -> fused biased ``attn.Wqkv`` with 2-D rotary
  embeddings on the patch tokens -> ``attn.out_proj``; ``norm2`` -> SwiGLU ``mlp.fc11`` *
  silu(``mlp.fc12``) -> ``mlp.norm`` (EVA's LayerNorm before the output projection) ->
  ``mlp.fc2``), no final LayerNorm;
- ``selector``: the attention-pooling head (a learned ``latent`` query attends over every
  token; ``norm1``, then a SwiGLU whose output is added to every token).

As in the reference (contrastors' ``NomicVisionModel``), the embedding is token 0 of that
last hidden state, L2-normalised. Images are prepared like the checkpoint's
``preprocessor_config.json`` says (CLIP: shortest edge, bicubic, centre crop, mean/std).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..pixels import to_rgb
from ..types import MMEmbedError

_SWIGLU_MULTIPLE = 256
"""The reference rounds the SwiGLU width up to a multiple of this."""


@dataclass(frozen=True)
class VisionConfig:
    hidden_size: int
    num_heads: int
    num_layers: int
    mlp_width: int
    image_size: int
    patch_size: int
    num_channels: int
    eps: float
    rope_reference_grid: tuple[int, int] | None
    """EVA's ``ref_feat_shape``: rotary positions are scaled as if the grid had this size."""
    patch_bias: bool
    qkv_bias: bool
    mlp_bias: tuple[bool, bool]
    mlp_norm: bool

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_dict(cls, config: dict[str, Any], where: str) -> VisionConfig:
        def unsupported(field: str, value: object, need: str) -> MMEmbedError:
            return MMEmbedError(
                f"{where}: {field}={value!r} is not supported by mmembed's Nomic vision model "
                f"(it implements the published nomic-embed-vision-v1.5 layout, which has {need})"
            )

        # Variants of Nomic's ViT code that the published checkpoint does not use.
        for field, expected in (
            ("prenorm", True),
            ("register_tokens", 0),
            ("no_cls_token", False),
            ("no_embed_class", False),
            ("learned_pos_embedding", False),
            ("sinusoidal_pos_embedding", False),
            ("use_pos_embed", True),
            ("use_rotary_pos_emb", True),
            ("global_pool", None),
            ("layer_scale", False),
        ):
            value = config.get(field, expected)
            if value != expected:
                raise unsupported(field, value, f"{field}={expected!r}")
        activation = config.get("activation_function")
        if activation != "swiglu":
            raise unsupported("activation_function", activation, "'swiglu'")
        hidden = int(config["n_embd"])
        heads = int(config["n_head"])
        if hidden % heads or (hidden // heads) % 4:
            raise MMEmbedError(
                f"{where}: n_embd={hidden} must split into n_head={heads} heads of a multiple of 4"
            )
        inner = config.get("n_inner")
        width = int(inner) if inner is not None else int(8 * hidden / 3)
        width = -(-width // _SWIGLU_MULTIPLE) * _SWIGLU_MULTIPLE
        image_size, patch_size = int(config["img_size"]), int(config["patch_size"])
        if image_size % patch_size:
            raise MMEmbedError(f"{where}: img_size={image_size} is not a multiple of patch_size={patch_size}")
        reference = config.get("ref_feat_shape")
        if isinstance(reference, int):
            reference = (reference, reference)
        return cls(
            hidden_size=hidden,
            num_heads=heads,
            num_layers=int(config["n_layer"]),
            mlp_width=width,
            image_size=image_size,
            patch_size=patch_size,
            num_channels=int(config.get("num_channels", 3)),
            eps=float(config.get("layer_norm_epsilon", 1e-6)),
            rope_reference_grid=tuple(int(r) for r in reference) if reference else None,  # type: ignore[arg-type]
            patch_bias=bool(config.get("patch_embed_bias", True)),
            qkv_bias=bool(config.get("qkv_proj_bias", True)),
            mlp_bias=(bool(config.get("mlp_fc1_bias", True)), bool(config.get("mlp_fc2_bias", True))),
            mlp_norm=bool(config.get("norm_mlp", False)),
        )


def rotary_table(config: VisionConfig) -> torch.Tensor:
    """``(patches, 2 * head_dim)``: sin then cos of EVA's 2-D rotary angles, one row per patch
    (row-major). Each head dimension pair gets one frequency of either the row or the column."""
    grid = config.grid
    n_bands = config.head_dim // 4
    bands = 1.0 / 10_000 ** (torch.arange(n_bands, dtype=torch.float32) / n_bands)  # (bands,)
    rows = torch.arange(grid, dtype=torch.float32)
    cols = torch.arange(grid, dtype=torch.float32)
    if config.rope_reference_grid is not None:  # positions on the pre-training grid's scale
        rows = rows / grid * config.rope_reference_grid[0]
        cols = cols / grid * config.rope_reference_grid[1]
    coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # (grid, grid, 2)
    angles = (coords.unsqueeze(-1) * bands).reshape(grid * grid, 2 * n_bands)  # (patches, head_dim / 2)
    angles = angles.repeat_interleave(2, dim=-1)  # (patches, head_dim): one angle per pair
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """``(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)`` (interleaved rotary)."""
    return torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).reshape(x.shape)


class SwiGLU(nn.Module):
    def __init__(self, config: VisionConfig, *, norm: bool) -> None:
        super().__init__()
        width, (bias1, bias2) = config.mlp_width, config.mlp_bias
        self.fc11 = nn.Linear(config.hidden_size, width, bias=bias1)
        self.fc12 = nn.Linear(config.hidden_size, width, bias=bias1)
        self.norm: nn.Module = nn.LayerNorm(width) if norm else nn.Identity()  # eps 1e-5 as published
        self.fc2 = nn.Linear(width, config.hidden_size, bias=bias2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(self.fc11(x) * F.silu(self.fc12(x))))


class Attention(nn.Module):
    """Self-attention with rotary embeddings on every token but the CLS token."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)

    def forward(self, x: torch.Tensor, rotary: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape  # (batch, 1 + patches, hidden)
        qkv = self.Wqkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, tokens, head_dim)
        sin, cos = rotary.to(x.dtype).chunk(2, dim=-1)  # each (patches, head_dim)
        q = torch.cat([q[:, :, :1], q[:, :, 1:] * cos + _rotate_pairs(q[:, :, 1:]) * sin], dim=2)
        k = torch.cat([k[:, :, :1], k[:, :, 1:] * cos + _rotate_pairs(k[:, :, 1:]) * sin], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)  # (batch, heads, tokens, head_dim)
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class Block(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.eps)
        self.mlp = SwiGLU(config, norm=config.mlp_norm)

    def forward(self, x: torch.Tensor, rotary: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rotary)
        return x + self.mlp(self.norm2(x))


class PoolingAttention(nn.Module):
    """One learned query (``latent``) attending over all tokens."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.latent = nn.Parameter(torch.zeros(1, 1, hidden))
        self.Wq = nn.Linear(hidden, hidden, bias=config.qkv_bias)
        self.Wkv = nn.Linear(hidden, 2 * hidden, bias=config.qkv_bias)
        self.out_proj = nn.Linear(hidden, hidden, bias=config.qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, hidden = x.shape
        q = (
            self.Wq(self.latent).reshape(1, 1, self.num_heads, self.head_dim).transpose(1, 2)
        )  # (1, heads, 1, d)
        kv = self.Wkv(x).reshape(batch, tokens, 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, tokens, head_dim)
        out = F.scaled_dot_product_attention(q.expand(batch, -1, -1, -1), k, v)  # (batch, heads, 1, d)
        return self.out_proj(out.transpose(1, 2).reshape(batch, 1, hidden))


class PoolingHead(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.attn = PoolingAttention(config)
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.eps)
        self.mlp = SwiGLU(config, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.mlp(self.norm1(self.attn(x)))  # (batch, 1, hidden)
        return x + pooled  # the reference adds the pooled vector to every token


class Embeddings(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        patch_values = config.num_channels * config.patch_size**2
        self.proj = nn.Linear(patch_values, config.hidden_size, bias=config.patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.grid**2 + 1, config.hidden_size))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = pixels.shape  # (batch, 3, size, size)
        p = self.patch_size
        patches = pixels.reshape(batch, channels, height // p, p, width // p, p)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(
            batch, -1, channels * p * p
        )  # (batch, patches, c*p*p)
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), self.proj(patches)], dim=1)
        return tokens + self.pos_embed  # (batch, 1 + patches, hidden)


class NomicVisionModel(nn.Module):
    """Pixels ``(batch, 3, size, size)`` in, L2-normalised embeddings ``(batch, hidden)`` out."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.selector = PoolingHead(config)
        self.register_buffer("rotary", rotary_table(config), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixels.to(self.embeddings.proj.weight.dtype))
        rotary: torch.Tensor = self.rotary  # type: ignore[assignment]
        for layer in self.layers:
            x = layer(x, rotary)
        first = self.selector(x)[:, 0]  # (batch, hidden): token 0, as the reference reads it
        return F.normalize(first.float(), dim=-1)


def _pair(value: Any, where: str, field: str) -> tuple[int, int]:
    """``224`` / ``{"height": 224, "width": 224}`` -> ``(224, 224)``."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    raise MMEmbedError(f"{where}: {field}={value!r} is not a size mmembed understands")


@dataclass(frozen=True)
class ClipPreprocessing:
    """CLIP's image preparation, read from ``preprocessor_config.json``."""

    shortest_edge: int | None
    crop: tuple[int, int] | None
    resample: int
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def from_file(cls, path: Path) -> ClipPreprocessing:
        where = str(path)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise MMEmbedError(
                f"cannot read {where}: {err}; the vision checkpoint needs its preprocessor_config.json"
            ) from err
        size = config.get("size", {"shortest_edge": 224})
        if isinstance(size, dict) and "shortest_edge" in size:
            shortest = int(size["shortest_edge"])
        elif isinstance(size, int):
            shortest = size
        else:
            raise MMEmbedError(f"{where}: size={size!r}; mmembed expects CLIP's {{'shortest_edge': N}}")
        return cls(
            shortest_edge=shortest if config.get("do_resize", True) else None,
            crop=_pair(config.get("crop_size", shortest), where, "crop_size")
            if config.get("do_center_crop", True)
            else None,
            resample=int(config.get("resample", Image.Resampling.BICUBIC)),
            rescale=float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else None,
            mean=tuple(config["image_mean"]) if config.get("do_normalize", True) else None,
            std=tuple(config["image_std"]) if config.get("do_normalize", True) else None,
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> ``(3, height, width)`` float32 pixels."""
        image = to_rgb(image)  # alpha composited on white, as the page loader does
        if self.shortest_edge is not None:
            width, height = image.size
            short, long = min(width, height), max(width, height)
            new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
            size = (new_short, new_long) if width <= height else (new_long, new_short)
            image = image.resize(size, resample=Image.Resampling(self.resample))
        array: np.ndarray = np.asarray(image, dtype=np.float32)  # (height, width, 3)
        if self.crop is not None:
            array = _centre_crop(array, self.crop)
        if self.rescale is not None:
            array = array * np.float32(self.rescale)
        if self.mean is not None and self.std is not None:
            array = (array - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def _centre_crop(array: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """Centre crop to ``crop`` (height, width), zero-padding a side that is too small (as CLIP's does)."""
    height, width = array.shape[:2]
    crop_h, crop_w = crop
    if height < crop_h or width < crop_w:
        padded = np.zeros((max(height, crop_h), max(width, crop_w), array.shape[2]), dtype=array.dtype)
        top, left = (padded.shape[0] - height) // 2, (padded.shape[1] - width) // 2
        padded[top : top + height, left : left + width] = array
        array, height, width = padded, padded.shape[0], padded.shape[1]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return array[top : top + crop_h, left : left + crop_w]
