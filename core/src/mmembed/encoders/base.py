"""What every encoder offers, whatever its model family."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from PIL import Image

from ..types import EncoderInfo


class Encoder(ABC):
    """Turns queries and page images into embeddings.

    Every method returns one ``(n_vectors, dim)`` float32 CPU tensor per input, without
    padding rows: a multi-vector encoder returns one row per kept token, a single-vector
    encoder exactly one row.
    """

    info: EncoderInfo
    device: torch.device
    dtype: torch.dtype

    @abstractmethod
    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Embed text queries."""

    @abstractmethod
    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Embed page images (RGB)."""

    def encode_query(self, query: str) -> torch.Tensor:
        return self.encode_queries([query])[0]
