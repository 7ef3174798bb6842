"""Validate a batch of :class:`PageInput` and turn it into rows + raw vector bytes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..types import EncoderInfo
from .codecs import Codec
from .errors import InvalidPageError
from .pooling import pool_tokens
from .protocol import PageInput, page_id
from .text import check_page_text

MAX_THUMBNAIL_BYTES = 1 << 20


@dataclass(frozen=True)
class PageRow:
    id: str
    source: str
    page: int
    content_hash: str
    metadata_json: str
    n_vectors: int
    thumbnail: bytes | None
    text: str | None = None
    """The page's own text for the full-text index (cleaned, bounded); ``None``: none."""


@dataclass(frozen=True)
class EncodedBatch:
    rows: list[PageRow]
    vectors: np.ndarray  # (total_vectors, width) raw rows of the storage codec, C-contiguous

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rows]


def describe(page: PageInput) -> str:
    """How error messages name a page."""
    pid = page.id if page.id is not None else page_id(str(page.content_hash), page.page)
    return f"page {page.page} of {page.source!r} (id {pid!r})"


def encode_batch(
    pages: Sequence[PageInput],
    *,
    encoder: EncoderInfo,
    dtype: Codec,
    keep_thumbnails: bool,
    index_path: Path,
    pooling: int = 1,
) -> EncodedBatch:
    """Validate ``pages`` and encode their vectors with ``dtype``, pooling each page's
    tokens by ``pooling`` first (``n_vectors`` counts the stored, pooled vectors)."""
    rows: list[PageRow] = []
    arrays: list[np.ndarray] = []
    seen: dict[str, int] = {}
    for i, page in enumerate(pages):
        if not isinstance(page, PageInput):
            raise InvalidPageError(
                f"item {i} of the batch for {index_path} is a {type(page).__name__}, not a PageInput"
            )
        row = _row(page, encoder, keep_thumbnails, index_path)
        if row.id in seen:
            raise InvalidPageError(
                f"the batch for {index_path} holds id {row.id!r} twice (items {seen[row.id]} and {i}); "
                "ids must be unique — give pages distinct ids or distinct (content_hash, page)."
            )
        seen[row.id] = i
        stored = _vectors(page, encoder, dtype, index_path, pooling)  # (n_stored, width)
        arrays.append(stored)
        rows.append(dataclasses.replace(row, n_vectors=int(stored.shape[0])))
    width = dtype.width(encoder.dim)
    vectors = np.concatenate(arrays, axis=0) if arrays else np.empty((0, width), dtype=dtype.numpy)
    return EncodedBatch(rows, np.ascontiguousarray(vectors, dtype=dtype.numpy))


def _row(page: PageInput, encoder: EncoderInfo, keep_thumbnails: bool, index_path: Path) -> PageRow:
    name = describe(page)

    def bad(why: str) -> InvalidPageError:
        return InvalidPageError(f"cannot store {name} in the index at {index_path}: {why}")

    if not isinstance(page.source, str) or not page.source:
        raise bad("source must be a non-empty string (the file's path)")
    if isinstance(page.page, bool) or not isinstance(page.page, int) or page.page < 1:
        raise bad(f"page must be a 1-based integer, got {page.page!r}")
    if not isinstance(page.content_hash, str) or not page.content_hash:
        raise bad("content_hash must be a non-empty string (hex sha256 of the file)")
    pid = page.resolved_id()
    if not isinstance(pid, str) or not pid:
        raise bad("id must be a non-empty string")
    if not isinstance(page.metadata, dict) or not all(isinstance(k, str) for k in page.metadata):
        raise bad("metadata must be a dict with string keys")
    try:
        metadata_json = json.dumps(page.metadata, allow_nan=False, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise bad(
            f"metadata must be JSON-serialisable without NaN/inf ({exc}); convert values to str/int/float/bool/list/dict"
        ) from exc
    thumb: bytes | None = None
    if page.thumbnail is not None and keep_thumbnails:
        if not isinstance(page.thumbnail, bytes | bytearray | memoryview):
            raise bad(f"thumbnail must be bytes (a small JPEG/PNG), got {type(page.thumbnail).__name__}")
        thumb = bytes(page.thumbnail)
        if len(thumb) > MAX_THUMBNAIL_BYTES:
            raise bad(
                f"thumbnail is {len(thumb)} bytes, more than {MAX_THUMBNAIL_BYTES}; store a smaller image"
            )
    n = _shape(page, encoder, index_path)[0]
    text = check_page_text(getattr(page, "text", None), f"cannot store {name} in the index at {index_path}")
    return PageRow(pid, page.source, page.page, page.content_hash, metadata_json, n, thumb, text)


def _shape(page: PageInput, encoder: EncoderInfo, index_path: Path) -> tuple[int, int]:
    emb = page.embedding
    where = f"cannot store {describe(page)} in the index at {index_path}"
    if not isinstance(emb, torch.Tensor):
        raise InvalidPageError(f"{where}: embedding must be a torch.Tensor, got {type(emb).__name__}")
    shape = (1, int(emb.shape[0])) if emb.ndim == 1 else tuple(int(s) for s in emb.shape)
    if len(shape) != 2:
        raise InvalidPageError(f"{where}: embedding must be (n_vectors, dim), got shape {tuple(emb.shape)}")
    n, dim = shape
    if dim != encoder.dim:
        raise InvalidPageError(
            f"{where}: its vectors have dim {dim} but the index stores dim {encoder.dim} "
            f"(encoder {encoder.name!r}). Embed it with the index's encoder."
        )
    # n == 0 is allowed: the page is stored (counted, filterable) but never scored.
    if encoder.kind == "single" and n > 1:
        raise InvalidPageError(
            f"{where}: it has {n} vectors but the index holds single-vector embeddings "
            f"(encoder {encoder.name!r}); pass exactly one vector per page (or none, shape "
            f"(0, {encoder.dim}), to store the page without vectors)."
        )
    if not (emb.is_floating_point()):
        raise InvalidPageError(f"{where}: embedding must be a float tensor, got {emb.dtype}")
    return n, dim


def _vectors(
    page: PageInput, encoder: EncoderInfo, dtype: Codec, index_path: Path, pooling: int
) -> np.ndarray[Any, Any]:
    """The page's raw rows in the storage codec. Conversion and checks run in numpy: small
    torch ops on CPU pay thread start-up costs that dominate at this size."""
    emb = page.embedding.detach().to("cpu", torch.float32).reshape(-1, encoder.dim).numpy()  # (n, dim)
    if not np.isfinite(emb).all():
        raise InvalidPageError(
            f"cannot store {describe(page)} in the index at {index_path}: the embedding contains NaN "
            "or infinite values (check the encoder's input)"
        )
    if pooling > 1:
        emb = pool_tokens(emb, pooling)  # (max(n // pooling, 1), dim)
    try:
        return dtype.encode(emb)
    except ValueError as exc:
        raise InvalidPageError(
            f"cannot store {describe(page)} in the index at {index_path}: {exc}; create the index "
            "with storage='float32'"
        ) from exc
