"""Training Nomic Embed v1.5 (``nomic_v1_5``): LoRA on the text tower, the vision tower frozen.

The pair's two towers share one space because the vision model was trained into the text
model's; adapting to a user's pages moves the side that embeds the queries, the text tower
(a ``NomicBertModel``): LoRA on every linear layer of its transformer blocks
(``q/k/v/o_proj``, ``gate/up/down_proj``), the vision ViT frozen and run without gradients.

What is trained is what is served: queries get the ``search_query: `` prefix and the model
card's pooling (mean over the mask -> ``layer_norm`` -> the first ``matryoshka_dim`` values ->
L2); pages go through the vision model as search indexes them (the whole view, plus the
``tiles`` crops when the index was built with ``tiles > 1``). With tiles a page is several
vectors and a query one, scored like search scores them: the best page vector's dot product
(MaxSim with one query vector).

The adapter is an adapter over the *text* checkpoint (``base_model_name_or_path`` = the
index's ``text_model``), so it loads back the way the family pairs its towers::

    mmembed.load_encoder("nomic-ai/nomic-embed-vision-v1.5", text_model="my-adapter", tiles=4)

and alone (``load_encoder("my-adapter")``) as a text-only encoder. ``--merge`` writes a full
text checkpoint under the published weight names, loaded through ``text_model=`` alike.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..encoders.base import Encoder
from ..encoders.checkpoint import MODEL_CONFIG, CheckpointFacts
from ..encoders.nomic import FAMILY_ID, NomicEncoder, NomicVision, tile_boxes
from ..encoders.nomic_text import TASK_PREFIXES, tokenizer_folder
from ..pixels import to_rgb
from ..types import EncoderInfo
from . import output
from .families import TrainableEncoder, UntrainableFamilyError

BLOCKS = "layers"
"""The text tower's transformer blocks (transformers' ``NomicBertModel``): where LoRA goes."""
VISION = "vision"
"""The frozen tower's name in :meth:`NomicTrainable.frozen_towers`."""


def text_only_refusal(name: str) -> UntrainableFamilyError:
    return UntrainableFamilyError(
        f"the index's model {name!r} (family {FAMILY_ID}) cannot be fine-tuned: it is the Nomic Embed *text* "
        "checkpoint alone, which indexes text, and mmembed train trains on page images; index the pages with "
        "the vision checkpoint (text_model= this one) to train it"
    )


def check_index(info: EncoderInfo) -> None:
    """Refuse an index of the text checkpoint alone before anything is read (a vision pair
    records its ``text_model``)."""
    if info.family == FAMILY_ID and "text_model" not in (info.settings or {}):
        raise text_only_refusal(info.name)


class NomicTrainable(TrainableEncoder):
    """:class:`TrainableEncoder` for the Nomic v1.5 pair (see module docstring)."""

    def __init__(self, encoder: Encoder) -> None:
        if not isinstance(encoder, NomicEncoder):  # pragma: no cover - chosen by trainable_for
            raise TypeError(type(encoder).__name__)
        if encoder.vision is None:
            raise text_only_refusal(encoder.info.name)
        self.encoder = encoder  # type: ignore[assignment]  # its inputs are overridden below
        self.vision: NomicVision = encoder.vision
        self.text = encoder.text
        # A private copy: the text tower is shared through the encoder cache, and LoRA is
        # injected into the module it wraps.
        self.module: nn.Module = copy.deepcopy(encoder.text.model)
        self.module.requires_grad_(False)
        self.kind = encoder.info.kind
        self.language_model = BLOCKS
        self.matryoshka_dim = encoder.matryoshka_dim
        self.tiles = encoder.tiles
        self.text_model = str((encoder.info.settings or {}).get("text_model") or self.text.name)

    def head(self) -> str | None:
        return None

    def frozen_towers(self) -> list[str]:
        return [VISION]

    def tower_module(self, name: str) -> nn.Module:
        return self.vision.model if name == VISION else super().tower_module(name)

    # -- inputs ------------------------------------------------------------------------

    def query_inputs(self, queries: list[str]) -> dict[str, torch.Tensor]:
        prefixed = [TASK_PREFIXES["search_query"] + q for q in queries]
        encoded = self.text.tokenizer(
            prefixed, padding=True, truncation=True, max_length=self.text.max_length, return_tensors="pt"
        )
        return dict(encoded)

    def page_inputs(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """Every page's views (whole page, then its tiles) as ``pixel_values`` ``(C * V, 3, s, s)``;
        with tiles, ``attention_mask`` ``(C, V)`` says every view is a page vector."""
        views: list[Image.Image] = []
        for image in images:
            image = to_rgb(image)
            views.append(image)
            if self.tiles > 1:
                views += [image.crop(box) for box in tile_boxes(*image.size, self.tiles)]
        inputs = {"pixel_values": torch.stack([self.vision.preprocess(view) for view in views])}
        if self.tiles > 1:
            inputs["attention_mask"] = torch.ones(len(images), 1 + self.tiles, dtype=torch.long)
        return inputs

    def embed(self, module: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """Queries: ``(B, D)`` through ``module`` (the text tower, LoRA-wrapped). Pages:
        ``(C, D)``, or ``(C, 1 + tiles, D)`` with tiles, through the frozen vision tower."""
        device = self.encoder.device
        if "pixel_values" in inputs:
            pixels = inputs["pixel_values"].to(device, self.encoder.dtype)
            with torch.no_grad():
                vectors = self.vision.model(pixels)  # (C * V, hidden), L2-normalised
            vectors = F.normalize(vectors[:, : self.matryoshka_dim].float(), dim=-1)
            if self.tiles > 1:
                return vectors.view(-1, 1 + self.tiles, vectors.shape[-1])  # (C, V, D)
            return vectors  # (C, D)
        moved = {k: v.to(device) for k, v in inputs.items()}
        hidden = module(**moved).last_hidden_state.float()  # (B, T, hidden)
        mask = moved["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, hidden)
        pooled = F.layer_norm(pooled, (pooled.shape[-1],))
        return F.normalize(pooled[:, : self.matryoshka_dim], dim=-1)  # (B, D)

    # -- what a finished run writes and how it loads back -------------------------------

    def base_checkpoint(self) -> tuple[str, str | None]:
        """The adapter is over the text checkpoint the index's pair was built with."""
        return self.text_model, None

    def write_merged(self, module: nn.Module, facts: CheckpointFacts, folder: Path) -> Path:
        """A full text checkpoint: ``save_pretrained`` writes the published weight names (it
        reverses transformers' renaming), with the published ``config.json`` the loader reads."""
        save: Any = module.save_pretrained
        save(str(folder), safe_serialization=True)
        for extra in ("generation_config.json",):
            (folder / extra).unlink(missing_ok=True)
        shutil.copy2(facts.model_path / MODEL_CONFIG, folder / MODEL_CONFIG)
        self.copy_processor_files(facts, folder)
        return folder

    def copy_processor_files(self, facts: CheckpointFacts, folder: Path) -> None:
        """The text model's tokenizer files (it has no image processor)."""
        output.copy_processor_files(facts, folder, source=tokenizer_folder(facts.path, facts.model_path))

    def write_untrained_base(self, peft_model: Any, facts: CheckpointFacts, folder: Path) -> Path:
        """The text tower training started from (itself a trained adapter, merged when
        loaded), as a checkpoint: the served module, which LoRA never wrapped."""
        return self.write_merged(self.text.model, facts, folder)

    def checkpointed_backbone(self) -> Any:
        return self.module  # the text tower is itself a transformers model

    def index_arguments(self, out: Path) -> list[str]:
        """The vision checkpoint stays the model; the adapter is its text partner."""
        options = {**(self.encoder.info.settings or {}), "text_model": str(out)}
        return [
            "--model",
            self.encoder.info.name,
            *(a for k, v in sorted(options.items()) for a in ("--option", f"{k}={v}")),
        ]

    def reload(self, out: str | os.PathLike[str], *, device: torch.device, dtype: torch.dtype) -> Encoder:
        """The pair with the adapter as its text tower (what ``load_encoder(vision,
        text_model=out)`` builds), assembled here outside the encoder cache: the folder is not
        finished yet, and a cached text tower would keep the unfinished folder's fingerprint."""
        from ..encoders.cache import _load

        text = _load(str(out), None, None, device, dtype, {"matryoshka_dim": self.matryoshka_dim})
        if not isinstance(text, NomicEncoder):  # pragma: no cover - the adapter is over a Nomic text model
            raise TypeError(type(text).__name__)
        settings = {**(self.encoder.info.settings or {}), "text_model": str(out)}
        info = dataclasses.replace(self.encoder.info, settings=settings, fingerprint=None)
        return NomicEncoder(
            text.text,
            self.vision,
            info=info,
            matryoshka_dim=self.matryoshka_dim,
            tiles=self.tiles,
            dtype=dtype,
        )
