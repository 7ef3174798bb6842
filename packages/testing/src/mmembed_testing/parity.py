"""Inputs and comparisons shared by the parity tests (mmembed vs the colpali-engine reference).

The inputs are chosen to reach the code paths that differ between implementations:
queries of very different lengths (left padding), pages of different sizes and aspect
ratios in one batch (including one smaller than the processor's minimum), and text-only
and interleaved documents.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

TOLERANCE = 1e-4
QUERIES = (
    "revenue",
    "What is the organizational structure of the research and development department?",
    "Quelle est la consommation d'énergie en Europe ?",
)
TEXT_DOCUMENTS = (
    "Table 2: operating expenses, net income and earnings per share for each segment.",
    "Figure 3",
)
CAPTIONS = ("Figure 3 shows the distribution of energy consumption.", "Annual report")


def pages() -> list[Image.Image]:
    """Three RGB pages of different sizes: a text page, a wide noise image, a tiny one."""
    rng = np.random.default_rng(7)
    text_page = Image.new("RGB", (170, 220), "white")
    draw = ImageDraw.Draw(text_page)
    for row in range(8):
        draw.text((10, 10 + 25 * row), f"Line {row}: revenue", fill="black")
    wide = Image.fromarray(rng.integers(0, 256, (110, 300, 3), dtype=np.uint8))
    small = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))  # below min_pixels: scaled up
    return [text_page, wide, small]


def large_page(width: int = 1275, height: int = 1650) -> Image.Image:
    """A page-like RGB image far above a tiny checkpoint's pixel limit (a letter page at 150
    dpi): text rows over faint noise, fine detail, so that resizing it twice shows."""
    rng = np.random.default_rng(3)
    page = Image.fromarray(rng.integers(200, 256, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(page)
    for row in range(0, height - 40, 37):
        draw.text((20 + row % 90, row + 8), f"Q{row} revenue {row * 7} EUR " * 8, fill=(0, 0, 0))
    return page


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference|."""
    return float((ours.float() - reference.float()).abs().max() / reference.float().abs().max())


def assert_embeddings_match(
    ours: Sequence[torch.Tensor], reference: Sequence[torch.Tensor], tolerance: float = TOLERANCE
) -> None:
    """Same count, same shape (vectors per input), float32 CPU, relative error below ``tolerance``."""
    assert len(ours) == len(reference), (len(ours), len(reference))
    for i, (mine, ref) in enumerate(zip(ours, reference, strict=True)):
        ref = ref.reshape(1, -1) if ref.ndim == 1 else ref
        assert mine.dtype == torch.float32 and mine.device.type == "cpu", (i, mine.dtype, mine.device)
        assert mine.shape == ref.shape, (i, tuple(mine.shape), tuple(ref.shape))
        error = relative_error(mine, ref)
        assert error < tolerance, f"input {i}: relative error {error:.2e} >= {tolerance:.0e}"


def unpad(output: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """A reference model's padded output -> per-input tensors (multi-vector: real tokens;
    single-vector: the row itself)."""
    if output.ndim == 2:
        return [row.unsqueeze(0) for row in output]
    mask = attention_mask.bool()
    return [output[i][mask[i]] for i in range(output.shape[0])]
