"""Translation between Haystack ``Document`` objects and mmembed index pages.

**Page documents.** A page is a ``Document`` whose id is mmembed's page id and whose
``meta`` holds ``file_path`` and ``page_number`` (Haystack's convention, read by
``DocumentToImageContent``), plus ``page_count`` and ``content_hash`` (sha256 of the file).
``content`` is ``None`` (pages are images, nothing is OCR'd); the image may be attached as
an ``image/*`` ``ByteStream`` blob.

**Multi-vector channel.** ``Document.embedding`` is a flat list, so the document embedder
writes the single-vector view there (the model's vector, or for multi-vector models the
pooled vector of :func:`mmembed.retrieve.pool`) and attaches the exact vectors under
``meta["_mmembed_embedding"]`` (:data:`EMBEDDING_META_KEY`): a JSON object with the encoder's
description, the ``[n_vectors, dim]`` shape and the float32 values as base64. It is plain
JSON, so it survives pipeline snapshots and any copying; :class:`MMEmbedDocumentStore`
consumes it (stores the vectors in the index and drops the key from ``meta``). Documents
written elsewhere keep it in their ``meta``: drop it there if it is not wanted.

**Stored form.** A document becomes one index page: its ``meta`` keys are the page's
top-level metadata (so they are filterable), ``content`` and ``blob`` go under the reserved
keys ``haystack.content`` / ``haystack.blob`` (base64), and ``haystack.document`` marks pages
written through Haystack. Pages indexed by mmembed itself (``mmembed index``) come back as
page documents with ``file_path``/``page_number``/``content_hash`` taken from the record.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from haystack import Document
from haystack.dataclasses import ByteStream

from mmembed.explain import LAYOUT_KEY
from mmembed.index import PageInput
from mmembed.retrieve import pool
from mmembed.types import EncoderInfo, MMEmbedError, PageRecord, user_metadata

from .filters import CONTENT_KEY, MARKER_KEY

if TYPE_CHECKING:
    from PIL import Image

EMBEDDING_META_KEY = "_mmembed_embedding"
"""``meta`` key carrying a document's exact (multi-)vectors from the embedder to the store."""

RENDER_META_KEY = "_mmembed_render"
"""``meta`` key carrying how ``PDFToPageImageDocuments`` rendered the page (``{"dpi": ...}``) to
the image embedder, which renders it again the same way: a Haystack-built index equals
``mmembed index --dpi N``. The store drops it (the vectors are made)."""

BLOB_KEY = "haystack.blob"
RESERVED_PREFIX = "haystack."
PSEUDO_SOURCE_PREFIX = "haystack:"
"""Source of a stored document that names no file (``haystack:<document id>``)."""

# The names Haystack's image components read (DocumentToImageContent, PDFToImageContent).
FILE_PATH = "file_path"
PAGE_NUMBER = "page_number"
PAGE_COUNT = "page_count"
CONTENT_HASH = "content_hash"


class InvalidDocumentError(MMEmbedError, ValueError):
    """A document cannot be stored as it is (names the document and what to change)."""


# ---------------------------------------------------------------- the multi-vector channel


def attach_embedding(
    document: Document, embedding: torch.Tensor, encoder: EncoderInfo, *, layout: dict[str, Any] | None = None
) -> Document:
    """A new document carrying ``embedding`` ``(n_vectors, dim)``: the single-vector view in
    ``Document.embedding`` and the exact vectors under :data:`EMBEDDING_META_KEY`, with the
    page's patch layout (``layout``, see :func:`mmembed.explain.recorded_layout`) if known."""
    vectors = embedding.detach().to("cpu", torch.float32).contiguous()  # (n_vectors, dim)
    payload = {
        "encoder": encoder.to_dict(),
        "shape": [int(vectors.shape[0]), int(vectors.shape[1])],
        "dtype": "float32",
        "data": base64.b64encode(vectors.numpy().astype("<f4").tobytes()).decode("ascii"),
    }
    if layout is not None:
        payload["patch_layout"] = layout
    return replace(
        document,
        embedding=pool(vectors).tolist(),
        meta={**document.meta, EMBEDDING_META_KEY: payload},
    )


def read_attached_embedding(document: Document) -> tuple[torch.Tensor, EncoderInfo] | None:
    """The vectors ``(n_vectors, dim)`` and encoder attached by :func:`attach_embedding`."""
    payload = document.meta.get(EMBEDDING_META_KEY)
    if payload is None:
        return None
    try:
        encoder = EncoderInfo.from_dict(payload["encoder"])
        n, dim = (int(v) for v in payload["shape"])
        if payload.get("dtype") != "float32":
            raise ValueError(f"unsupported dtype {payload.get('dtype')!r}")
        values = np.frombuffer(base64.b64decode(payload["data"], validate=True), dtype="<f4")
        vectors = torch.from_numpy(values.astype(np.float32).reshape(n, dim))  # (n_vectors, dim)
    except (KeyError, TypeError, ValueError, MMEmbedError) as exc:
        raise InvalidDocumentError(
            f"document {document.id!r}: meta[{EMBEDDING_META_KEY!r}] is not a valid mmembed embedding ({exc}); "
            "it must be produced by MMEmbedDocumentImageEmbedder — re-embed the document"
        ) from exc
    return vectors, encoder


# ---------------------------------------------------------------- Document -> index page


def to_page_input(document: Any, encoder: EncoderInfo, index_path: str) -> PageInput:
    """The index page storing ``document`` in an index built with ``encoder``."""
    if not isinstance(document, Document):
        raise InvalidDocumentError(
            f"write_documents takes Haystack Document objects, got {type(document).__name__}"
        )
    meta = dict(document.meta)
    attached = meta.pop(EMBEDDING_META_KEY, None)
    meta.pop(RENDER_META_KEY, None)
    reserved = sorted(k for k in meta if k.startswith(RESERVED_PREFIX))
    if reserved:
        raise InvalidDocumentError(
            f"document {document.id!r}: meta keys starting with {RESERVED_PREFIX!r} are reserved by the "
            f"mmembed store ({', '.join(reserved)}); rename them"
        )
    vectors = _vectors_of(document, encoder, index_path)
    metadata: dict[str, Any] = {**meta, MARKER_KEY: True}
    if isinstance(attached, dict) and attached.get("patch_layout") is not None:
        metadata[LAYOUT_KEY] = attached["patch_layout"]  # similarity maps from the stored vectors
    if document.content is not None:
        metadata[CONTENT_KEY] = document.content
    if document.blob is not None:
        metadata[BLOB_KEY] = {
            "data": base64.b64encode(document.blob.data).decode("ascii"),
            "mime_type": document.blob.mime_type,
            "meta": document.blob.meta,
        }
    if vectors is None:  # stored without vectors: counted and filterable, never a search hit
        vectors = torch.zeros(0, encoder.dim)  # (0, dim)
    file_path, page_number, content_hash = meta.get(FILE_PATH), meta.get(PAGE_NUMBER), meta.get(CONTENT_HASH)
    has_page = isinstance(page_number, int) and not isinstance(page_number, bool) and page_number >= 1
    return PageInput(
        embedding=vectors,
        source=file_path if isinstance(file_path, str) and file_path else PSEUDO_SOURCE_PREFIX + document.id,
        page=page_number if has_page else 1,  # type: ignore[arg-type]
        content_hash=content_hash
        if isinstance(content_hash, str) and content_hash
        else _id_hash(document.id),
        metadata=metadata,
        id=document.id,
        text=_searchable_text(document),
    )


def _searchable_text(document: Document) -> str | None:
    """The document's content for the index's text search (bounded and cleaned by core)."""
    if not isinstance(document.content, str) or not document.content:
        return None
    from mmembed.index.text import clean_text

    return clean_text(document.content, where=f"document {document.id!r}") or None


def _id_hash(document_id: str) -> str:
    return hashlib.sha256(document_id.encode("utf-8")).hexdigest()


def _vectors_of(document: Document, encoder: EncoderInfo, index_path: str) -> torch.Tensor | None:
    """``(n_vectors, dim)`` to store for ``document``, or ``None`` if it has no embedding."""
    attached = read_attached_embedding(document)
    if attached is not None:
        vectors, made_by = attached
        encoder.check_compatible(made_by, index_path=index_path)
        return vectors
    if document.embedding is None:
        return None
    if len(document.embedding) != encoder.dim:
        raise InvalidDocumentError(
            f"document {document.id!r} has an embedding of {len(document.embedding)} values but the store at "
            f"{index_path} holds {encoder.dim}-dimensional vectors of encoder {encoder.name!r}; embed it with "
            "that encoder (MMEmbedDocumentImageEmbedder)"
        )
    return torch.tensor([document.embedding], dtype=torch.float32)  # (1, dim)


# ---------------------------------------------------------------- index page -> Document


def to_document(
    record: PageRecord, *, embedding: torch.Tensor | None = None, score: float | None = None
) -> Document:
    """The Haystack document stored as ``record`` (``embedding``: its stored vectors)."""
    metadata = user_metadata(record.metadata)  # core's own keys (the patch layout) are not the user's
    flat = None if embedding is None or embedding.shape[0] == 0 else pool(embedding).tolist()
    if metadata.pop(MARKER_KEY, False):
        content = metadata.pop(CONTENT_KEY, None)
        blob = _blob(metadata.pop(BLOB_KEY, None))
        meta = metadata
    else:  # a page indexed by mmembed itself
        content, blob = None, None
        meta = {
            FILE_PATH: record.source,
            PAGE_NUMBER: record.page,
            CONTENT_HASH: record.content_hash,
            **metadata,
        }
    return Document(id=record.id, content=content, blob=blob, meta=meta, score=score, embedding=flat)


def has_vectors(record: PageRecord) -> bool:
    """Whether the page was stored with vectors (a document without an embedding has none)."""
    return record.n_vectors > 0


def _blob(stored: Mapping[str, Any] | None) -> ByteStream | None:
    if stored is None:
        return None
    return ByteStream(
        data=base64.b64decode(stored["data"]),
        mime_type=stored.get("mime_type"),
        meta=dict(stored.get("meta") or {}),
    )


# ---------------------------------------------------------------- page images


def blob_image(document: Document) -> Image.Image | None:
    """The page image attached to ``document`` as an ``image/*`` blob, if any (RGB)."""
    blob = document.blob
    if blob is None or not (blob.mime_type or "").startswith("image/"):
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob.data)) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise InvalidDocumentError(
            f"document {document.id!r}: its {blob.mime_type} blob cannot be decoded ({exc}); attach a valid image "
            "or remove the blob so the page is rendered from meta['file_path']"
        ) from exc


def page_location(document: Document) -> tuple[str | None, int | None]:
    """``(file_path, page_number)`` from the document's meta (either may be ``None``)."""
    file_path, page_number = document.meta.get(FILE_PATH), document.meta.get(PAGE_NUMBER)
    path = str(file_path) if isinstance(file_path, str) and file_path else None
    page = page_number if isinstance(page_number, int) and not isinstance(page_number, bool) else None
    return path, page
