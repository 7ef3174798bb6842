"""Similarity maps for every multi-vector image family, and from stored vectors.

As in test_explain.py, the model is swapped for one whose vectors are known: each image
token's vector says how dark its patch is (computed from the processor's own
``pixel_values``, in the order the real vision tower emits them), each query token asks for
darkness. The real processor still resizes, tiles and orders the page, so the maximum lands
on the black square only if the family's layout puts every patch where it belongs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import mmembed
from mmembed.explain import LAYOUT_KEY, PatchLayout, PatchView
from mmembed.retrieve import Retriever, shared_metadata
from mmembed.types import MMEmbedError

QUERY = "where is the black square"
Cells = Callable[[torch.Tensor], torch.Tensor]


def qwen_cells(merge: int) -> Cells:
    # (patches, patch_dim) in the processor's order (transformers' ColQwen2 adds a batch axis);
    # merge² consecutive patches make one token.
    return lambda pixels: -pixels.float().flatten(0, -2).mean(dim=1).reshape(-1, merge**2).mean(dim=1)


def square_cells(cell: int) -> Cells:
    # (batch, 3, side, side): SigLIP's patches, row-major.
    return lambda pixels: -F.avg_pool2d(pixels.float().mean(dim=1, keepdim=True), cell).flatten()


def tile_cells(cell: int) -> Cells:
    # (batch, views, 3, tile, tile): each view's pixel-shuffled tokens, row-major, views in order.
    return lambda pixels: (
        -F.avg_pool2d(pixels.float().flatten(0, 1).mean(dim=1, keepdim=True), cell).flatten()
    )


class DarknessModel:
    """Stands in for the model: image token -> (darkness, 0, ...), query token -> (1, 0, ...),
    other page tokens -> (0, 1, 0, ...)."""

    def __init__(self, image_token_id: int, cells: Cells, dim: int) -> None:
        self.image_token_id, self.cells, self.dim = image_token_id, cells, dim
        self.image_calls = 0

    def __call__(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None, **_: Any
    ) -> torch.Tensor:
        out = torch.zeros(*input_ids.shape, self.dim)  # (batch, tokens, dim)
        if pixel_values is None:
            out[..., 0] = 1.0
            return out
        self.image_calls += 1
        out[..., 1] = 1.0
        visual = input_ids == self.image_token_id  # (batch, tokens)
        rows = torch.zeros(int(visual.sum()), self.dim)
        rows[:, 0] = self.cells(pixel_values)
        out[visual] = rows
        return out


def darkness_encoder(family: str, folder: Path) -> tuple[Any, int]:
    """A copy of ``family``'s tiny encoder with the darkness model, and the page-grid cell
    size in pixels of a 448-pixel-wide page."""
    from mmembed_testing import make_tiny_checkpoint

    # A shallow copy: the process-wide cached encoder (shared with other tests) keeps its model.
    encoder = copy.copy(mmembed.load_encoder(str(make_tiny_checkpoint(family, folder, seed=0))))
    processor = encoder.processor
    token = processor.tokenizer.convert_tokens_to_ids(encoder.recipe.image_token)
    image_processor = encoder.image_processor
    if hasattr(image_processor, "merge_size"):  # Qwen-VL: the page keeps its size (a multiple of the cell)
        merge = int(image_processor.merge_size)
        cells, cell = qwen_cells(merge), int(image_processor.patch_size) * merge
    elif family == "colidefics3":  # 448 -> longest_edge 128: 4 tiles of 32 across, 4x4 tokens each
        tile = int(image_processor.max_image_size["longest_edge"])
        side = int(processor.image_seq_len**0.5)
        scale = image_processor.size["longest_edge"] / 448
        cells, cell = tile_cells(tile // side), round(tile / side / scale)
    else:  # PaliGemma: the page squashed to one square
        side = int(processor.image_seq_length**0.5)
        cells, cell = square_cells(int(image_processor.size["height"]) // side), 448 // side
    encoder.model = DarknessModel(token, cells, encoder.info.dim)
    return encoder, cell


def page_with_square(width: int, height: int, row: int, col: int, cell: int) -> Image.Image:
    page = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(page).rectangle(
        [col * cell, row * cell, (col + 1) * cell - 1, (row + 1) * cell - 1], fill="black"
    )
    return page


FAMILIES = ["colpali", "colidefics3", "colpali_hf", "colqwen2_hf", "nemotron_colembed"]


@pytest.mark.parametrize("family", FAMILIES)
def test_maximum_lands_on_the_dark_cell(family: str, tmp_path: Path) -> None:
    encoder, cell = darkness_encoder(family, tmp_path / family)
    square_page = encoder.info.family in ("colpali", "colpali_hf")
    height = 448 if square_page else 224  # a wide page: tiles in 2 rows x 4 columns for Idefics3
    rows, cols = height // cell, 448 // cell
    target = (rows - 2, cols - 3)
    explanation = encoder.explain_page(QUERY, page_with_square(448, height, *target, cell))
    assert explanation.maps.shape[1:] == (rows, cols)
    assert set(explanation.best_patches()) == {target}
    aggregate = explanation.aggregate  # (rows, cols)
    assert divmod(int(aggregate.argmax()), cols) == target
    assert explanation.vectors_from == "re-encoded"


def test_idefics3_global_view_covers_the_whole_page(tmp_path: Path) -> None:
    encoder, cell = darkness_encoder("colidefics3", tmp_path / "idefics3")
    page = page_with_square(448, 224, 5, 13, cell)
    layout = encoder.page_layout(page)
    assert layout is not None
    assert (layout.rows, layout.cols) == (8, 16)
    *tiles, whole = layout.views
    assert [(v.top, v.left) for v in tiles] == [(r * 4, c * 4) for r in range(2) for c in range(4)]
    assert (whole.top, whole.left, whole.height, whole.width) == (0, 0, 8, 16)
    maps = encoder.explain_page(QUERY, page).maps[0]  # (rows, cols)
    # The global view's coarse cell holding the square (2 x 4 fine cells) is a little dark
    # everywhere: its other fine cells beat the rest of the (white) page, not the square.
    block = maps[4:6, 12:16]
    assert float(block.min()) > float(maps[:4].max())
    assert float(maps[5, 13]) > float(block.flatten().sort().values[-2])


@pytest.mark.parametrize("family", ["colpali", "colidefics3"])
def test_tokens_match_the_query_vectors(family: str, tmp_path: Path) -> None:
    encoder, _ = darkness_encoder(family, tmp_path / family)
    explanation = encoder.explain_page(QUERY, Image.new("RGB", (448, 448), "white"))
    assert QUERY in "".join(explanation.tokens)
    assert len(explanation.tokens) == encoder.encode_query(QUERY).shape[0] == explanation.maps.shape[0]


def test_layout_checks_its_views() -> None:
    with pytest.raises(MMEmbedError, match="do not cover"):
        PatchLayout(4, 4, (PatchView(0, 2, 2, 0, 0, 2, 2),))
    with pytest.raises(MMEmbedError, match="does not tile"):
        PatchLayout(4, 4, (PatchView(0, 3, 3, 0, 0, 4, 4),))
    layout = PatchLayout(2, 2, (PatchView(3, 2, 2, 0, 0, 2, 2), PatchView(7, 1, 1, 0, 0, 2, 2)))
    assert PatchLayout.from_json(layout.to_json()) == layout
    with pytest.raises(MMEmbedError, match="not a recorded patch layout"):
        PatchLayout.from_json({"rows": 2})
    # Where views overlap, each cell keeps its best patch (as MaxSim would).
    sims = torch.tensor([[9.0, 9.0, 9.0, 0.0, 1.0, 2.0, 3.0, 1.5]])  # (query_tokens, page_tokens)
    torch.testing.assert_close(layout.cell_maps(sims)[0], torch.tensor([[1.5, 1.5], [2.0, 3.0]]))


@pytest.mark.parametrize("family", ["colqwen2_5", "colidefics3", "colpali"])
def test_stored_vectors_give_the_re_encoded_maps(family: str, tmp_path: Path) -> None:
    """The real tiny model: explain from the index equals re-encoding, without the image path."""
    from mmembed_testing import make_tiny_checkpoint

    encoder = copy.copy(mmembed.load_encoder(str(make_tiny_checkpoint(family, tmp_path / "model", seed=0))))
    source = tmp_path / "page.png"
    page_with_square(224, 168, 1, 2, 56).save(source)  # small: a fast tiny model
    index = mmembed.open_index(tmp_path / "index", encoder=encoder.info)
    try:
        mmembed.index_documents([source], index, encoder, progress=False)
        record = next(iter(index.records()))
        assert LAYOUT_KEY in record.metadata
        assert LAYOUT_KEY not in shared_metadata(record.metadata)  # adapters do not show it
        retriever = Retriever(index, encoder)
        image = Image.open(source).convert("RGB")
        re_encoded = encoder.explain_page(QUERY, image)

        real_model = encoder.model

        def text_only(**inputs: torch.Tensor) -> torch.Tensor:
            assert "pixel_values" not in inputs, "the page went through the model again"
            return real_model(**inputs)  # type: ignore[no-any-return]

        encoder.model = text_only
        stored = retriever.explain(QUERY, record)
        assert stored.vectors_from == "stored"
        assert stored.tokens == re_encoded.tokens
        torch.testing.assert_close(stored.maps, re_encoded.maps, atol=2e-3, rtol=1e-3)
    finally:
        index.close()


def test_pages_indexed_without_a_layout_are_re_encoded(tmp_path: Path, tiny_colqwen2_5: Path) -> None:
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    source = tmp_path / "page.png"
    page_with_square(224, 224, 1, 1, 28).save(source)
    index = mmembed.open_index(tmp_path / "index", encoder=encoder.info)
    try:
        mmembed.index_documents([source], index, encoder, progress=False)
        record = next(iter(index.records()))
        # As an index written before layouts were recorded.
        old = type(record)(**{**record.__dict__, "metadata": shared_metadata(record.metadata)})
        explanation = Retriever(index, encoder).explain(QUERY, old)
        assert explanation.vectors_from == "re-encoded"
        # A layout recorded for other vectors, or not a layout at all: re-encoded too, not refused.
        recorded = record.metadata[LAYOUT_KEY]
        re_encoded: list[str] = []
        spy = copy.copy(encoder)
        spy.explain_page = lambda query, image: re_encoded.append(query)  # the model is not needed here
        for wrong in ({**recorded, "vectors": recorded["vectors"] + 1}, "garbage"):
            changed = type(record)(**{**record.__dict__, "metadata": {LAYOUT_KEY: wrong}})
            Retriever(index, spy).explain(QUERY, changed)
        assert re_encoded == [QUERY, QUERY]
        torch.testing.assert_close(
            explanation.maps, Retriever(index, encoder).explain(QUERY, record).maps, atol=2e-3, rtol=1e-3
        )
    finally:
        index.close()


class DarknessVision:
    """Stands in for Nomic's vision tower: each view (whole page, then tiles) -> (darkness, 1, 0, ...),
    so that after L2 normalisation a darker view is closer to the query (1, 0, ...)."""

    def __init__(self, hidden: int) -> None:
        self.hidden = hidden

    def encode(self, views: list[Image.Image], **_: Any) -> list[torch.Tensor]:
        out = []
        for view in views:
            vector = torch.zeros(self.hidden)
            vector[0] = 1 - torch.tensor(list(view.convert("L").getdata()), dtype=torch.float32).mean() / 255
            vector[1] = 1.0
            out.append(vector)
        return out


def test_nomic_tiles_are_a_coarse_grid(tiny_nomic: tuple[Path, Path], tmp_path: Path) -> None:
    text, vision = tiny_nomic
    encoder = copy.copy(mmembed.load_encoder(str(vision), text_model=str(text), tiles=6))
    encoder.vision = DarknessVision(encoder.vision.model.config.hidden_size)
    query = torch.zeros(1, encoder.info.dim)
    query[0, 0] = 1.0
    encoder.encode_queries = lambda queries, **_: [query for _ in queries]
    page = page_with_square(600, 400, 1, 2, 200)  # 2 rows x 3 columns of 200-pixel tiles
    explanation = encoder.explain_page(QUERY, page)
    assert explanation.tokens == [QUERY] and explanation.maps.shape == (1, 2, 3)
    assert explanation.best_patches() == [(1, 2)]
    # The whole-page view (slightly dark) lifts the white tiles' cells evenly.
    assert (
        float(explanation.maps[0, 0, 0])
        == float(explanation.maps[0, 0, 1])
        < float(explanation.maps[0, 1, 2])
    )
    source = tmp_path / "page.png"
    page.save(source)
    with mmembed.open_index(tmp_path / "index", encoder=encoder.info) as index:
        mmembed.index_documents([source], index, encoder, progress=False)
        stored = Retriever(index, encoder).explain(QUERY, next(iter(index.records())))
    assert stored.vectors_from == "stored"
    torch.testing.assert_close(stored.maps, explanation.maps, atol=2e-3, rtol=1e-3)


def test_pooled_indexes_re_encode(tmp_path: Path, tiny_colqwen2_5: Path) -> None:
    """Token pooling (the manifest's ``pooling`` factor) breaks the vector <-> patch mapping."""
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    source = tmp_path / "page.png"
    page_with_square(224, 224, 1, 1, 28).save(source)
    for pooling, expected in ((1, "stored"), (2, "re-encoded")):
        with mmembed.open_index(tmp_path / f"pool{pooling}", encoder=encoder.info, pooling=pooling) as index:
            mmembed.index_documents([source], index, encoder, progress=False)
            record = next(iter(index.records()))
            assert Retriever(index, encoder).explain(QUERY, record).vectors_from == expected
