"""DSE-Qwen2 (``llamaindex/vdr-2b-multi-v1``) against the published inference recipe (model
card / MTEB wrapper) run on transformers' ``Qwen2VLForConditionalGeneration``, on a tiny
checkpoint (float32, CPU, eager).

ColQwen2 and BiQwen2 are checked against colpali-engine in test_parity_colpali_engine.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmembed.encoders import Encoder, load_encoder
from mmembed_testing import parity

DSE_DOCUMENT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>What is shown in this image?<|im_end|>\n<|endoftext|>"
)
DSE_QUERY = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>Query: %s<|im_end|>\n<|endoftext|>"
)


class DseReference:
    """The vdr-2b-multi-v1 model card's transformers recipe, written out independently."""

    max_pixels = 768 * 28 * 28
    min_pixels = 1 * 28 * 28

    def __init__(self, path: Path) -> None:
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        self.model = Qwen2VLForConditionalGeneration.from_pretrained(
            str(path), dtype=torch.float32, attn_implementation="eager"
        ).eval()
        # The card passes min_pixels= / max_pixels=, which transformers 5 spells as size=.
        size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        self.processor = AutoProcessor.from_pretrained(str(path), size=size)
        self.processor.tokenizer.padding_side = "left"

    def _resize(self, image: Image.Image) -> Image.Image:
        def by(value: float, how) -> int:
            return how(value / 28) * 28

        h_bar, w_bar = max(28, by(image.height, round)), max(28, by(image.width, round))
        if h_bar * w_bar > self.max_pixels:
            beta = math.sqrt(image.height * image.width / self.max_pixels)
            h_bar, w_bar = by(image.height / beta, math.floor), by(image.width / beta, math.floor)
        elif h_bar * w_bar < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (image.height * image.width))
            h_bar, w_bar = by(image.height * beta, math.ceil), by(image.width * beta, math.ceil)
        return image.resize((w_bar, h_bar))

    @torch.no_grad()
    def _embed(self, texts: list[str], images: list[Image.Image]) -> list[torch.Tensor]:
        inputs = self.processor(text=texts, images=images, padding="longest", return_tensors="pt")
        hidden = self.model(**inputs, output_hidden_states=True, return_dict=True).hidden_states[-1][:, -1]
        return list(torch.nn.functional.normalize(hidden, p=2, dim=-1).unsqueeze(1))

    def queries(self, queries: list[str]) -> list[torch.Tensor]:
        return self._embed([DSE_QUERY % q for q in queries], [Image.new("RGB", (56, 56)) for _ in queries])

    def pages(self, pages: list[Image.Image]) -> list[torch.Tensor]:
        return self._embed([DSE_DOCUMENT] * len(pages), [self._resize(p.convert("RGB")) for p in pages])


@pytest.fixture(scope="module")
def dse(tiny_checkpoint) -> tuple[Encoder, DseReference]:
    path = tiny_checkpoint("dse_qwen2")
    return load_encoder(path, device="cpu", dtype="float32"), DseReference(path)


def test_dse_matches_the_published_recipe(dse: tuple[Encoder, DseReference]) -> None:
    encoder, reference = dse
    assert (encoder.info.family, encoder.info.kind) == ("dse_qwen2", "single")
    for batch_size in (len(parity.QUERIES), 1):
        got = encoder.encode_queries(list(parity.QUERIES), batch_size=batch_size)
        parity.assert_embeddings_match(got, reference.queries(list(parity.QUERIES)))
    pages = parity.pages()
    parity.assert_embeddings_match(encoder.encode_images(pages, batch_size=2), reference.pages(pages))
