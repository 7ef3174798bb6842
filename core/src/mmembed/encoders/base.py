"""What every encoder offers, whatever its model family."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..types import EncoderInfo, MediaClip, MMEmbedError  # MediaClip: defined in types (loaders use it too)

if TYPE_CHECKING:
    from ..explain import Explanation, PatchLayout

Document = str | Image.Image | tuple[Image.Image, str]
"""A text-only document, a page image, or a page image with its caption / extracted text
encoded together as one (interleaved) document."""
MultimodalQuery = str | Image.Image | tuple[Image.Image, str]
"""A text query, an image query, or an image with text."""


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

    def encode_text_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Embed text documents (passages, chunks) with the model's *document* side.

        Asymmetric retrievers encode what is searched differently from what searches: Nomic
        Embed v1.5 prefixes ``search_document: `` instead of ``search_query: ``, Nemotron
        ColEmbed ``passage: `` instead of ``query: ``, ColPali-style families leave out the
        query augmentation tokens. This default suits symmetric text models only (one
        encoding for both sides, like all-MiniLM): it runs :meth:`encode_queries`. Every
        family with a document prompt overrides it."""
        return self.encode_queries(
            checked_texts(texts, "text document"), batch_size=batch_size, progress=progress
        )

    def encode_documents(
        self, documents: Sequence[Document], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Embed documents of mixed kinds: ``str`` (text only), ``PIL.Image.Image`` (a page) or
        ``(image, text)`` (a page with its caption / extracted text, as one document).
        Families that cannot take one of these kinds raise :class:`MMEmbedError`."""
        raise MMEmbedError(
            f"the {self.info.family} encoder cannot encode text or interleaved documents; "
            "use encode_images() for page images"
        )

    def encode_media(
        self, clips: Sequence[MediaClip], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Embed audio / video clips (one embedding per clip)."""
        raise MMEmbedError(
            f"the {self.info.family} encoder cannot encode audio or video; index recordings with an "
            "audio/video model such as nvidia/omni-embed-nemotron-3b"
        )

    def encode_queries_multimodal(
        self, queries: Sequence[MultimodalQuery], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Embed queries that may be images or ``(image, text)`` pairs as well as text."""
        raise MMEmbedError(
            f"the {self.info.family} encoder cannot encode image queries; use encode_queries() for text"
        )

    def page_layout(self, image: Image.Image) -> PatchLayout | None:
        """Where the vectors of ``image`` lie on the page, recorded at indexing time so that
        similarity maps can use stored vectors; ``None`` for families without a patch grid."""
        return None

    def encode_pages(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[torch.Tensor], list[PatchLayout | None] | None]:
        """:meth:`encode_images`, plus each page's :meth:`page_layout` when the family reads it
        from the very processor output it encoded (indexing then runs no processor twice).
        ``None`` in place of the layouts: the family does not, ask :meth:`page_layout`."""
        return self.encode_images(images, batch_size=batch_size, progress=progress), None

    def explain_page(self, query: str, image: Image.Image) -> Explanation:
        """Per-token similarity maps of ``query`` on the page ``image`` (see
        :mod:`mmembed.explain`); only multi-vector image families that know their patch grid."""
        raise self._no_similarity_maps()

    def explain_vectors(
        self, query: str, page_vectors: torch.Tensor, layout: PatchLayout, image: Image.Image
    ) -> Explanation:
        """:meth:`explain_page` from a page's stored vectors ``(page_tokens, dim)`` and the
        layout :meth:`page_layout` gave at indexing time (the model sees only the query)."""
        raise self._no_similarity_maps()

    def _no_similarity_maps(self) -> MMEmbedError:
        return MMEmbedError(
            f"similarity maps are not available for this model ({self.info.name!r}, family "
            f"{self.info.family}, {self.info.kind}-vector): they need a multi-vector page model whose "
            "patch grid is known (ColPali, ColQwen2 / 2.5 / 3, ColSmol / ColIdefics3, Nemotron ColEmbed, "
            "Nomic Embed Vision with tiles > 1)"
        )


def checked_texts(texts: Sequence[str], what: str) -> list[str]:
    """``texts`` as a list, refused (naming the culprit) unless every item is a ``str``."""
    if isinstance(texts, str):
        raise MMEmbedError(f"pass a list of {what}s, not one str")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise MMEmbedError(f"{what} {i} is a {type(text).__name__}, not a str")
    return list(texts)
