"""Similarity maps: where on a page each query token found its best match.

Late interaction scores a page by summing, over the query's tokens, each token's best
similarity among the page's patch vectors. Laying those per-patch similarities back onto the
patch grid the model's image processor cut the page into shows *where* the page matched.

A family describes where its page vectors sit with a :class:`PatchLayout`: one or more
*views*, each a run of consecutive page vectors tiling a rectangle of the page grid (the
whole page for Qwen-VL and ColPali; every tile, plus a global view over the whole page,
for Idefics3). Where views overlap, a cell keeps the best similarity among the patches
covering it, as MaxSim does. The layout is recorded at indexing time (page metadata key
:data:`LAYOUT_KEY`), so a page can be explained from its stored vectors; older indexes
re-encode the page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from PIL import Image

from .types import EncoderInfo, MMEmbedError

logger = logging.getLogger(__name__)

LAYOUT_KEY = "_mmembed_patch_layout"
"""Reserved page-metadata key holding a page's :class:`PatchLayout` (as JSON)."""

VectorsFrom = Literal["stored", "re-encoded"]


@dataclass(frozen=True)
class PatchView:
    """``rows * cols`` consecutive page vectors from ``start`` (row-major patches) tiling
    the rectangle ``top, left, height, width`` of the page grid (in grid cells)."""

    start: int
    rows: int
    cols: int
    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class PatchLayout:
    """Where a page's patch vectors lie on a ``rows x cols`` grid over the whole page."""

    rows: int
    cols: int
    views: tuple[PatchView, ...]

    def __post_init__(self) -> None:
        covered = torch.zeros(self.rows, self.cols, dtype=torch.bool)
        for v in self.views:
            inside = (
                min(v.top, v.left, v.start) >= 0
                and v.top + v.height <= self.rows
                and v.left + v.width <= self.cols
            )
            if not inside or v.rows < 1 or v.cols < 1 or v.height % v.rows or v.width % v.cols:
                raise MMEmbedError(
                    f"patch view {v} does not tile a part of the {self.rows}x{self.cols} page grid"
                )
            covered[v.top : v.top + v.height, v.left : v.left + v.width] = True
        if not self.views or not bool(covered.all()):
            raise MMEmbedError(f"the patch views do not cover the whole {self.rows}x{self.cols} page grid")

    @property
    def n_patches(self) -> int:
        return sum(v.rows * v.cols for v in self.views)

    def end(self) -> int:
        """One past the last page vector a view uses."""
        return max(v.start + v.rows * v.cols for v in self.views)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "cols": self.cols, "views": [list(astuple(v)) for v in self.views]}

    @classmethod
    def from_json(cls, data: object) -> PatchLayout:
        """The layout :meth:`to_json` wrote; :class:`MMEmbedError` when ``data`` is not one."""
        try:
            assert isinstance(data, dict)
            views = tuple(PatchView(*(int(x) for x in v)) for v in data["views"])
            return cls(int(data["rows"]), int(data["cols"]), views)
        except (AssertionError, KeyError, TypeError, ValueError) as err:
            raise MMEmbedError(f"not a recorded patch layout: {str(data)[:200]}") from err

    def cell_maps(self, sims: torch.Tensor) -> torch.Tensor:
        """``sims`` ``(query_tokens, page_vectors)`` -> ``(query_tokens, rows, cols)``: each
        cell the best similarity among the patches of every view covering it."""
        n_tokens = sims.shape[0]
        maps = torch.full((n_tokens, self.rows, self.cols), -torch.inf)  # (query_tokens, rows, cols)
        for v in self.views:
            patch = sims[:, v.start : v.start + v.rows * v.cols].reshape(n_tokens, v.rows, v.cols)
            # Each patch covers (height / rows) x (width / cols) cells of the page grid.
            cells = patch.repeat_interleave(v.height // v.rows, dim=1).repeat_interleave(
                v.width // v.cols, dim=2
            )
            region = maps[:, v.top : v.top + v.height, v.left : v.left + v.width]
            maps[:, v.top : v.top + v.height, v.left : v.left + v.width] = torch.maximum(region, cells)
        return maps


class LaysOutPages(Protocol):
    """What :func:`recorded_layout` needs of an encoder (every
    :class:`~mmembed.encoders.base.Encoder`; explain sits below the encoders and does not import them)."""

    info: EncoderInfo

    def page_layout(self, image: Image.Image) -> PatchLayout | None: ...


def recorded_layout(
    encoder: LaysOutPages, image: Image.Image, embedding: torch.Tensor
) -> dict[str, Any] | None:
    """What indexing stores under :data:`LAYOUT_KEY` for a page ``image`` embedded as
    ``embedding`` ``(n_vectors, dim)``: its :class:`PatchLayout` as JSON, or ``None`` for
    families without one. A layout that cannot be made or does not fit the vectors is left
    out (explain then re-encodes the page), never an indexing failure."""
    if encoder.info.kind != "multi":
        return None
    try:
        layout = encoder.page_layout(image)
    except MMEmbedError as err:
        logger.debug("no patch layout recorded (%s)", err)
        return None
    return layout_record(layout, embedding)


def encoded_layout(
    encoder: LaysOutPages,
    image: Image.Image,
    embedding: torch.Tensor,
    layouts: Sequence[PatchLayout | None] | None,
    position: int,
) -> dict[str, Any] | None:
    """:func:`recorded_layout` of the page at ``position`` of an ``encode_pages`` call, from the
    ``layouts`` it returned beside the embeddings (no second processor run); ``layouts=None``
    (the family does not give them) asks :meth:`page_layout`."""
    if layouts is None:
        return recorded_layout(encoder, image, embedding)
    return layout_record(layouts[position], embedding) if encoder.info.kind == "multi" else None


def layout_record(layout: PatchLayout | None, embedding: torch.Tensor) -> dict[str, Any] | None:
    """``layout`` as :func:`recorded_layout` stores it for a page embedded as ``embedding``
    ``(n_vectors, dim)``; ``None`` when there is none or it does not fit the vectors."""
    if layout is None or layout.end() > embedding.shape[0]:
        return None
    return {**layout.to_json(), "vectors": int(embedding.shape[0])}  # checked when explaining


def whole_page(start: int, rows: int, cols: int) -> PatchLayout:
    """One view of ``rows x cols`` patches over the whole page (Qwen-VL, ColPali)."""
    return PatchLayout(rows, cols, (PatchView(start, rows, cols, 0, 0, rows, cols),))


def run_start(is_patch: torch.Tensor, length: int, family: str) -> int:
    """Index of the first of ``length`` consecutive ``True`` in ``is_patch`` ``(tokens,)``,
    checked to be the only ones."""
    positions = is_patch.nonzero().flatten()  # (patches,)
    if len(positions) != length or (length and int(positions[-1] - positions[0]) != length - 1):
        raise MMEmbedError(
            f"{family}: the page has {len(positions)} image tokens where its grid needs {length} in one run; "
            "similarity maps cannot be laid out for this checkpoint"
        )
    return int(positions[0])


@dataclass(frozen=True, eq=False)
class Explanation:
    """Per-token similarity maps of a query on one page image.

    ``maps[t, r, c]`` is the similarity of query token ``t`` (text ``tokens[t]``) with the
    patch at grid row ``r``, column ``c`` (the best of the overlapping patches, for families
    with several views of the page); the grid covers the whole ``image`` (the processor
    resizes the page, it does not crop it).
    """

    tokens: list[str]
    maps: torch.Tensor  # (query_tokens, rows, cols)
    image: Image.Image
    vectors_from: VectorsFrom = "re-encoded"
    """``"stored"``: the page's vectors and layout came from the index; ``"re-encoded"``: the
    page went through the model again (indexes made before layouts were recorded)."""

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
    query_vectors: torch.Tensor,
    page_vectors: torch.Tensor,
    layout: PatchLayout,
    tokens: list[str],
    image: Image.Image,
    vectors_from: VectorsFrom = "re-encoded",
) -> Explanation:
    """:class:`Explanation` of ``query_vectors`` ``(query_tokens, dim)`` on a page's
    ``page_vectors`` ``(page_tokens, dim)`` laid out by ``layout``."""
    if query_vectors.shape[0] != len(tokens):
        raise MMEmbedError(f"{query_vectors.shape[0]} query vectors but {len(tokens)} token texts")
    if layout.end() > page_vectors.shape[0]:
        raise MMEmbedError(
            f"the patch layout needs {layout.end()} page vectors but the page has {page_vectors.shape[0]}"
        )
    sims = query_vectors.float() @ page_vectors.float().T  # (query_tokens, page_tokens)
    return Explanation(tokens, layout.cell_maps(sims), image, vectors_from)
