"""Nomic Embed v1.5 in Haystack: page images embedded by the vision model, a text query by the
text model (``model_kwargs`` carries ``text_model``), retrieval through the shared space."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from haystack import Document, Pipeline
from haystack.components.writers import DocumentWriter
from haystack.dataclasses import ByteStream
from haystack.document_stores.types import DuplicatePolicy
from haystack_integrations.components.embedders.mmembed import (
    MMEmbedDocumentImageEmbedder,
    MMEmbedTextEmbedder,
)
from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore
from PIL import Image

import mmembed


def _png(seed: int, size: tuple[int, int]) -> bytes:
    picture = Image.fromarray(
        np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def test_text_query_retrieves_images_through_the_shared_space(
    tiny_nomic: tuple[Path, Path], tmp_path: Path
) -> None:
    text, vision = tiny_nomic
    kwargs = {"text_model": str(text), "matryoshka_dim": 256}
    embedder = MMEmbedDocumentImageEmbedder(model=str(vision), device="cpu", model_kwargs=kwargs)
    assert MMEmbedDocumentImageEmbedder.from_dict(embedder.to_dict()).model_kwargs == kwargs
    documents = [
        Document(
            id=f"img{i}",
            blob=ByteStream(_png(i, size), mime_type="image/png"),
            meta={"file_path": f"img{i}.png"},
        )
        for i, size in enumerate([(80, 120), (150, 60), (64, 64)])
    ]
    store = MMEmbedDocumentStore(path=str(tmp_path / "index"))
    indexing = Pipeline()
    indexing.add_component("embedder", embedder)
    indexing.add_component("writer", DocumentWriter(document_store=store, policy=DuplicatePolicy.OVERWRITE))
    indexing.connect("embedder.documents", "writer.documents")
    indexing.run({"embedder": {"documents": documents}})

    query_embedder = MMEmbedTextEmbedder(model=str(vision), device="cpu", model_kwargs=kwargs)
    query_embedder.warm_up()
    query = query_embedder.run(text="quarterly revenue")
    assert len(query["embedding"]) == 256
    hits = MMEmbedRetriever(document_store=store, top_k=3).run(
        query_multi_embedding=query["multi_embedding"]
    )["documents"]

    encoder = mmembed.load_encoder(vision, device="cpu", **kwargs)
    q = encoder.encode_queries(["quarterly revenue"])[0][0]
    pictures = {d.id: Image.open(io.BytesIO(d.blob.data)) for d in documents if d.blob is not None}
    expected = {i: float(encoder.encode_images([p])[0][0] @ q) for i, p in pictures.items()}
    assert [h.id for h in hits] == sorted(expected, key=lambda i: -expected[i])
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.id], abs=1e-4)
