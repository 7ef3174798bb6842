"""Device, dtype and attention choices, and size-sorted batching with OOM back-off."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

from ..types import MMEmbedError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` / ``"auto"``: CUDA, else Apple MPS, else CPU. A bare ``"cuda"`` becomes
    ``cuda:<current>`` so that equal requests compare equal."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise MMEmbedError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"
        ) from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise MMEmbedError(f"device {device!r} was asked for but CUDA is not available; use device='cpu'")
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    if resolved.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise MMEmbedError(f"device {device!r} was asked for but MPS is not available; use device='cpu'")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` / ``"auto"``: bfloat16 on CUDA (float16 where bf16 is unsupported),
    float16 on MPS, float32 on CPU."""
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        key = str(dtype).removeprefix("torch.")
        if key not in _DTYPES:
            raise MMEmbedError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))} or 'auto'")
        resolved = _DTYPES[key]
    if resolved not in (torch.float32, torch.bfloat16, torch.float16):
        raise MMEmbedError(f"dtype {resolved} is not a floating point type an encoder can run in")
    return resolved


def default_attention(device: torch.device) -> str:
    """Eager attention on CPU (what the parity fixtures ran under), SDPA elsewhere. SDPA can
    yield NaN only on a fully masked attention row (a causal model's left-pad position) with a
    kernel that does not repair it; none was seen on transformers 5.23 + torch 2.14.1, and a
    NaN output is refused in :func:`~mmembed.encoders.vlm.real_rows` anyway."""
    return "eager" if device.type == "cpu" else "sdpa"


def size_sorted_batches(sizes: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar size (largest first) to cut padding."""
    if batch_size < 1:
        raise MMEmbedError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def run_batched(
    items: Sequence[T],
    sizes: Sequence[int],
    batch_size: int,
    encode: Callable[[list[T]], list[torch.Tensor]],
    *,
    progress: bool = False,
    desc: str = "encoding",
) -> list[torch.Tensor]:
    """Run ``encode`` over size-sorted batches and return results in input order. On a
    CUDA out-of-memory error the batch is halved and retried (down to one item)."""
    results: list[torch.Tensor | None] = [None] * len(items)
    bar = _progress_bar(len(items), desc) if progress else None
    try:
        for batch in size_sorted_batches(sizes, batch_size):
            for indices, output in _encode_with_backoff(batch, items, encode):
                for i, out in zip(indices, output, strict=True):
                    results[i] = out
                if bar is not None:
                    bar.update(len(indices))
    finally:
        if bar is not None:
            bar.close()
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # cannot happen unless encode returns fewer outputs than inputs
        raise MMEmbedError(f"no embedding was produced for inputs {missing[:5]}")
    return [r for r in results if r is not None]


def _encode_with_backoff(
    batch: list[int], items: Sequence[T], encode: Callable[[list[T]], list[torch.Tensor]]
) -> Iterator[tuple[list[int], list[torch.Tensor]]]:
    pending = [batch]
    while pending:
        indices = pending.pop(0)
        try:
            yield indices, encode([items[i] for i in indices])
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not _is_oom(err) or len(indices) == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(indices) // 2
            logger.warning("out of memory on a batch of %d; retrying in batches of %d", len(indices), half)
            pending[:0] = [indices[:half], indices[half:]]


def _progress_bar(total: int, desc: str):  # -> tqdm
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item")
