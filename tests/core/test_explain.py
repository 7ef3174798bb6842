"""Similarity maps (Retriever.explain / Encoder.explain_page) on tiny checkpoints.

The model is swapped for one whose vectors are known: each visual token's vector says how
dark its patches are, each query token asks for darkness. The real processor still cuts
and orders the patches, so the maximum lands on the black square only if the grid is laid
out right.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw

import mmembed
from mmembed.explain import Explanation
from mmembed.retrieve import Retriever
from mmembed.types import MMEmbedError, PageRecord

QUERY = "where is the black square"
SIDE = 448  # pixels: the tiny processor keeps it (a 16x16 grid of merged 28-pixel cells)


class DarknessModel:
    """Stands in for the Embedder: visual token -> (darkness, 0, ...), query token -> (1, 0, ...),
    any other page token -> (0, 1, 0, ...)."""

    def __init__(self, image_token_id: int, merge: int, dim: int) -> None:
        self.image_token_id, self.merge, self.dim = image_token_id, merge, dim

    def __call__(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None, **_: Any
    ) -> torch.Tensor:
        batch, tokens = input_ids.shape
        out = torch.zeros(batch, tokens, self.dim)  # (batch, tokens, dim)
        if pixel_values is None:
            out[..., 0] = 1.0
            return out
        out[..., 1] = 1.0
        # (patches, patch_dim) in the processor's order; merge² consecutive patches make one token.
        darkness = -pixel_values.float().mean(dim=1).reshape(-1, self.merge**2).mean(dim=1)  # (visual,)
        visual = input_ids == self.image_token_id  # (batch, tokens)
        rows = torch.zeros(int(visual.sum()), self.dim)
        rows[:, 0] = darkness
        out[visual] = rows
        return out


def with_darkness_model(checkpoint: Path) -> Any:
    # A shallow copy: the process-wide cached encoder (shared with other tests) keeps its model.
    encoder = copy.copy(mmembed.load_encoder(str(checkpoint)))
    image_token = encoder.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    encoder.model = DarknessModel(image_token, encoder.image_processor.merge_size, encoder.info.dim)
    return encoder


@pytest.fixture(scope="module")
def darkness_encoder(tiny_colqwen2_5: Path) -> Any:
    return with_darkness_model(tiny_colqwen2_5)


def square_page(left: int, top: int, size: int) -> Image.Image:
    page = Image.new("RGB", (SIDE, SIDE), "white")
    ImageDraw.Draw(page).rectangle([left, top, left + size - 1, top + size - 1], fill="black")
    return page


@pytest.mark.parametrize(("left", "top"), [(336, 56), (28, 308)])
def test_maximum_lands_on_the_dark_cell(darkness_encoder: Any, left: int, top: int) -> None:
    explanation = darkness_encoder.explain_page(QUERY, square_page(left, top, 28))
    n_tokens, rows, cols = explanation.maps.shape
    assert (rows, cols) == (SIDE // 28, SIDE // 28)
    expected = (top // 28, left // 28)
    assert explanation.best_patches() == [expected] * n_tokens
    aggregate = explanation.aggregate  # (rows, cols)
    assert divmod(int(aggregate.argmax()), cols) == expected
    # The dark cell stands out: every other cell is white.
    torch.testing.assert_close(aggregate.flatten().sort().values[-2], aggregate.min())


@pytest.mark.parametrize("family", ["colqwen2", "colqwen3"])
def test_other_qwen_vl_generations(family: str, tmp_path: Path) -> None:
    from mmembed_testing import make_tiny_checkpoint

    encoder = with_darkness_model(make_tiny_checkpoint(family, tmp_path / family, seed=0))
    cell = encoder.image_processor.patch_size * encoder.image_processor.merge_size  # 28 / 32 pixels
    explanation = encoder.explain_page(QUERY, square_page(12 * cell, 2 * cell, cell))
    assert explanation.maps.shape[1:] == (SIDE // cell, SIDE // cell)
    assert set(explanation.best_patches()) == {(2, 12)}


def test_tokens_are_the_query_tokens(darkness_encoder: Any) -> None:
    explanation = darkness_encoder.explain_page(QUERY, square_page(0, 0, 28))
    tokenizer = darkness_encoder.processor.tokenizer
    assert "".join(explanation.tokens) == QUERY + "<|endoftext|>" * 10
    assert len(explanation.tokens) == len(tokenizer(QUERY + "<|endoftext|>" * 10)["input_ids"])
    assert explanation.maps.shape[0] == len(explanation.tokens)


def test_overlay_colours_the_match(darkness_encoder: Any, tmp_path: Path) -> None:
    page = square_page(336, 56, 28)
    explanation = darkness_encoder.explain_page(QUERY, page)
    overlay = explanation.overlay()
    assert overlay.size == page.size
    # Far from the match the page is unchanged; on it, the black square turns red.
    assert overlay.getpixel((20, 420)) == (255, 255, 255)
    red, green, blue = overlay.getpixel((336 + 14, 56 + 14))
    assert red > 100 and green < 20 and blue < 20
    written = explanation.save(tmp_path, "hit", tokens=[0, 3])
    assert [p.name for p in written] == ["hit.png", "hit.token0.png", "hit.token3.png"]
    with pytest.raises(MMEmbedError, match="token 99 is out of range"):
        explanation.overlay(99)


def test_retriever_explain_renders_the_hit(
    darkness_encoder: Any, tmp_path: Path, tiny_colqwen2_5: Path
) -> None:
    source = tmp_path / "square.png"
    square_page(336, 56, 28).save(source)
    index = mmembed.open_index(tmp_path / "index", encoder=darkness_encoder.info)
    try:
        mmembed.index_documents([source], index, darkness_encoder, progress=False)
        hit = Retriever(index, darkness_encoder).search(QUERY, k=1)[0]
        explanation = Retriever(index, darkness_encoder).explain(QUERY, hit)
        assert isinstance(explanation, Explanation)
        assert explanation.best_patches()[0] == (2, 12)
        # The file changed since indexing: refused, not a different page explained.
        square_page(0, 0, 28).save(source)
        with pytest.raises(MMEmbedError, match="changed since it was indexed"):
            Retriever(index, darkness_encoder).explain(QUERY, hit)
        # The file is gone: the stored thumbnail is explained instead.
        source.unlink()
        thumb = Retriever(index, darkness_encoder).explain(QUERY, hit)
        assert thumb.image.size == Image.open(io.BytesIO(hit.record.thumbnail or b"")).size
    finally:
        index.close()


def test_single_vector_family_refuses(tmp_path: Path) -> None:
    from mmembed_testing import make_tiny_checkpoint

    encoder = mmembed.load_encoder(str(make_tiny_checkpoint("biqwen2_5", tmp_path / "bi", seed=0)))
    with pytest.raises(MMEmbedError, match="not available for this model"):
        encoder.explain_page(QUERY, square_page(0, 0, 28))
    record = PageRecord(id="x", source=str(tmp_path / "gone.pdf"), page=1, content_hash="0" * 64)
    index = mmembed.open_index(tmp_path / "index", encoder=encoder.info)
    try:
        with pytest.raises(MMEmbedError, match="not available for this model"):
            Retriever(index, encoder).explain(QUERY, record, image=square_page(0, 0, 28))
    finally:
        index.close()


def test_cli_search_explain_writes_overlays(
    tmp_path: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmembed.cli import main

    square_page(336, 56, 28).save(tmp_path / "square.png")
    index = str(tmp_path / "index")
    assert (
        main(["index", str(tmp_path / "square.png"), "--index", index, "--model", str(tiny_colqwen2_5), "-q"])
        == 0
    )
    out = tmp_path / "why"
    assert (
        main(["search", "a square", "--index", index, "-k", "1", "--explain", str(out), "--tokens", "1"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["01-square-p1.png", "01-square-p1.token1.png"]
    printed = capsys.readouterr().out
    assert "wrote 2 similarity overlay(s) to" in printed and "(stored page vectors)" in printed
    with pytest.raises(SystemExit) as usage:  # --tokens without --explain: a usage error (exit 2)
        main(["search", "a square", "--index", index, "--tokens", "1"])
    assert usage.value.code == 2
    assert "add --explain DIR" in capsys.readouterr().err
    assert main(["search", "a square", "--index", index, "--explain", str(out), "--tokens", "999"]) == 1
    assert "token 999 is out of range" in capsys.readouterr().err
