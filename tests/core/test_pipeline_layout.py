"""Indexing records each page's patch layout from the encode batch's own processor output:
the processor runs once per page, and the stored layout is the one ``page_layout`` gives."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from PIL import Image

import mmembed
from mmembed.explain import LAYOUT_KEY, recorded_layout
from mmembed_testing.counting import CountingProcessor


def test_each_page_goes_through_the_processor_once(tmp_path: Path, tiny_colqwen2_5: Path) -> None:
    # A shallow copy: the process-wide cached encoder (shared with other tests) keeps its processor.
    encoder = copy.copy(mmembed.load_encoder(str(tiny_colqwen2_5)))
    sizes = [(448, 448), (336, 560), (280, 224)]  # different grids in one batch (padded rows)
    sources = []
    for n, size in enumerate(sizes):
        path = tmp_path / f"page{n}.png"
        Image.new("RGB", size, (40 * n, 90, 200)).save(path)
        sources.append(path)
    expected = [recorded_layout(encoder, Image.open(p).convert("RGB"), _rows(encoder, p)) for p in sources]
    counting = CountingProcessor(encoder.processor)
    encoder.processor = counting
    index = mmembed.open_index(tmp_path / "index", encoder=encoder.info)
    try:
        report = mmembed.index_documents(sources, index, encoder, batch_size=len(sources), progress=False)
        assert counting.images == len(sources)
        records = sorted((r for r in index.get(report.ids) if r is not None), key=lambda r: r.source)
        assert [r.metadata[LAYOUT_KEY] for r in records] == expected
        assert all(layout is not None for layout in expected)
    finally:
        index.close()


def _rows(encoder: Any, path: Path) -> Any:
    return encoder.encode_images([Image.open(path).convert("RGB")])[0]
