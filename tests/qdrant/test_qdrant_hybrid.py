"""The Qdrant backends do not serve text / hybrid search yet: they refuse the modes clearly
(never vector results passed off as hybrid), keep serving visual search, and keep the page text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mmembed
from mmembed.index import PageInput, open_backend
from mmembed.retrieve import Retriever
from mmembed.types import MMEmbedError


@pytest.mark.parametrize("scheme", ["qdrant", "qdrant-edge"])
def test_text_and_hybrid_modes_are_refused_naming_the_way_out(
    tmp_path: Path, tiny_colqwen2_5: Path, scheme: str
) -> None:
    pytest.importorskip("qdrant_client" if scheme == "qdrant" else "qdrant_edge")
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    uri = f"qdrant://{tmp_path}/store/pages" if scheme == "qdrant" else f"qdrant-edge://{tmp_path}/edge"
    index = open_backend(uri, encoder.info)
    try:
        page = PageInput(
            embedding=torch.randn(3, encoder.info.dim),
            source="a.pdf",
            page=1,
            content_hash="a" * 64,
            text="Clause 7.2 covers part X-200",
        )
        index.add([page])
        retriever = Retriever(index, encoder)
        for mode in ("text", "hybrid"):
            with pytest.raises(MMEmbedError, match="Use an index folder"):
                retriever.search("part X-200", k=1, mode=mode)
        assert [h.page for h in retriever.search("part X-200", k=1)] == [1]  # visual still works
    finally:
        index.close()
