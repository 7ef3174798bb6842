"""A tiny retriever shipped as a checkpoint's own code (``auto_map``), written for mmembed's
tests of the ``trust_remote_code`` path. It has the method names and return shapes of
NVIDIA's SigLIP2 + Llama ColEmbed code: ``forward_queries(list[str], batch_size)`` and
``forward_passages(list[Image], batch_size)`` / ``forward_documents(list[dict], batch_size)``
return one zero-padded ``(batch, tokens, dim)`` tensor of L2-normalised token vectors.

Queries: one vector per UTF-8 byte. Pages: one vector per 8x8-pixel patch of the page
scaled to 8 pixels per 32 (so page size changes the count). Documents: the page's patches
followed by the text's bytes (if any).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import PretrainedConfig, PreTrainedModel


class TinyColEmbedConfig(PretrainedConfig):
    model_type = "tiny_remote_colembed"

    def __init__(self, dim: int = 16, **kwargs: Any) -> None:
        self.dim = dim
        super().__init__(**kwargs)


class TinyColEmbedModel(PreTrainedModel):
    config_class = TinyColEmbedConfig
    base_model_prefix = "tiny"

    def __init__(self, config: TinyColEmbedConfig) -> None:
        super().__init__(config)
        self.chars = torch.nn.Embedding(256, config.dim)
        self.patch = torch.nn.Linear(3 * 8 * 8, config.dim)
        self.post_init()

    def _text(self, text: str) -> torch.Tensor:
        ids = torch.tensor(list(text.encode("utf-8")) or [0])
        return self.chars(ids.to(self.chars.weight.device))  # (bytes, dim)

    def _image(self, image: Image.Image) -> torch.Tensor:
        width, height = max(8, image.width // 32 * 8), max(8, image.height // 32 * 8)
        pixels = np.asarray(image.convert("RGB").resize((width, height)), dtype=np.float32) / 255.0
        grid = torch.from_numpy(pixels).reshape(height // 8, 8, width // 8, 8, 3)
        patches = grid.permute(0, 2, 1, 3, 4).reshape(-1, 8 * 8 * 3)  # (patches, 192)
        return self.patch(patches.to(self.patch.weight.device))  # (patches, dim)

    @staticmethod
    def _padded(rows: list[torch.Tensor]) -> torch.Tensor:
        rows = [F.normalize(r, dim=-1) for r in rows]
        return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (batch, tokens, dim)

    @torch.inference_mode()
    def forward_queries(self, queries: list[str], batch_size: int = 8) -> torch.Tensor:
        return self._padded([self._text(q) for q in queries])

    @torch.inference_mode()
    def forward_passages(self, images: list[Image.Image], batch_size: int = 8) -> torch.Tensor:
        return self._padded([self._image(image) for image in images])

    @torch.inference_mode()
    def forward_documents(self, corpus: list[dict[str, Any]], batch_size: int = 8) -> torch.Tensor:
        return self._padded(
            [
                torch.cat([self._image(d["image"]), *([self._text(d["text"])] if d["text"] else [])])
                for d in corpus
            ]
        )
