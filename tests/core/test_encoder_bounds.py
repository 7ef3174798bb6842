"""Every VLM family bounds what a user can feed it (issue 15): a query's token count and a
page's pixel count, before anything reaches the processor or the model. Tiny checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from mmembed.encoders import load_encoder
from mmembed.encoders.vlm import QueryTooLongWarning, VLMEncoder
from mmembed.types import MMEmbedError


@pytest.fixture(scope="module")
def encoder(tiny_colqwen2_5: Path) -> VLMEncoder:
    loaded = load_encoder(str(tiny_colqwen2_5), device="cpu")
    assert isinstance(loaded, VLMEncoder)
    return loaded


def test_long_query_is_truncated_with_a_warning_or_refused(encoder: VLMEncoder) -> None:
    huge = "find the quarterly revenue table " * 3000  # ~100k characters
    short = encoder.encode_queries(["find the quarterly revenue table"])[0]
    with pytest.warns(QueryTooLongWarning, match="tokens long"):
        (cut,) = encoder.encode_queries([huge])
    # (tokens, dim): the prompt adds a few tokens around the max_query_tokens kept
    assert encoder.max_query_tokens <= cut.shape[0] <= encoder.max_query_tokens + 32
    assert short.shape[0] < 32  # a normal query is untouched
    encoder.query_overflow = "error"
    try:
        with pytest.raises(MMEmbedError, match=r"query 0 is .* tokens long"):
            encoder.encode_queries([huge])
        assert encoder.encode_queries(["find the quarterly revenue table"])[0].shape == short.shape
    finally:
        encoder.query_overflow = "truncate"


def test_huge_page_is_downscaled_before_the_processor(encoder: VLMEncoder, monkeypatch: Any) -> None:
    cap = encoder.page_pixel_cap()
    assert cap is not None and cap > 0
    seen: list[tuple[int, int]] = []
    original = encoder.image_inputs

    def spy(texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        seen.extend(image.size for image in images)
        return original(texts, images)

    monkeypatch.setattr(encoder, "image_inputs", spy)
    huge = Image.new("P", (9000, 9000), 3)
    (emb,) = encoder.encode_images([huge])
    assert seen and seen[0][0] * seen[0][1] <= cap
    assert abs(seen[0][0] - seen[0][1]) <= 1  # aspect ratio kept
    assert torch.isfinite(emb).all()


@pytest.mark.parametrize("family", ["colpali", "colidefics3", "colqwen2"])
def test_every_family_has_a_pixel_cap(tiny_checkpoint: Any, family: str) -> None:
    loaded = load_encoder(str(tiny_checkpoint(family)), device="cpu")
    assert isinstance(loaded, VLMEncoder)
    cap = loaded.page_pixel_cap()
    assert cap is not None and cap < 9000 * 9000


def test_a_transparent_image_is_one_vector_through_the_api_and_the_page_loader(
    encoder: VLMEncoder, tmp_path: Path
) -> None:
    """Issue 29 item 5: one rule everywhere, alpha composited on white (the page loader's rule)."""
    from mmembed.loaders import render_page

    rgba = Image.new("RGBA", (160, 120), (20, 60, 200, 255))
    rgba.paste((200, 30, 30, 0), (0, 0, 80, 120))  # left half fully transparent (red underneath)
    rgba.paste((10, 150, 10, 96), (80, 60, 160, 120))  # a quarter half-transparent
    path = tmp_path / "half.png"
    rgba.save(path)
    loaded = render_page(path, 1)
    assert loaded.getpixel((10, 10)) == (255, 255, 255)  # white, not the hidden red
    via_loader, via_api = encoder.encode_images([loaded, Image.open(path)], batch_size=1)
    torch.testing.assert_close(via_api, via_loader, atol=0, rtol=0)
    white = Image.new("RGB", rgba.size, "white")
    white.paste(rgba, mask=rgba.getchannel("A"))
    torch.testing.assert_close(encoder.encode_images([white])[0], via_api, atol=0, rtol=0)
