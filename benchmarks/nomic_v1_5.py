"""Nomic Embed v1.5 on this CPU, and what a 224x224 view keeps of a document page.

    python benchmarks/nomic_v1_5.py [--images 16] [--queries 32] [--tiles 4]

1. **Speed at the published size.** The vision model (EVA02-B/16 at 224, 12 layers, 768 wide)
   and the text model (NomicBERT, 12 layers, 768 wide) are built from the published
   ``config.json`` values with random weights (no hub here; the cost does not depend on the
   weight values) and timed through mmembed's encoder: images per second (page images, the
   whole view), pages per second with ``tiles=N`` (N + 1 views a page), queries per second.
2. **Coverage of a page.** CLIP preprocessing resizes the shortest edge to 224 and centre-crops
   a square: on a portrait page the top and bottom are cut away. For the sample PDFs (text,
   tables, charts; 144 dpi) it reports the share of the page's ink (pixels darker than 128)
   outside the crop, and the scale a page is seen at with and without tiles.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import mmembed
from mmembed.encoders.nomic import tile_boxes
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed_testing import tiny_nomic


def published_checkpoints(folder: Path) -> tuple[Path, Path]:
    """Text and vision folders with the published sizes and random weights."""
    sizes = {"HIDDEN": 768, "HEADS": 12, "TEXT_LAYERS": 12, "VISION_LAYERS": 12, "IMAGE_SIZE": 224}
    old = {name: getattr(tiny_nomic, name) for name in (*sizes, "MLP_WIDTH", "MAX_POSITIONS")}
    try:
        for name, value in sizes.items():
            setattr(tiny_nomic, name, value)
        tiny_nomic.MLP_WIDTH = 3072  # the text model's n_inner; the vision model's is 2048, set below
        tiny_nomic.MAX_POSITIONS = 8192
        text = tiny_nomic.build_text(folder / "text")
        tiny_nomic.MLP_WIDTH = 2048
        vision = tiny_nomic.build_vision(folder / "vision")
    finally:
        for name, value in old.items():
            setattr(tiny_nomic, name, value)
    return text, vision


def rate(count: int, run: object) -> float:
    assert callable(run)
    run()  # warm-up
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def coverage(pages: list[Image.Image]) -> None:
    """Share of the pages' ink that no view sees: the whole view keeps its centre square; with
    tiles, every (square) tile is kept whole as well."""
    width, height = pages[0].size
    side = min(width, height)
    centre = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    print(
        f"pages: {len(pages)} at {width}x{height}; scale of the whole view {224 / side:.3f} "
        f"(an x-height of 10 px becomes {10 * 224 / side:.1f} px)"
    )
    for tiles in (1, 2, 4, 6):
        boxes = [centre] + (tile_boxes(width, height, tiles) if tiles > 1 else [])
        lost, total = 0, 0
        for page in pages:
            ink = np.asarray(page.convert("L")) < 128  # (height, width)
            seen = np.zeros_like(ink)
            for left, top, right, bottom in boxes:
                seen[top:bottom, left:right] = True
            lost += int((ink & ~seen).sum())
            total += int(ink.sum())
        tile_side = boxes[-1][2] - boxes[-1][0]
        print(
            f"tiles={tiles}: views per page {len(boxes)}, finest scale {224 / tile_side:.3f}, "
            f"ink seen by no view {100 * lost / total:.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--tiles", type=int, default=4)
    args = parser.parse_args()
    logging.getLogger("mmembed").setLevel(logging.ERROR)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pdfs = write_sample_pdfs(folder / "pdfs")
        pages = [page.image for pdf in pdfs for page in mmembed.load_pages(pdf, dpi=144)]
        coverage(pages)
        text, vision = published_checkpoints(folder)
        encoder = mmembed.load_encoder(vision, device="cpu", text_model=str(text))
        tiled = mmembed.load_encoder(vision, device="cpu", text_model=str(text), tiles=args.tiles)
        params = sum(p.numel() for p in encoder.vision.model.parameters())  # type: ignore[attr-defined]
        text_params = sum(p.numel() for p in encoder.text.model.parameters())  # type: ignore[attr-defined]
        print(
            f"parameters: vision {params / 1e6:.1f} M, text {text_params / 1e6:.1f} M; threads {torch.get_num_threads()}"
        )
        batch = [pages[i % len(pages)] for i in range(args.images)]
        queries = [f"what was the revenue of segment {i} in 2023?" for i in range(args.queries)]
        print(f"pages/s (whole view): {rate(len(batch), lambda: encoder.encode_images(batch)):.1f}")
        print(f"pages/s (tiles={args.tiles}): {rate(len(batch), lambda: tiled.encode_images(batch)):.1f}")
        print(f"queries/s: {rate(len(queries), lambda: encoder.encode_queries(queries)):.1f}")


if __name__ == "__main__":
    main()
