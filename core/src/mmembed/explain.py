"""Similarity maps: where on a page each query token found its best match.

Late interaction scores a page by summing, over the query's tokens, each token's best
similarity among the page's patch vectors. Laying those per-patch similarities back onto the
patch grid the model's image processor cut the page into shows *where* the page matched.
The page is re-encoded to know its grid (the index stores vectors, not the grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .types import MMEmbedError


@dataclass(frozen=True, eq=False)
class PatchGrid:
    """A page's image-patch vectors in reading order and the grid they tile."""

    vectors: torch.Tensor  # (rows * cols, dim)
    rows: int
    cols: int


@dataclass(frozen=True, eq=False)
class Explanation:
    """Per-token similarity maps of a query on one page image.

    ``maps[t, r, c]`` is the similarity of query token ``t`` (text ``tokens[t]``) with the
    patch at grid row ``r``, column ``c``; the grid covers the whole ``image`` (the
    processor resizes the page, it does not crop it).
    """

    tokens: list[str]
    maps: torch.Tensor  # (query_tokens, rows, cols)
    image: Image.Image

    @property
    def aggregate(self) -> torch.Tensor:
        """``(rows, cols)``: the mean of the tokens' maps."""
        return self.maps.mean(dim=0)

    def best_patches(self) -> list[tuple[int, int]]:
        """``(row, col)`` of each token's best-matching patch (the one MaxSim counts)."""
        cols = self.maps.shape[2]
        flat = self.maps.flatten(1).argmax(dim=1)  # (query_tokens,)
        return [(int(i) // cols, int(i) % cols) for i in flat]

    def overlay(self, token: int | None = None, *, alpha: float = 0.55) -> Image.Image:
        """The page with a heat map (the aggregate, or one token's map) blended over it."""
        if token is not None and not 0 <= token < len(self.tokens):
            raise MMEmbedError(f"token {token} is out of range: the query has {len(self.tokens)} tokens")
        grid = self.aggregate if token is None else self.maps[token]  # (rows, cols)
        low, high = float(grid.min()), float(grid.max())
        scaled = (grid - low) / (high - low) if high > low else torch.zeros_like(grid)
        # Yellow (weak) to red (strong), stretched to the page with a smooth (bilinear) upscale.
        cells = (scaled.clamp(0, 1).numpy() * 255).astype("uint8")
        heat = Image.fromarray(cells, mode="L").resize(self.image.size, Image.Resampling.BILINEAR)
        red = Image.new("L", self.image.size, 255)
        blue = Image.new("L", self.image.size, 0)
        colour = Image.merge("RGB", (red, heat.point(lambda v: 255 - v), blue))
        weight = heat.point(lambda v: int(v * alpha))  # stronger colour where the match is
        return Image.composite(colour, self.image.convert("RGB"), weight)

    def save(self, folder: str | Path, stem: str, *, tokens: list[int] | None = None) -> list[Path]:
        """Write ``<stem>.png`` (aggregate) and ``<stem>.token<i>.png`` for each of ``tokens``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"{stem}.png"]
        self.overlay().save(paths[0])
        for t in tokens or []:
            path = out / f"{stem}.token{t}.png"
            self.overlay(t).save(path)
            paths.append(path)
        return paths


def similarity_maps(
    query_vectors: torch.Tensor, grid: PatchGrid, tokens: list[str], image: Image.Image
) -> Explanation:
    """:class:`Explanation` of ``query_vectors`` ``(query_tokens, dim)`` on ``grid``."""
    if query_vectors.shape[0] != len(tokens):
        raise MMEmbedError(f"{query_vectors.shape[0]} query vectors but {len(tokens)} token texts")
    sims = query_vectors.float() @ grid.vectors.float().T  # (query_tokens, rows * cols)
    return Explanation(tokens, sims.reshape(len(tokens), grid.rows, grid.cols), image)
