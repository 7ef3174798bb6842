"""What every vision-language-model retriever shares, whatever its backbone.

Long because it is the one shared base of every VLM family (prompts, the embedder,
batching with out-of-memory back-off, patch layouts, checkpoint helpers): keeping it whole
is what lets each family module stay a short recipe.

ColPali, ColQwen*, BiQwen*, DSE and ColIdefics3 all run a VLM backbone over a prompt (with or
without an image) and read embeddings off its last hidden states: either one L2-normalised
projection per token (multi-vector, colpali's ``custom_text_proj``) or the last token's
L2-normalised state (single-vector). This module holds that common part:

- :class:`Prompt` / :class:`Recipe` — how queries, pages, text and interleaved documents
  become prompts (each family states its reference's strings);
- :class:`Embedder` — backbone + head, as an ``nn.Module`` whose weights load strictly;
- :class:`VLMEncoder` — the :class:`~mmembed.encoders.base.Encoder` API with input checks,
  size-sorted batching with out-of-memory back-off, unpadding and NaN checks; a family
  subclass only says how its processor turns prompts into model inputs;
- :func:`build_embedder` — config -> backbone, weights renamed from any known layout,
  LoRA adapters merged.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, TypeVar

import torch
from PIL import Image
from torch import nn

from ..explain import Explanation, PatchLayout, similarity_maps
from ..pixels import MAX_PAGE_PIXELS, to_rgb
from ..types import EncoderInfo, Kind, MMEmbedError
from .base import Document, Encoder, MultimodalQuery, checked_texts
from .checkpoint import ADAPTER_WEIGHTS, CheckpointFacts, safetensors_files
from .registry import LoadRequest
from .runtime import default_attention, run_batched
from .weights import Renamer, load_weights, merge_lora, replaced_by_adapter

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4
_PER_ROW_INPUTS = ("input_ids", "attention_mask", "image_grid_thw")
"""Processor outputs with one row per prompt (or per image: one image per page prompt), the
ones :meth:`VLMEncoder.patch_layout` may read."""


@dataclass(frozen=True)
class Prompt:
    """``prefix + text + suffix``; ``image`` tells whether the prompt holds one image."""

    prefix: str
    suffix: str
    image: bool

    def render(self, text: str) -> str:
        return self.prefix + text + self.suffix


DEFAULT_MAX_QUERY_TOKENS = 512
"""Per-family default of :attr:`Recipe.max_query_tokens` (retrieval queries are short)."""

QueryOverflow = Literal["truncate", "error"]

PIXEL_CAP_HEADROOM = 4
"""A page is pre-shrunk only above this many times the pixels the model takes, and never below
:data:`PAGE_MEMORY_GUARD_PIXELS` (see :meth:`VLMEncoder.page_pixel_cap`)."""

PAGE_MEMORY_GUARD_PIXELS = MAX_PAGE_PIXELS
"""Below this many pixels (16.8 MP, :data:`mmembed.pixels.MAX_PAGE_PIXELS`, the page loaders'
decode cap too) a page reaches the processor as given, whatever the model's limit.
Pre-shrinking changes results (two resizes are not the processor's one: a 300-dpi letter scan
pre-shrunk at 4x a 768-token budget moved a score from 3.76 to 0.83), so it is only a memory
guard: a 40 MP page cost the Qwen-VL processor ~270 MB, so a guard at 40 MP let a batch of two
9000 x 9000 images grow memory by 875 MB; at 16.8 MP (2x a 300-dpi letter scan) the growth
stays within the load test's bound. Pages above it (600-dpi scans, 48 MP photos) are the ones
whose vectors differ from a reference given the full image."""


class QueryTooLongWarning(UserWarning):
    """A query was cut to the encoder's ``max_query_tokens``."""


@dataclass(frozen=True)
class Recipe:
    """How inputs become prompts (the "processor" half of a retriever)."""

    page: Prompt
    """A page image alone; its text is :attr:`page_text`."""
    page_text: str
    interleaved: Prompt
    """An image with its caption / extracted text (the text goes where ``page_text`` goes)."""
    query: Prompt
    text_document: Prompt
    image_token: str
    """The placeholder a user's text must not contain (it would be taken for an image)."""
    dummy_image: tuple[int, int] | None = None
    """Size of the blank image that image-prompted recipes (DSE) pair with text-only inputs."""
    resize: Callable[[Image.Image, Any], Image.Image] | None = None
    """Resizes a page before the processor does (DSE resizes with PIL itself)."""
    pixel_limits: tuple[int, int] | None = None
    """(min_pixels, max_pixels) the recipe imposes instead of the checkpoint's."""
    max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS
    """Longest query (in tokens, before the prompt is added) the family takes; longer ones
    are truncated with a warning or refused (:attr:`VLMEncoder.query_overflow`). Attention
    memory grows with the square of the length, so one huge query could exhaust the host."""


class Embedder(nn.Module):
    """A VLM backbone (``model``) and its retrieval head.

    ``head_dim`` set: ``custom_text_proj`` then one L2-normalised vector per token,
    ``(batch, tokens, head_dim)``. ``head_dim=None``: the last token's L2-normalised hidden
    state (inputs are left-padded, so it is every row's last real token), ``(batch, hidden)``.
    """

    def __init__(self, backbone: nn.Module, hidden_size: int, head_dim: int | None) -> None:
        super().__init__()
        self.model = backbone
        self.head_dim = head_dim
        if head_dim is not None:
            self.custom_text_proj = nn.Linear(hidden_size, head_dim)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.model(
            **inputs, use_cache=False, return_dict=True
        ).last_hidden_state  # (batch, tokens, hidden)
        if self.head_dim is None:
            pooled = hidden[:, -1].float()  # (batch, hidden)
            return pooled / pooled.norm(dim=-1, keepdim=True)
        proj = self.custom_text_proj(hidden).float()  # (batch, tokens, dim)
        return proj / proj.norm(dim=-1, keepdim=True)


@dataclass(frozen=True)
class Item:
    """One model input: a rendered prompt and, if the prompt holds one, its image."""

    text: str
    image: Image.Image | None
    what: str
    """How errors name the input (``image 3``, ``query 0``)."""


class VLMEncoder(Encoder):
    """The :class:`Encoder` API over an :class:`Embedder` and a transformers processor.

    Subclasses implement :meth:`text_inputs` and :meth:`image_inputs` (processor output ->
    model keyword arguments) and may refine :meth:`image_cost` (sequence length estimate
    used to sort batches by size).
    """

    def __init__(
        self,
        model: nn.Module,
        processor: Any,
        recipe: Recipe,
        *,
        info: EncoderInfo,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.model = model
        self.processor = processor
        self.recipe = recipe
        self.info = info
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_query_tokens = recipe.max_query_tokens
        """Queries longer than this many tokens are truncated or refused (``query_overflow``)."""
        self.query_overflow: QueryOverflow = "truncate"
        """``"truncate"`` (keep the first ``max_query_tokens`` tokens, warn) or ``"error"``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name!r}, family={self.info.family}, device={self.device}, dtype={self.dtype})"

    @property
    def image_processor(self) -> Any:
        return self.processor.image_processor

    # -- public API ------------------------------------------------------------------

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        if isinstance(queries, str):
            raise MMEmbedError("encode_queries takes a list of strings; use encode_query() for one query")
        items = [self._text_item(self.recipe.query, q, f"query {i}") for i, q in enumerate(queries)]
        return self._run(items, batch_size, progress, "queries")

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        recipe = self.recipe
        items = [
            self._image_item(recipe.page, recipe.page_text, image, f"image {i}")
            for i, image in enumerate(images)
        ]
        return self._run(items, batch_size, progress, "pages")

    def encode_pages(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> tuple[list[torch.Tensor], list[PatchLayout | None] | None]:
        """Each page's layout is read off the encode batch's own processor output (the
        processor runs once per page, not again for :meth:`page_layout`)."""
        if not self._knows_layout():
            return self.encode_images(images, batch_size=batch_size, progress=progress), None
        recipe = self.recipe
        items = [
            self._image_item(recipe.page, recipe.page_text, image, f"image {i}")
            for i, image in enumerate(images)
        ]
        layouts: dict[int, PatchLayout | None] = {}  # id(item) -> its layout
        vectors = self._run(items, batch_size, progress, "pages", layouts)
        return vectors, [layouts.get(id(item)) for item in items]

    def encode_documents(
        self, documents: Sequence[Document], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Page images, text-only documents and ``(image, text)`` documents (a page with its
        caption or extracted text, encoded together as one document)."""
        items = [self._document_item(doc, f"document {i}") for i, doc in enumerate(documents)]
        return self._run(items, batch_size, progress, "documents")

    def encode_text_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Text documents with the family's document prompt (:attr:`Recipe.text_document`:
        colpali-engine's ``process_texts``, no query augmentation tokens)."""
        items = [
            self._text_item(self.recipe.text_document, text, f"text document {i}")
            for i, text in enumerate(checked_texts(texts, "text document"))
        ]
        return self._run(items, batch_size, progress, "text documents")

    def encode_queries_multimodal(
        self, queries: Sequence[MultimodalQuery], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Text queries as :meth:`encode_queries`; image and ``(image, text)`` queries are
        encoded like documents, so that they are compared in the documents' space."""
        items = [
            self._text_item(self.recipe.query, q, f"query {i}")
            if isinstance(q, str)
            else self._document_item(q, f"query {i}")
            for i, q in enumerate(queries)
        ]
        return self._run(items, batch_size, progress, "queries")

    # -- hooks -----------------------------------------------------------------------

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Processor output for text-only prompts (must include ``attention_mask``)."""
        raise NotImplementedError

    def image_inputs(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """Processor output for prompts with one image each (must include ``attention_mask``)."""
        raise NotImplementedError

    def page_pixel_cap(self) -> int | None:
        """Most pixels a page may have when it reaches the processor (see :func:`model_pixel_cap`);
        families override it when their processor says it otherwise."""
        return model_pixel_cap(self.image_processor, self.recipe)

    def image_cost(self, image: Image.Image) -> int:
        """Roughly how many tokens ``image`` becomes (for size-sorted batching); raises
        ``ValueError`` for an image the processor cannot take."""
        return 0

    def patch_layout(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> PatchLayout | None:
        """Where one page's vectors lie on the page (see :mod:`mmembed.explain`): ``inputs``
        is the processor's output for the page, ``ids`` its real tokens ``(page_tokens,)``
        (the rows of its embedding). ``None``: the family does not know its patch grid."""
        return None

    # -- similarity maps -------------------------------------------------------------

    def _knows_layout(self) -> bool:
        return self.info.kind == "multi" and type(self).patch_layout is not VLMEncoder.patch_layout

    def _page_inputs(self, image: Image.Image) -> tuple[Item, dict[str, torch.Tensor], torch.Tensor]:
        item = self._image_item(self.recipe.page, self.recipe.page_text, image, "the page")
        assert item.image is not None  # an image item always carries its (RGB) image
        inputs = self.image_inputs([item.text], [item.image])
        ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()]  # (page_tokens,)
        return item, inputs, ids

    def page_layout(self, image: Image.Image) -> PatchLayout | None:
        """The layout of ``image``'s vectors, from the processor alone (no model run)."""
        if not self._knows_layout():
            return None
        _, inputs, ids = self._page_inputs(image)
        return self.patch_layout(inputs, ids)

    def _query_tokens(self, query: str) -> tuple[torch.Tensor, list[str]]:
        """The query's vectors ``(query_tokens, dim)`` and each token's text."""
        item = self._text_item(self.recipe.query, query, "the query")
        with torch.inference_mode():
            inputs = self.text_inputs([item.text])
            vectors = self._forward(inputs)[0]  # (query_tokens, dim)
        ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()]  # (query_tokens,)
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        return vectors, [tokenizer.decode([int(i)]) for i in ids]

    def explain_page(self, query: str, image: Image.Image) -> Explanation:
        """Re-encodes the page and lays its patch vectors out with :meth:`patch_layout`."""
        if not self._knows_layout():
            return super().explain_page(query, image)
        _, inputs, ids = self._page_inputs(image)
        layout = self.patch_layout(inputs, ids)
        assert layout is not None
        with torch.inference_mode():
            page_vectors = self._forward(inputs)[0]  # (page_tokens, dim)
        query_vectors, tokens = self._query_tokens(query)
        # The grid covers the whole page, so the overlay goes on the page as given (the model
        # may have seen a downscaled copy).
        return similarity_maps(query_vectors, page_vectors, layout, tokens, to_rgb(image))

    def explain_vectors(
        self, query: str, page_vectors: torch.Tensor, layout: PatchLayout, image: Image.Image
    ) -> Explanation:
        if not self._knows_layout():
            return super().explain_vectors(query, page_vectors, layout, image)
        query_vectors, tokens = self._query_tokens(query)
        return similarity_maps(query_vectors, page_vectors, layout, tokens, image, "stored")

    # -- inputs ----------------------------------------------------------------------

    def _document_item(self, doc: object, what: str) -> Item:
        if isinstance(doc, str):
            return self._text_item(self.recipe.text_document, doc, what)
        if isinstance(doc, Image.Image):
            return self._image_item(self.recipe.page, self.recipe.page_text, doc, what)
        if (
            isinstance(doc, tuple)
            and len(doc) == 2
            and isinstance(doc[0], Image.Image)
            and isinstance(doc[1], str)
        ):
            return self._image_item(self.recipe.interleaved, self._checked_text(doc[1], what), doc[0], what)
        raise MMEmbedError(
            f"{what} is a {type(doc).__name__}; pass a str (text), a PIL.Image.Image (page) or an "
            "(image, text) tuple (a page with its caption or extracted text)"
        )

    def _checked_text(self, text: object, what: str) -> str:
        if not isinstance(text, str):
            raise MMEmbedError(f"{what} is a {type(text).__name__}, not a str")
        if self.recipe.image_token in text:
            raise MMEmbedError(
                f"{what} contains the model's image placeholder {self.recipe.image_token!r}; remove it from the text"
            )
        return text

    def query_token_limit(self) -> tuple[int, str]:
        """Most tokens of query text (prompt excluded) this encoder takes, and what sets that
        limit, as errors and warnings name it. A family whose reference caps the prompted query
        itself (Nemotron ColEmbed) returns the stricter of that cap and :attr:`max_query_tokens`."""
        return self.max_query_tokens, "encoder.max_query_tokens"

    def _bounded_query(self, text: object, what: str) -> str:
        """``text`` cut to :meth:`query_token_limit` tokens (or refused), before it can reach
        the model: a 100k-character query would otherwise cost gigabytes of attention."""
        checked = self._checked_text(text, what)
        if self.max_query_tokens < 1:
            raise MMEmbedError(f"encoder.max_query_tokens must be at least 1, got {self.max_query_tokens!r}")
        limit, limited_by = self.query_token_limit()
        if len(checked) <= limit:  # no tokenizer makes fewer characters than tokens
            return checked
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        ids = tokenizer(checked, add_special_tokens=False)["input_ids"]
        if len(ids) <= limit:
            return checked
        if self.query_overflow == "error":
            raise MMEmbedError(
                f"{what} is {len(ids)} tokens long, more than the {limit} {self.info.name!r} takes "
                f"(set by {limited_by}); shorten it, or set encoder.query_overflow = 'truncate'"
                + (
                    " (or raise encoder.max_query_tokens)."
                    if limited_by == "encoder.max_query_tokens"
                    else "."
                )
            )
        warnings.warn(
            f"{what} is {len(ids)} tokens long; only its first {limit} are used "
            f"({limited_by}; set encoder.query_overflow = 'error' to refuse instead)",
            QueryTooLongWarning,
            stacklevel=4,
        )
        return str(tokenizer.decode(ids[:limit]))

    def _text_item(self, prompt: Prompt, text: object, what: str) -> Item:
        if prompt is self.recipe.query:
            text = self._bounded_query(text, what)
        rendered = prompt.render(self._checked_text(text, what))
        if not prompt.image:
            return Item(rendered, None, what)
        if self.recipe.dummy_image is None:
            raise MMEmbedError(f"{self.info.family}: an image prompt for text needs a dummy image size")
        return Item(rendered, Image.new("RGB", self.recipe.dummy_image), what)

    def _image_item(self, prompt: Prompt, text: str, image: object, what: str) -> Item:
        if not isinstance(image, Image.Image):
            raise MMEmbedError(f"{what} is a {type(image).__name__}, not a PIL.Image.Image")
        if image.width < 1 or image.height < 1:
            raise MMEmbedError(f"{what} is empty ({image.width}x{image.height} pixels)")
        cap = self.page_pixel_cap()
        if cap is not None and image.width * image.height > cap:
            if image.mode in ("1", "P"):  # PIL resizes these with nearest neighbour only
                image = to_rgb(image)
            scale = math.sqrt(cap / (image.width * image.height))
            size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
            image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)  # (w, h) <= cap
        rgb = to_rgb(image)  # alpha composited on white, as the page loader does
        if self.recipe.resize is not None:
            rgb = self.recipe.resize(rgb, self.image_processor)
        return Item(prompt.render(text), rgb, what)

    def _size(self, item: Item) -> int:
        if item.image is None:
            return len(item.text)
        try:
            return len(item.text) + self.image_cost(item.image)
        except ValueError as err:  # the processor refuses the image (e.g. a 1-pixel-wide strip)
            image = item.image
            raise MMEmbedError(
                f"{item.what} ({image.width}x{image.height} pixels) cannot be encoded: {err}"
            ) from err

    # -- running ---------------------------------------------------------------------

    def _run(
        self,
        items: list[Item],
        batch_size: int | None,
        progress: bool,
        desc: str,
        layouts: dict[int, PatchLayout | None] | None = None,
    ) -> list[torch.Tensor]:
        """Text-only prompts and image prompts go in separate batches (different inputs).
        With ``layouts``, each image item's patch layout is recorded there under ``id(item)``."""
        results: list[torch.Tensor | None] = [None] * len(items)
        size = batch_size or self.batch_size
        for with_image in (True, False):
            indices = [i for i, item in enumerate(items) if (item.image is not None) == with_image]
            if not indices:
                continue
            group = [items[i] for i in indices]
            encode = partial(self._encode_with_images, layouts=layouts) if with_image else self._encode_texts
            outputs = run_batched(
                group, [self._size(item) for item in group], size, encode, progress=progress, desc=desc
            )
            for i, out in zip(indices, outputs, strict=True):
                results[i] = out
        return [r for r in results if r is not None]

    @torch.inference_mode()
    def _encode_texts(self, items: list[Item]) -> list[torch.Tensor]:
        inputs = self.text_inputs([item.text for item in items])
        return self._forward(inputs)

    @torch.inference_mode()
    def _encode_with_images(
        self, items: list[Item], layouts: dict[int, PatchLayout | None] | None = None
    ) -> list[torch.Tensor]:
        inputs = self.image_inputs(
            [item.text for item in items], [item.image for item in items if item.image is not None]
        )
        if layouts is not None:
            for row, item in enumerate(items):
                layouts[id(item)] = row_layout(self.patch_layout, inputs, row)
        return self._forward(inputs)

    def _forward(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        mask = inputs["attention_mask"]
        moved = {k: v.to(self.device) for k, v in inputs.items()}
        if "pixel_values" in moved:
            moved["pixel_values"] = moved["pixel_values"].to(self.dtype)
        return real_rows(self.model(**moved), mask, self.device, self.dtype)


def row_layout(
    patch_layout: Callable[[dict[str, torch.Tensor], torch.Tensor], PatchLayout | None],
    inputs: dict[str, torch.Tensor],
    row: int,
) -> PatchLayout | None:
    """``patch_layout`` of batch row ``row`` (one image per row), as
    :meth:`VLMEncoder.page_layout` finds it for that page alone: its real tokens and its own
    image grid. ``None`` when it cannot be made (explain then re-encodes the page)."""
    ids = inputs["input_ids"][row][inputs["attention_mask"][row].bool()]  # (page_tokens,)
    own = {k: inputs[k][row : row + 1] for k in _PER_ROW_INPUTS if k in inputs}
    try:
        return patch_layout(own, ids)
    except MMEmbedError as err:  # as explain.recorded_layout does
        logger.debug("no patch layout recorded for batch row %s (%s)", row, err)
        return None


def model_pixel_cap(image_processor: Any, recipe: Recipe) -> int | None:
    """Most pixels a page may have when it reaches the processor: larger pages are
    downscaled first (keeping their aspect ratio), so a huge-but-small-on-disk image
    cannot blow the processor's float buffers. A memory guard, not a resize: the cap is
    the larger of :data:`PAGE_MEMORY_GUARD_PIXELS` and :data:`PIXEL_CAP_HEADROOM` times
    what the model takes, read from the image processor's ``size``: Qwen-style
    ``max_pixels`` (``shortest_edge`` + ``longest_edge`` are pixel counts), a fixed
    ``height`` x ``width``, or a ``longest_edge`` in pixels (squared). Every page below it
    (scans, photos, PDF pages at any usual dpi) gets the processor's own resize alone, as
    with the reference."""
    size = getattr(image_processor, "size", None) or {}
    if recipe.pixel_limits is not None:
        model_pixels = int(recipe.pixel_limits[1])
    elif "shortest_edge" in size and "longest_edge" in size:
        model_pixels = int(size["longest_edge"])
    elif "height" in size and "width" in size:
        model_pixels = int(size["height"]) * int(size["width"])
    elif "longest_edge" in size:
        model_pixels = int(size["longest_edge"]) ** 2
    else:
        return None
    return max(PAGE_MEMORY_GUARD_PIXELS, PIXEL_CAP_HEADROOM * model_pixels)


def real_rows(
    embeddings: torch.Tensor, mask: torch.Tensor, device: torch.device, dtype: torch.dtype
) -> list[torch.Tensor]:
    """Model output -> one float32 CPU ``(n_vectors, dim)`` tensor per input: the real
    tokens' rows (multi-vector) or the pooled row (single-vector); NaN is refused."""
    if embeddings.ndim == 2:  # (batch, hidden): single-vector
        out = [row.unsqueeze(0).float().cpu() for row in embeddings]
    else:  # (batch, tokens, dim)
        keep = mask.to(torch.bool)
        out = [e[k.to(e.device)].float().cpu() for e, k in zip(embeddings, keep, strict=True)]
    if any(bool(torch.isnan(o).any()) for o in out):
        raise MMEmbedError(
            f"the model produced NaN embeddings on {device} with {dtype}; try "
            "attn_implementation='eager' or dtype='float32' when loading the encoder."
        )
    return out


# -- loading ------------------------------------------------------------------------------


def processor_folder(facts: CheckpointFacts) -> Any:
    """Adapters usually carry their own tokenizer / processor files; else use the base's."""
    for folder in (facts.path, facts.model_path):
        has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()
        has_images = (folder / "preprocessor_config.json").is_file() or (
            folder / "processor_config.json"
        ).is_file()
        if has_tokenizer and has_images:
            return folder
    raise MMEmbedError(
        f"no tokenizer / image processor files (tokenizer.json, preprocessor_config.json) in {facts.path}"
        + (f" or {facts.model_path}" if facts.model_path != facts.path else "")
    )


def head_size(facts: CheckpointFacts, rename: Renamer) -> int | None:
    """Output size of the retrieval head (``custom_text_proj`` after ``rename``), read from
    safetensors headers (model, then adapter); ``None`` when neither has one."""
    from safetensors import safe_open

    files = [(file, "") for file in safetensors_files(facts.model_path)]
    if facts.adapter is not None:
        files.append((facts.adapter.path / ADAPTER_WEIGHTS, "base_model.model."))
    for file, prefix in files:
        if not file.is_file():
            continue
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                name = rename(key.removeprefix(prefix)) or ""
                if name == "custom_text_proj.weight" or name.startswith("custom_text_proj.lora_B"):
                    return int(handle.get_slice(key).get_shape()[0])
    return None


def has_head(facts: CheckpointFacts, module: str = "custom_text_proj") -> bool:
    """A retrieval head in the weights or brought by the adapter."""
    return facts.has_module(module)


def is_embedding_adapter(facts: CheckpointFacts) -> bool:
    """A LoRA adapter trained for embeddings (colpali-engine / nomic training saves
    ``task_type: FEATURE_EXTRACTION``), as opposed to e.g. a chat fine-tune (``CAUSAL_LM``)."""
    return (
        facts.adapter is not None and str(facts.adapter.config.get("task_type") or "") == "FEATURE_EXTRACTION"
    )


_weight_init_lock = threading.Lock()


@contextmanager
def skipped_weight_init() -> Iterator[None]:
    """transformers' ``no_init_weights``, one thread at a time.

    It swaps torch's init functions process-wide and, on exit, puts back what it found: two
    overlapping uses in different threads (two encoders loading at once) can leave them
    swapped for good, and every model built afterwards in the process uninitialised."""
    from transformers.initialization import no_init_weights

    with _weight_init_lock, no_init_weights():
        yield


def build_embedder(
    facts: CheckpointFacts,
    backbone: nn.Module,
    hidden_size: int,
    head_dim: int | None,
    rename: Renamer,
    dtype: torch.dtype,
) -> Embedder:
    """``backbone`` (built from ``config.json`` under ``no_init_weights``) with its head,
    every weight loaded strictly through ``rename``, the adapter merged.

    What an adapter brings whole (PEFT ``modules_to_save``) may be missing from the base: the
    base of ``nomic-ai/colnomic-embed-multimodal-3b`` is a plain Qwen2.5-VL whose head comes
    with the adapter."""
    with skipped_weight_init():
        model = Embedder(backbone, hidden_size, head_dim).to(dtype)
    from_adapter = replaced_by_adapter(facts.adapter, rename) if facts.adapter is not None else set()
    load_weights(
        model,
        safetensors_files(facts.model_path),
        rename,
        source=str(facts.model_path),
        provided_elsewhere=from_adapter,
    )
    if facts.adapter is not None:
        merge_lora(model, facts.adapter, rename)
    return model.eval().requires_grad_(False)


def rename_key(
    key: str, renames: Sequence[tuple[re.Pattern[str], str]], unused: re.Pattern[str]
) -> str | None:
    """A checkpoint key -> :class:`Embedder` name: ``None`` for weights the embedder does not
    use (``unused``), else the first matching ``(pattern, replacement)`` of ``renames`` applied."""
    if unused.match(key):
        return None
    for pattern, target in renames:
        if pattern.match(key):
            return pattern.sub(target, key, count=1)
    return key


EncoderT = TypeVar("EncoderT", bound=VLMEncoder)


def build_vlm_encoder(
    request: LoadRequest,
    *,
    family_id: str,
    kind: Kind,
    classes: tuple[Any, Any],
    rename: Renamer,
    load_processor: Callable[[Any], Any],
    recipe: Recipe | Callable[[Any], Recipe],
    encoder_class: type[EncoderT],
    head: str = "custom_text_proj weights",
) -> EncoderT:
    """Everything a VLM family's ``build`` does, from its parts.

    ``classes`` are the transformers (config, backbone model) classes; ``load_processor``
    takes the loaded config; ``recipe`` may depend on the processor; ``head`` names the
    retrieval head in the error raised when a multi-vector checkpoint lacks one."""
    facts = request.facts
    options = dict(request.options)
    head_dim: int | None = None
    if kind == "multi":
        head_dim = head_size(facts, rename)
        if head_dim is None:
            raise MMEmbedError(f"{facts.name}: no {head} in the checkpoint or its adapter")
    attn = options.get("attn_implementation") or default_attention(request.device)
    config_class, model_class = classes
    config = config_class.from_pretrained(str(facts.model_path))
    with skipped_weight_init():  # every weight is loaded from the checkpoint
        backbone = model_class._from_config(config, dtype=request.dtype, attn_implementation=attn)
    hidden = int(config.text_config.hidden_size)
    model = build_embedder(facts, backbone, hidden, head_dim, rename, request.dtype).to(request.device)
    processor = load_processor(config)
    info = EncoderInfo(
        name=request.name,
        family=family_id,
        kind=kind,
        dim=head_dim if head_dim is not None else hidden,
        similarity="maxsim" if kind == "multi" else "dot",
        revision=request.revision,
    )
    logger.info(
        "loaded %s (%s) on %s as %s, %s attention",
        request.name,
        family_id,
        request.device,
        request.dtype,
        attn,
    )
    return encoder_class(
        model,
        processor,
        recipe if isinstance(recipe, Recipe) else recipe(processor),
        info=info,
        device=request.device,
        dtype=request.dtype,
        batch_size=int(options.get("batch_size") or DEFAULT_BATCH_SIZE),
    )
