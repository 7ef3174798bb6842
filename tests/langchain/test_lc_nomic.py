"""Nomic Embed v1.5 through ``MMEmbedEmbeddings``: ``embed_query`` (text model) and
``embed_image`` (vision model) land in one space; ``model_kwargs`` carries ``text_model``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import mmembed
from langchain_mmembed import MMEmbedEmbeddings


def test_text_query_ranks_images_in_the_shared_space(tiny_nomic: tuple[Path, Path], tmp_path: Path) -> None:
    text, vision = tiny_nomic
    paths = []
    for i, size in enumerate([(80, 120), (150, 60), (64, 64)]):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(
            np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        ).save(path)
        paths.append(path)
    embeddings = MMEmbedEmbeddings(model=str(vision), device="cpu", model_kwargs={"text_model": str(text)})
    assert embeddings.info.family == "nomic_v1_5" and embeddings.info.dim == 768
    images = torch.tensor(embeddings.embed_image([str(p) for p in paths]))  # (3, 768)
    query = torch.tensor(embeddings.embed_query("quarterly revenue"))  # (768,)

    encoder = mmembed.load_encoder(vision, device="cpu", text_model=str(text))
    torch.testing.assert_close(query, encoder.encode_queries(["quarterly revenue"])[0][0])
    torch.testing.assert_close(images, torch.cat(encoder.encode_images([Image.open(p) for p in paths])))
    scores = images @ query
    assert len(set(scores.tolist())) == 3 and torch.allclose(torch.linalg.norm(images, dim=1), torch.ones(3))
