"""MMEmbedEmbedding: single vectors for text and images, pooled for multi-vector models."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.embeddings.mmembed import MMEmbedEmbedding
from PIL import Image

import mmembed
from mmembed.encoders.base import Encoder
from mmembed.retrieve import pool
from mmembed.types import EncoderInfo


@pytest.fixture
def page_image(tmp_path: Path, sample_pdfs: list[Path]) -> Path:
    path = tmp_path / "page.png"
    mmembed.render_page(sample_pdfs[0], 1, dpi=48).save(path)
    return path


def test_multi_vector_model_gives_documented_pooled_vector(
    tiny_model: str, encoder: Encoder, page_image: Path
) -> None:
    embed = MMEmbedEmbedding(model_name=tiny_model)
    assert isinstance(embed, MultiModalEmbedding) and embed.info.kind == "multi"

    query = embed.get_query_embedding("solar capacity")
    expected = pool(encoder.encode_queries(["solar capacity"])[0])
    assert len(query) == encoder.info.dim
    assert torch.allclose(torch.tensor(query), expected, atol=1e-6)
    assert torch.linalg.norm(torch.tensor(query)).item() == pytest.approx(1.0, abs=1e-5)

    image = embed.get_image_embedding(str(page_image))
    expected_image = pool(encoder.encode_images([Image.open(page_image).convert("RGB")])[0])
    assert torch.allclose(torch.tensor(image), expected_image, atol=1e-5)


def test_batches_match_single_calls_and_accept_bytes(tiny_model: str, page_image: Path) -> None:
    embed = MMEmbedEmbedding(model_name=tiny_model, embed_batch_size=2)
    texts = ["solar", "risotto recipe", "quarterly revenue"]
    batch = embed.get_text_embedding_batch(texts)
    assert len(batch) == 3
    for text, vector in zip(texts, batch, strict=True):
        assert torch.allclose(torch.tensor(vector), torch.tensor(embed.get_text_embedding(text)), atol=1e-5)

    from_bytes = embed.get_image_embedding_batch([io.BytesIO(page_image.read_bytes()), str(page_image)])
    assert torch.allclose(torch.tensor(from_bytes[0]), torch.tensor(from_bytes[1]), atol=1e-5)


async def test_async_matches_sync(tiny_model: str, page_image: Path) -> None:
    embed = MMEmbedEmbedding(model_name=tiny_model)
    assert await embed.aget_query_embedding("wind") == pytest.approx(
        embed.get_query_embedding("wind"), abs=1e-5
    )
    texts = await embed.aget_text_embedding_batch(["a", "b", "c"])
    assert len(texts) == 3
    images = await embed.aget_image_embedding_batch([str(page_image)])
    assert images[0] == pytest.approx(embed.get_image_embedding(str(page_image)), abs=1e-5)


def test_multi_vector_error_mode_refuses(tiny_model: str) -> None:
    embed = MMEmbedEmbedding(model_name=tiny_model, multi_vector="error")
    with pytest.raises(mmembed.MMEmbedError, match="multi-vector"):
        embed.get_query_embedding("solar")


class _SingleVector(Encoder):
    """The tiny model behind a single-vector interface (one pooled row per input)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.info = EncoderInfo(
            name="single", family="test", kind="single", dim=inner.info.dim, similarity="cosine"
        )
        self.device, self.dtype = inner.device, inner.dtype

    def encode_queries(self, queries: Sequence[str], **kw: object) -> list[torch.Tensor]:
        return [e.mean(0, keepdim=True) for e in self.inner.encode_queries(queries)]

    def encode_images(self, images: Sequence[Image.Image], **kw: object) -> list[torch.Tensor]:
        return [e.mean(0, keepdim=True) for e in self.inner.encode_images(images)]


def test_single_vector_model_returns_its_vector_unchanged(encoder: Encoder) -> None:
    embed = MMEmbedEmbedding(model_name="single", multi_vector="error")
    embed._encoder = _SingleVector(encoder)
    vector = embed.get_query_embedding("solar")
    expected = encoder.encode_queries(["solar"])[0].mean(0)
    assert torch.allclose(torch.tensor(vector), expected, atol=1e-6)


def test_not_an_image_is_a_clear_error(tiny_model: str, sample_pdfs: list[Path]) -> None:
    embed = MMEmbedEmbedding(model_name=tiny_model)
    with pytest.raises(mmembed.MMEmbedError, match="PDFPageImageReader"):
        embed.get_image_embedding(str(sample_pdfs[0]))


def test_cheap_constructor_and_serialisation_round_trip(tiny_model: str) -> None:
    lazy = MMEmbedEmbedding(model_name="/no/such/checkpoint", dtype="float32", embed_batch_size=4)
    assert lazy._encoder is None  # nothing loaded yet
    data = lazy.to_dict()
    assert data["class_name"] == MMEmbedEmbedding.class_name() == "MMEmbedEmbedding"
    assert MMEmbedEmbedding.from_dict(data).to_dict() == data
    assert MMEmbedEmbedding.from_json(lazy.to_json()).to_dict() == data

    # Same settings -> the same encoder object: one copy of the weights per process.
    assert MMEmbedEmbedding(model_name=tiny_model).encoder is MMEmbedEmbedding(model_name=tiny_model).encoder
