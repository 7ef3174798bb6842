"""Nomic Embed v1.5 through ``MMEmbedEmbedding`` (a LlamaIndex ``MultiModalEmbedding``): text
queries and images in one space, text -> image retrieval with LlamaIndex's own vector index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import ImageNode
from llama_index.embeddings.mmembed import MMEmbedEmbedding
from PIL import Image

import mmembed


def test_text_to_image_retrieval(tiny_nomic: tuple[Path, Path], tmp_path: Path) -> None:
    text, vision = tiny_nomic
    paths = []
    for i, size in enumerate([(80, 120), (150, 60), (64, 64)]):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(
            np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        ).save(path)
        paths.append(path)
    embed = MMEmbedEmbedding(
        model_name=str(vision), device="cpu", model_kwargs={"text_model": str(text), "matryoshka_dim": 128}
    )
    nodes = [ImageNode(id_=f"img{i}", text=f"picture {i}", image_path=str(p)) for i, p in enumerate(paths)]
    for node in nodes:
        node.embedding = embed.get_image_embedding(node.image_path)
    index = VectorStoreIndex(nodes=nodes, embed_model=embed)
    hits = index.as_retriever(similarity_top_k=3).retrieve("quarterly revenue")

    encoder = mmembed.load_encoder(vision, device="cpu", text_model=str(text), matryoshka_dim=128)
    query = encoder.encode_queries(["quarterly revenue"])[0][0]  # (128,)
    expected = {
        f"img{i}": float(encoder.encode_images([Image.open(p)])[0][0] @ query) for i, p in enumerate(paths)
    }
    assert [h.node.node_id for h in hits] == sorted(expected, key=lambda n: -expected[n])
    for hit in hits:
        assert hit.score is not None and abs(hit.score - expected[hit.node.node_id]) < 1e-4
    assert torch.tensor(embed.get_query_embedding("quarterly revenue")).shape == (128,)
