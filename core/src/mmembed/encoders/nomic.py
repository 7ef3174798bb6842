"""Nomic Embed v1.5: ``nomic-embed-vision-v1.5`` and ``nomic-embed-text-v1.5``, one latent space.

Long because the family pairs two checkpoints (the vision model and its text partner) and
its ``build`` resolves the partner; the two towers themselves are in :mod:`.nomic_text` and
:mod:`.nomic_vision`.

The vision model was trained (locked-text tuning) into the text model's space, so the family
pairs them as one encoder: queries and text documents go through the text model
(:mod:`.nomic_text`), pages and images through the vision model (:mod:`.nomic_vision`), and a
text query retrieves images with one similarity (dot of L2-normalised 768-d vectors).

- Loading the **vision** checkpoint finds its text partner: ``text_model`` (default
  ``nomic-ai/nomic-embed-text-v1.5``; a local folder or another Hub id), loaded through the
  encoder cache so it is shared with a text-only encoder of the same checkpoint.
- Loading the **text** checkpoint alone gives a text-only encoder that refuses images.
- ``matryoshka_dim`` (768 / 512 / 256 / 128 / 64): text vectors truncated after the
  ``layer_norm``, image vectors truncated alike, then L2-normalised; recorded in the index.
- A PEFT LoRA adapter over the text checkpoint (what ``mmembed train`` writes) loads as that
  text checkpoint with the adapter merged, alone or as ``text_model=``.
- ``tiles`` (vision only, default 1): a page becomes its whole 224x224 view plus a grid of
  ``tiles`` crops, stored as a multi-vector page scored with MaxSim (a full page squeezed into
  224 pixels loses small text).

Both checkpoints are recognised from their files (``model_type: nomic_bert`` and the
published weight names), never from their names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..pixels import to_rgb
from ..types import EncoderInfo, MMEmbedError
from .base import Document, Encoder, MultimodalQuery, checked_texts
from .checkpoint import CheckpointFacts, CheckpointNotFoundError, inspect_checkpoint, safetensors_files
from .nomic_text import MATRYOSHKA_DIMS, NomicText, is_text_checkpoint, load_text
from .nomic_vision import ClipPreprocessing, NomicVisionModel, VisionConfig, rotary_table
from .registry import LoadRequest, ModelFamily, register_family
from .runtime import run_batched
from .weights import load_weights

if TYPE_CHECKING:
    from ..explain import Explanation, PatchLayout, VectorsFrom

logger = logging.getLogger(__name__)

FAMILY_ID = "nomic_v1_5"
DEFAULT_TEXT_MODEL = "nomic-ai/nomic-embed-text-v1.5"
DEFAULT_BATCH_SIZE = 16
MAX_TILES = 16


def is_vision_checkpoint(facts: CheckpointFacts) -> bool:
    return (
        facts.model_type == "nomic_bert"
        and "NomicVisionModel" in facts.architectures
        and (not facts.weight_names or "selector.attn.latent" in facts.weight_names)
    )


def matches(facts: CheckpointFacts) -> bool:
    # A LoRA adapter over the text model (what `mmembed train` writes) is a text checkpoint too.
    if facts.adapter is not None:
        return is_text_checkpoint(facts)
    return is_text_checkpoint(facts) or is_vision_checkpoint(facts)


def tile_grid(width: int, height: int, tiles: int) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols == tiles`` whose cells are closest to square."""
    grids = [(rows, tiles // rows) for rows in range(1, tiles + 1) if tiles % rows == 0]
    return min(grids, key=lambda rc: abs(math.log((width / rc[1]) / (height / rc[0]))))


def tile_boxes(width: int, height: int, tiles: int) -> list[tuple[int, int, int, int]]:
    """``tiles`` square crop boxes ``(left, top, right, bottom)`` covering the page, row-major.

    The page is cut into a ``rows x columns == tiles`` grid whose cells are as close to square as
    possible; each cell is then widened to a square (overlapping its neighbours, kept inside the
    page) because CLIP's preprocessing centre-crops a square and would cut a non-square cell."""
    rows, cols = tile_grid(width, height, tiles)
    side = min(max(-(-width // cols), -(-height // rows)), width, height)
    boxes = []
    for r in range(rows):
        for c in range(cols):
            centre_x, centre_y = (2 * c + 1) * width / (2 * cols), (2 * r + 1) * height / (2 * rows)
            left = min(max(round(centre_x - side / 2), 0), width - side)
            top = min(max(round(centre_y - side / 2), 0), height - side)
            boxes.append((left, top, left + side, top + side))
    return boxes


class NomicVision:
    """The vision tower: CLIP preprocessing + :class:`NomicVisionModel`."""

    def __init__(
        self, model: NomicVisionModel, preprocess: ClipPreprocessing, device: torch.device, batch_size: int
    ) -> None:
        self.model, self.preprocess, self.device, self.batch_size = model, preprocess, device, batch_size

    @torch.inference_mode()
    def _forward(self, images: list[Image.Image]) -> list[torch.Tensor]:
        pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device)  # (batch, 3, s, s)
        return list(self.model(pixels).cpu())  # each (hidden,)

    def encode(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """One L2-normalised ``(hidden,)`` float32 CPU vector per image."""
        return run_batched(
            list(images),
            [1] * len(images),
            batch_size or self.batch_size,
            self._forward,
            progress=progress,
            desc="encoding images",
        )


def load_vision(
    facts: CheckpointFacts, *, device: torch.device, dtype: torch.dtype, batch_size: int
) -> NomicVision:
    config = VisionConfig.from_dict(dict(facts.config), str(facts.model_path / "config.json"))
    with torch.device("meta"):
        model = NomicVisionModel(config)
    model = model.to_empty(device="cpu")  # every parameter is then loaded, strictly
    model.rotary = rotary_table(config)  # a computed (non-persistent) buffer
    load_weights(model, safetensors_files(facts.model_path), lambda key: key, source=facts.name)
    preprocess = ClipPreprocessing.from_file(facts.model_path / "preprocessor_config.json")
    crop = preprocess.crop or (preprocess.shortest_edge, preprocess.shortest_edge)
    if crop != (config.image_size, config.image_size):
        raise MMEmbedError(
            f"{facts.model_path / 'preprocessor_config.json'}: images come out {crop[0]}x{crop[1]} but the "
            f"model takes {config.image_size}x{config.image_size} (config.json img_size)"
        )
    return NomicVision(
        model.to(dtype).eval().requires_grad_(False).to(device), preprocess, device, batch_size
    )


class NomicEncoder(Encoder):
    """Text through Nomic Embed Text v1.5, images through Nomic Embed Vision v1.5 (if paired)."""

    def __init__(
        self,
        text: NomicText,
        vision: NomicVision | None,
        *,
        info: EncoderInfo,
        matryoshka_dim: int,
        tiles: int,
        dtype: torch.dtype,
    ) -> None:
        self.text, self.vision, self.info = text, vision, info
        self.matryoshka_dim, self.tiles = matryoshka_dim, tiles
        self.device, self.dtype = text.device, dtype

    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        task: str = "search_query",
        batch_size: int | None = None,
        progress: bool = False,
    ) -> list[torch.Tensor]:
        """Embed texts for a Nomic task: ``search_query``, ``search_document``,
        ``classification`` or ``clustering`` (its prefix is added here)."""
        if task not in ("search_query", "search_document", "classification", "clustering"):
            raise MMEmbedError(
                f"unknown task {task!r}; use search_query, search_document, classification or clustering"
            )
        return self.text.encode(texts, task, self.matryoshka_dim, batch_size=batch_size, progress=progress)

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        return self.encode_texts(queries, task="search_query", batch_size=batch_size, progress=progress)

    def encode_text_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Text documents with the ``search_document: `` prefix."""
        return self.encode_texts(
            checked_texts(texts, "text document"),
            task="search_document",
            batch_size=batch_size,
            progress=progress,
        )

    def _vision(self) -> NomicVision:
        if self.vision is None:
            raise MMEmbedError(
                f"{self.info.name} is a Nomic Embed *text* checkpoint and cannot embed images; load the "
                "vision checkpoint (e.g. nomic-ai/nomic-embed-vision-v1.5, which pairs itself with this text "
                "model through text_model=...) to embed images in the same space"
            )
        return self.vision

    def _image_vectors(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Full-width image vectors -> the index's size, ``(n, dim)``."""
        stacked = torch.stack(images)  # (n, hidden)
        return torch.nn.functional.normalize(stacked[:, : self.matryoshka_dim], dim=-1)

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        vision = self._vision()
        for i, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise MMEmbedError(f"image {i} is a {type(image).__name__}, not a PIL image")
        views: list[Image.Image] = []
        owners: list[int] = []
        for i, image in enumerate(images):
            image = to_rgb(image)  # alpha composited on white, as the page loader does
            crops = [image] + (
                [image.crop(box) for box in tile_boxes(*image.size, self.tiles)] if self.tiles > 1 else []
            )
            views += crops
            owners += [i] * len(crops)
        vectors = self._image_vectors(vision.encode(views, batch_size=batch_size, progress=progress))
        return [vectors[[j for j, o in enumerate(owners) if o == i]] for i in range(len(images))]

    def page_layout(self, image: Image.Image) -> PatchLayout | None:
        """With ``tiles > 1`` a page is its whole view (vector 0) then ``rows x cols`` tiles in
        row-major order (vectors 1...): a coarse grid, one cell per tile (tiles widened to
        squares overlap a little; each cell stands for its tile's centre part)."""
        if self.tiles <= 1 or self.vision is None:
            return None
        from ..explain import PatchLayout, PatchView

        rows, cols = tile_grid(*image.size, self.tiles)
        tiles, whole = PatchView(1, rows, cols, 0, 0, rows, cols), PatchView(0, 1, 1, 0, 0, rows, cols)
        return PatchLayout(rows, cols, (tiles, whole))

    def explain_page(self, query: str, image: Image.Image) -> Explanation:
        layout = self.page_layout(image)
        if layout is None:
            return super().explain_page(query, image)
        return self._explain(query, self.encode_images([image])[0], layout, image, "re-encoded")

    def explain_vectors(
        self, query: str, page_vectors: torch.Tensor, layout: PatchLayout, image: Image.Image
    ) -> Explanation:
        if self.page_layout(image) is None:
            return super().explain_vectors(query, page_vectors, layout, image)
        return self._explain(query, page_vectors, layout, image, "stored")

    def _explain(
        self,
        query: str,
        page_vectors: torch.Tensor,
        layout: PatchLayout,
        image: Image.Image,
        source: VectorsFrom,
    ) -> Explanation:
        """The query is one vector (Nomic Embed Text pools it): one map, named by the query."""
        from ..explain import similarity_maps

        query_vectors = self.encode_queries([query])[0]  # (1, dim)
        return similarity_maps(query_vectors, page_vectors, layout, [query], to_rgb(image), source)

    def encode_documents(
        self, documents: Sequence[Document], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """``str`` through the text model (``search_document: ``), images through the vision model."""
        texts = {i: d for i, d in enumerate(documents) if isinstance(d, str)}
        images = {i: d for i, d in enumerate(documents) if isinstance(d, Image.Image)}
        odd = [i for i in range(len(documents)) if i not in texts and i not in images]
        if odd:
            raise MMEmbedError(
                f"document {odd[0]} is a {type(documents[odd[0]]).__name__}: Nomic Embed v1.5 embeds a text or "
                "an image, not both together; pass the page image and its text as two documents"
            )
        out: dict[int, torch.Tensor] = {}
        if texts:
            encoded = self.encode_texts(list(texts.values()), task="search_document", batch_size=batch_size)
            out.update(zip(texts, encoded, strict=True))
        if images:
            out.update(
                zip(images, self.encode_images(list(images.values()), batch_size=batch_size), strict=True)
            )
        return [out[i] for i in range(len(documents))]

    def encode_queries_multimodal(
        self, queries: Sequence[MultimodalQuery], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Text queries (``search_query: ``) and image queries (the image's whole view)."""
        out: list[torch.Tensor | None] = [None] * len(queries)
        texts = [(i, q) for i, q in enumerate(queries) if isinstance(q, str)]
        images = [(i, q) for i, q in enumerate(queries) if isinstance(q, Image.Image)]
        if len(texts) + len(images) != len(queries):
            raise MMEmbedError("Nomic Embed v1.5 queries are a text or an image, not an (image, text) pair")
        if texts:
            for (i, _), vector in zip(
                texts, self.encode_queries([q for _, q in texts], batch_size=batch_size), strict=True
            ):
                out[i] = vector
        if images:
            encoded = self._vision().encode([to_rgb(q) for _, q in images], batch_size=batch_size)
            for (i, _), vector in zip(images, self._image_vectors(encoded), strict=True):
                out[i] = vector.unsqueeze(0)
        return [v for v in out if v is not None]


def _matryoshka_dim(request: LoadRequest, hidden: int) -> int:
    value = request.options.get("matryoshka_dim")
    if value is None:
        return hidden
    dim = int(value)
    if not 1 <= dim <= hidden:
        raise MMEmbedError(f"matryoshka_dim={value!r} must be between 1 and the model's {hidden} dimensions")
    if hidden == MATRYOSHKA_DIMS[0] and dim not in MATRYOSHKA_DIMS:
        logger.warning(
            "matryoshka_dim=%d: nomic-embed-text-v1.5 was trained for %s only",
            dim,
            "/".join(map(str, MATRYOSHKA_DIMS)),
        )
    return dim


def _tiles(request: LoadRequest) -> int:
    tiles = int(request.options.get("tiles") or 1)
    if not 1 <= tiles <= MAX_TILES:
        raise MMEmbedError(f"tiles={tiles} must be between 1 (the page as one 224x224 view) and {MAX_TILES}")
    return tiles


def build(request: LoadRequest) -> NomicEncoder:
    from ..fingerprint import combine_fingerprints
    from .cache import checkpoint_fingerprint_of, load_encoder

    batch_size = int(request.options.get("batch_size") or DEFAULT_BATCH_SIZE)
    facts = request.facts
    if is_text_checkpoint(facts):
        for option in ("text_model", "tiles"):
            if request.options.get(option) not in (None, 1 if option == "tiles" else None):
                raise MMEmbedError(
                    f"{option}= applies to the vision checkpoint; {facts.name} is the text model"
                )
        text = load_text(
            facts,
            device=request.device,
            dtype=request.dtype,
            batch_size=batch_size,
            max_length=request.options.get("max_length"),
        )
        dim = _matryoshka_dim(request, text.hidden_size)
        info = EncoderInfo(
            name=request.name,
            family=FAMILY_ID,
            kind="single",
            dim=dim,
            similarity="dot",
            revision=request.revision,
            settings={"matryoshka_dim": dim},
        )
        return NomicEncoder(text, None, info=info, matryoshka_dim=dim, tiles=1, dtype=request.dtype)

    text_name = str(request.options.get("text_model") or DEFAULT_TEXT_MODEL)
    try:
        partner_facts = inspect_checkpoint(text_name)
    except CheckpointNotFoundError as err:
        raise CheckpointNotFoundError(
            f"the vision model {facts.name} needs its text partner to embed queries: {err} "
            "Then pass text_model=<that folder>."
        ) from err
    if not is_text_checkpoint(partner_facts):
        raise MMEmbedError(
            f"text_model={text_name!r} is not a Nomic Embed Text checkpoint ({partner_facts.describe()}); "
            f"the vision model {facts.name} shares nomic-embed-text-v1.5's space, pass that checkpoint's "
            "folder or id"
        )
    partner = load_encoder(
        text_name,
        device=request.device,
        dtype=request.dtype,
        **{k: request.options[k] for k in ("batch_size", "max_length") if request.options.get(k) is not None},
    )
    assert isinstance(partner, NomicEncoder) and partner.vision is None  # a text checkpoint, checked above
    vision = load_vision(facts, device=request.device, dtype=request.dtype, batch_size=batch_size)
    hidden = vision.model.config.hidden_size
    if hidden != partner.text.hidden_size:
        raise MMEmbedError(
            f"text_model={text_name!r} makes {partner.text.hidden_size}-d vectors but the vision model "
            f"{facts.name} makes {hidden}-d ones; they are not a pair"
        )
    dim = _matryoshka_dim(request, hidden)
    tiles = _tiles(request)
    info = EncoderInfo(
        name=request.name,
        family=FAMILY_ID,
        kind="multi" if tiles > 1 else "single",
        dim=dim,
        similarity="maxsim" if tiles > 1 else "dot",
        revision=request.revision,
        settings={"matryoshka_dim": dim, "text_model": partner.info.name, "tiles": tiles},
        # The pair is one model: its identity is both checkpoints' content.
        fingerprint=combine_fingerprints([checkpoint_fingerprint_of(facts), partner.info.fingerprint]),
    )
    return NomicEncoder(partner.text, vision, info=info, matryoshka_dim=dim, tiles=tiles, dtype=request.dtype)


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="single",
        similarity="dot",
        dim=768,
        description="Nomic Embed Vision + Text v1.5: one 768-d space for text and images",
        matches=matches,
        build=build,
        known_checkpoints=("nomic-ai/nomic-embed-vision-v1.5", "nomic-ai/nomic-embed-text-v1.5"),
        notes=(
            "Vision checkpoint: images + its text partner (text_model=, default nomic-ai/nomic-embed-text-v1.5); "
            "text checkpoint alone: text only. matryoshka_dim 768/512/256/128/64; tiles=N stores a page as "
            "its whole view + N crops (multi-vector, MaxSim). Runs well on CPU."
        ),
        options=("text_model", "matryoshka_dim", "tiles", "batch_size", "max_length"),
    )
)
