"""Storage codecs: how a token vector becomes a fixed-size row of a segment file and back.

Every codec stores one vector as one row of ``row_bytes(dim)`` bytes, so segments, their
commit protocol (``committed_rows``), recovery and compaction work on raw rows without
knowing the codec. ``int8`` keeps each row's float32 scale inside the row, right after its
``dim`` int8 values: values and scale are written, fsynced, committed and truncated
together, so no crash can leave one without the other.

A codec hands readers :class:`Rows`: slicing or gathering them yields float vectors ready
for the scorer (float16/bfloat16/float32 slices are zero-copy views of the memory map; int8
decodes just the rows asked for, one scoring chunk at a time).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..types import STORAGE_NAMES, MMEmbedError

if TYPE_CHECKING:
    import torch


def _torch() -> Any:
    """torch, imported when vectors are first read: naming a codec, checking a manifest or
    sizing rows (``mmembed info``) needs numpy only."""
    return importlib.import_module("torch")


class Rows(Protocol):
    """Read access to a range of stored vectors: indexing by a slice or by a LongTensor of
    row numbers returns ``(n, dim)`` floating vectors."""

    @property
    def shape(self) -> torch.Size: ...

    def __getitem__(self, key: slice | torch.Tensor) -> torch.Tensor: ...


class Codec:
    """A float storage type: rows are the vector's ``dim`` values in ``numpy`` dtype."""

    def __init__(self, name: str, numpy: np.dtype[Any], torch_dtype: str, extension: str) -> None:
        self.name = name
        self.numpy = numpy  # on-disk element type (bfloat16 is stored as its raw uint16 bits)
        self.torch_dtype = torch_dtype  # name of the torch dtype of the raw rows (torch loads lazily)
        self.extension = extension

    def __repr__(self) -> str:
        return f"Codec({self.name!r})"

    def width(self, dim: int) -> int:
        """Elements of ``numpy`` dtype per row."""
        return dim

    def row_bytes(self, dim: int) -> int:
        return self.width(dim) * int(self.numpy.itemsize)

    def encode(self, vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """``(n, width)`` raw rows of finite float32 ``(n, dim)`` vectors; ValueError when a
        value does not fit the storage type."""
        with np.errstate(over="ignore"):  # overflow to inf is reported just below
            stored = np.ascontiguousarray(vectors.astype(self.numpy))
        if not np.isfinite(stored).all():
            raise ValueError(f"values exceed the {self.name} range")
        return stored

    def raw(self, array: np.ndarray[Any, Any]) -> torch.Tensor:
        """A tensor over ``(rows, width)`` raw rows (a memory map), without copying."""
        tensor: torch.Tensor = _torch().from_numpy(array)
        return tensor

    def rows(self, raw: torch.Tensor) -> Rows:
        """Scoreable access to ``raw`` rows (as returned by :meth:`raw`)."""
        return raw


class BFloat16Codec(Codec):
    def encode(self, vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        # float32 -> bfloat16 raw bits, rounding to nearest even like torch does.
        bits = np.ascontiguousarray(vectors, dtype="<f4").view(np.uint32)
        rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
        stored = rounded.astype("<u2")
        if not bool(((stored & 0x7F80) != 0x7F80).all()):  # exponent all ones = inf
            raise ValueError("values exceed the bfloat16 range")
        return stored

    def raw(self, array: np.ndarray[Any, Any]) -> torch.Tensor:
        th = _torch()
        tensor: torch.Tensor = th.from_numpy(array).view(th.bfloat16)  # raw uint16 bits -> bfloat16
        return tensor


SCALE_BYTES = 4
"""An int8 row ends with its float32 scale."""
MAX_INT8_VALUE = 1e6
"""Largest ``|value|`` int8 storage takes (embeddings are unit-scale; anything near this is
not an embedding). Bounds the scale a reader trusts: ``MAX_INT8_VALUE / 127``."""
MIN_SCALE = 1e-30
"""A token whose largest ``|value|`` is below ``127 * MIN_SCALE`` is stored as zeros (scale 0)."""


class Int8Codec(Codec):
    """Symmetric per-token int8: ``value = q * scale`` with ``scale = max|x| / 127``, so each
    token keeps its own range (token norms vary within a page) at ``dim + 4`` bytes a row."""

    def __init__(self) -> None:
        super().__init__("int8", np.dtype("u1"), "uint8", "i8")

    def width(self, dim: int) -> int:
        return dim + SCALE_BYTES

    def encode(self, vectors: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        x = np.asarray(vectors, dtype=np.float32)  # (n, dim)
        n, dim = x.shape
        scale = np.abs(x).max(axis=1, initial=0.0) / 127.0  # (n,)
        if not np.isfinite(scale).all() or bool((scale > MAX_INT8_VALUE / 127.0).any()):
            raise ValueError(f"values exceed the int8 storage range (|value| <= {MAX_INT8_VALUE:g})")
        scale = np.where(scale < MIN_SCALE, 0.0, scale)
        safe = np.where(scale > 0, scale, 1.0)[:, None]  # an all-zero token stays zeros
        q = np.clip(np.rint(x / safe), -127, 127).astype(np.int8)  # (n, dim)
        out = np.empty((n, dim + SCALE_BYTES), dtype=np.uint8)
        out[:, :dim] = q.view(np.uint8)
        out[:, dim:] = scale.astype("<f4")[:, None].view(np.uint8)
        return out

    def rows(self, raw: torch.Tensor) -> Rows:
        return Int8Rows(raw)


class Int8Rows:
    """Decoding view over raw int8 rows ``(n, dim + 4)``: only the rows indexed are decoded."""

    def __init__(self, raw: torch.Tensor) -> None:
        self._raw = raw  # (n, dim + 4) uint8
        self._dim = int(raw.shape[1]) - SCALE_BYTES

    @property
    def shape(self) -> torch.Size:
        size: torch.Size = _torch().Size((int(self._raw.shape[0]), self._dim))
        return size

    def __getitem__(self, key: slice | torch.Tensor) -> torch.Tensor:
        values, scales = self.quantized(key)
        return values.to(_torch().float32).mul_(scales[:, None])  # (m, dim)

    def quantized(self, key: slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, scales)``: ``(m, dim)`` int8 (a view of the map for a slice) and
        ``(m,)`` float32, for scorers that apply the scale after the product
        (:func:`mmembed.scoring.maxsim`'s ``row_scales``)."""
        th = _torch()
        part = self._raw[key]  # (m, dim + 4): a view for a slice, a copy of m rows for a gather
        if part.shape[0] == 0:  # (an empty tensor's strides cannot be reinterpreted)
            return th.empty(0, self._dim, dtype=th.int8), th.empty(0)
        values = part[:, : self._dim].view(th.int8)  # (m, dim)
        scales = part[:, self._dim :].contiguous().view(th.float32)[:, 0]  # (m,)
        return values, _checked_scales(values, scales)


def _checked_scales(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``scales`` with every one no writer can have stored made NaN: negative, above the
    bound, tiny, or 0 for a token whose values are not all 0 (a row damaged outside mmembed).
    NaN scores are ranked last with a warning naming the pages (``rank_damaged_last``)."""
    bad = (scales < 0) | (scales > MAX_INT8_VALUE / 127.0) | ((scales > 0) & (scales < MIN_SCALE))
    zero = scales == 0
    if bool(zero.any()):
        bad |= zero & values.ne(0).any(dim=1)
    if bool(bad.any()):
        scales = scales.masked_fill(bad, float("nan"))
    return scales


_ALL = (
    Codec("float16", np.dtype("<f2"), "float16", "f16"),
    BFloat16Codec("bfloat16", np.dtype("<u2"), "bfloat16", "bf16"),
    Codec("float32", np.dtype("<f4"), "float32", "f32"),
    Int8Codec(),
)
# Keyed and ordered by STORAGE_NAMES, the torch-free list `mmembed --help` offers
# (tests/core/test_cli_light.py checks that each name has a codec and each codec a name).
CODECS: dict[str, Codec] = {c.name: c for name in STORAGE_NAMES for c in _ALL if c.name == name}


def codec(name: str) -> Codec:
    """The codec called ``name`` (an index's ``storage``)."""
    try:
        return CODECS[name]
    except KeyError:
        raise MMEmbedError(f"unknown index storage {name!r}; choose one of {', '.join(CODECS)}") from None
