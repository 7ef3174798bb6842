"""MMEmbedEmbeddings: pooled vectors of the core encoder, embed_image, shared lazy model."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import torch
from PIL import Image

from langchain_mmembed import MMEmbedEmbeddings


@pytest.fixture(scope="module")
def page_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lc_emb") / "page.png"
    img = Image.new("RGB", (96, 128), "white")
    for x in range(10, 80):
        img.putpixel((x, 40), (0, 0, 0))
    img.save(path)
    return path


def test_vectors_are_the_documented_pool_of_core_multivectors(tiny_model: str) -> None:
    import mmembed
    from mmembed.retrieve import pool

    embeddings = MMEmbedEmbeddings(model=tiny_model)
    encoder = mmembed.load_encoder(tiny_model)
    assert embeddings.encoder is encoder  # core's process-wide cache: one shared model
    assert embeddings.info.kind == "multi"

    texts = ["solar panel efficiency", "quarterly revenue", "lentil soup"]
    vectors = embeddings.embed_documents(texts)
    multi = encoder.encode_text_documents(texts)  # list of (n_tokens, dim): the document side
    assert len(vectors) == 3
    for vector, tokens in zip(vectors, multi, strict=True):
        assert tokens.shape[0] > 1  # really multi-vector: pooling is exercised
        assert len(vector) == embeddings.info.dim
        assert torch.allclose(torch.tensor(vector), pool(tokens), atol=1e-5)
        assert abs(torch.tensor(vector).norm().item() - 1.0) < 1e-4
    query = torch.tensor(embeddings.embed_query(texts[1]))
    assert torch.allclose(query, pool(encoder.encode_queries([texts[1]])[0]), atol=1e-5)
    assert not torch.allclose(query, torch.tensor(vectors[1]), atol=1e-3)  # queries are augmented
    assert embeddings.embed_documents([]) == []


def test_embed_image_paths_file_uris_and_data_urls(tiny_model: str, page_image: Path) -> None:
    import mmembed
    from mmembed.retrieve import pool

    embeddings = MMEmbedEmbeddings(model=tiny_model)
    data_url = "data:image/png;base64," + base64.b64encode(page_image.read_bytes()).decode()
    by_path, by_uri, by_data = embeddings.embed_image([str(page_image), f"file://{page_image}", data_url])

    with Image.open(page_image) as img:
        expected = pool(mmembed.load_encoder(tiny_model).encode_images([img.convert("RGB")])[0])
    assert torch.allclose(torch.tensor(by_path), expected, atol=1e-5)
    assert by_uri == pytest.approx(by_path, abs=1e-6) and by_data == pytest.approx(by_path, abs=1e-6)
    assert len(by_path) == embeddings.info.dim

    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        embeddings.embed_image([str(page_image.parent / "missing.png")])


async def test_async_variants_match_sync(tiny_model: str, page_image: Path) -> None:
    embeddings = MMEmbedEmbeddings(model=tiny_model)
    assert await embeddings.aembed_query("solar") == pytest.approx(embeddings.embed_query("solar"), abs=1e-6)
    docs = await embeddings.aembed_documents(["a", "b"])
    assert torch.allclose(torch.tensor(docs), torch.tensor(embeddings.embed_documents(["a", "b"])), atol=1e-6)
    images = await embeddings.aembed_image([str(page_image)])
    assert torch.allclose(
        torch.tensor(images), torch.tensor(embeddings.embed_image([str(page_image)])), atol=1e-6
    )


def test_constructor_is_cheap_and_errors_surface_on_use(tmp_path: Path) -> None:
    embeddings = MMEmbedEmbeddings(model=str(tmp_path / "no-such-checkpoint"))  # nothing loaded yet
    with pytest.raises(Exception, match="no-such-checkpoint"):
        embeddings.embed_query("x")
    with pytest.raises(ValueError):
        MMEmbedEmbeddings(model="m", unknown_option=1)  # type: ignore[call-arg]
