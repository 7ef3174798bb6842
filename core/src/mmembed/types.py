"""Plain data types shared by every part of mmembed.

Embeddings are always 2-D float tensors of shape ``(n_vectors, dim)``: a multi-vector
model returns one row per token / patch, a single-vector (dense) model returns one row.
That single convention lets the index and scorer treat both kinds the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

Kind = Literal["multi", "single"]
Similarity = Literal["maxsim", "dot", "cosine"]
Storage = Literal["float16", "bfloat16", "float32", "int8"]
STORAGE_NAMES: tuple[Storage, ...] = get_args(Storage)
"""How an index folder stores vectors (one codec each in :mod:`mmembed.index.codecs`); named
here so that the command line offers them without importing the codecs (and torch)."""


def page_id(content_hash: str, page: int) -> str:
    """Stable id of a page: the same bytes and page number always give the same id."""
    return f"{content_hash[:24]}-p{page}"


class MMEmbedError(Exception):
    """Base class of every error mmembed raises on purpose."""


class EncoderMismatchError(MMEmbedError):
    """An index was opened with an encoder whose vectors it cannot compare."""


@dataclass(frozen=True)
class EncoderInfo:
    """What an index must know about the encoder that produced its vectors."""

    name: str
    """Checkpoint id or local folder the weights came from."""
    family: str
    """Registry family id, e.g. ``colqwen2_5``."""
    kind: Kind
    dim: int
    similarity: Similarity
    revision: str | None = None
    settings: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)
    """Encoder options that change the vectors (e.g. a Matryoshka size, a fusion mode), as
    JSON-ready values. Two encoders with different settings make incomparable vectors."""
    fingerprint: str | None = field(default=None, compare=False)
    """The checkpoint's content (:func:`mmembed.fingerprint.checkpoint_fingerprint`: config and
    weights), set by ``load_encoder`` for local folders and Hub snapshots. Two encoders with the
    same fingerprint are one model wherever their folders are: :meth:`check_compatible` then
    ignores ``name`` / ``revision`` and the settings that name checkpoints."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.settings:  # indexes written before settings existed stay byte-identical
            del data["settings"]
        if self.fingerprint is None:  # likewise for indexes written before fingerprints
            del data["fingerprint"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderInfo:
        return cls(
            name=str(data["name"]),
            family=str(data["family"]),
            kind=data["kind"],
            dim=int(data["dim"]),
            similarity=data["similarity"],
            revision=data.get("revision"),
            settings=dict(data.get("settings") or {}),
            fingerprint=data.get("fingerprint"),
        )

    def same_content(self, other: EncoderInfo) -> bool | None:
        """Whether the two checkpoints hold the same config and weights: ``None`` when that is
        unknown (an encoder without a fingerprint, e.g. an index written before fingerprints
        whose recorded folder is gone). For such an index, a recorded folder that still exists
        is fingerprinted now."""
        mine = self.fingerprint
        if mine is None and other.fingerprint is not None and self.name != other.name:
            from .fingerprint import checkpoint_fingerprint, combine_fingerprints

            mine = checkpoint_fingerprint(self.name)
            partner = self.settings.get("text_model")
            if mine is not None and isinstance(partner, str):  # a Nomic vision + text pair
                mine = combine_fingerprints([mine, checkpoint_fingerprint(partner)])
        if mine is None or other.fingerprint is None:
            return None
        return mine == other.fingerprint

    def check_compatible(self, other: EncoderInfo, *, index_path: str = "") -> None:
        """Raise :class:`EncoderMismatchError` when ``other``'s vectors cannot be
        searched against vectors made by ``self``. A checkpoint is identified by its content
        when both fingerprints are known (a copied or moved folder is the same model, changed
        weights at the same path are not), else by ``name`` and ``revision``."""
        where = f" at {index_path}" if index_path else ""
        same = self.same_content(other)
        for attr in ("kind", "dim", "similarity", "family", "name", "revision", "settings"):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            note = ""
            if same is not None and attr in ("name", "revision"):
                if same:
                    continue  # the same content under another path (or Hub revision label)
                # Content decides: other weights or config under the same name are refused too.
                mine, theirs = self.fingerprint or "content of " + self.name, other.fingerprint
                note = " (checkpoint content: config.json and weights)"
            elif same and attr == "settings":
                mine, theirs = _without_paths(mine), _without_paths(theirs)
            if mine != theirs:
                raise EncoderMismatchError(
                    f"the index{where} was built with encoder {self.name!r} "
                    f"({self.family}, {self.kind}, dim {self.dim}, {self.similarity}, "
                    f"revision {self.revision}) but encoder {other.name!r} ({other.family}, "
                    f"{other.kind}, dim {other.dim}, {other.similarity}, revision "
                    f"{other.revision}) was given ({attr}: {mine!r} != {theirs!r}){note}. "
                    "Search with the encoder the index was built with, or re-index into a "
                    "new folder."
                )


CHECKPOINT_SETTINGS = frozenset({"text_model"})
"""Settings that name a checkpoint (a folder or id): covered by the fingerprint instead."""


def _without_paths(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in CHECKPOINT_SETTINGS}


@dataclass(frozen=True)
class PageRecord:
    """One stored page (or any document) of an index, without its vectors."""

    id: str
    source: str
    """Path (or URI) of the file the page came from."""
    page: int
    """1-based page number inside ``source``."""
    content_hash: str
    """Hash of the source file's bytes (hex sha256)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    thumbnail: bytes | None = None
    """Small JPEG/PNG of the page, if the index keeps thumbnails."""
    n_vectors: int = 0


@dataclass(frozen=True)
class SearchHit:
    """One ranked result of a search."""

    id: str
    score: float
    record: PageRecord

    @property
    def source(self) -> str:
        return self.record.source

    @property
    def page(self) -> int:
        return self.record.page

    @property
    def metadata(self) -> dict[str, Any]:
        return self.record.metadata

    @property
    def time_span(self) -> tuple[float, float] | None:
        """``(start, end)`` seconds for an audio / video segment, ``None`` for a page."""
        start, end = self.record.metadata.get("start"), self.record.metadata.get("end")
        if isinstance(start, (int, float)) and isinstance(end, (int, float)):
            return float(start), float(end)
        return None

    def to_json(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "score": self.score,
            "source": self.record.source,
            "page": self.record.page,
            "metadata": self.record.metadata,
        }
        span = self.time_span
        if span is not None:  # a media hit says where in the recording, as a page number does
            data["start"], data["end"] = span
        return data


@dataclass(frozen=True, eq=False)
class MediaClip:
    """A decoded stretch of a recording: what audio / video encoders take.

    ``audio`` is ``(samples,)`` float32 mono in [-1, 1] at ``sample_rate`` Hz, or ``None`` for
    video without sound; ``frames`` are RGB frames sampled at ``fps`` (empty for audio only);
    ``start`` / ``end`` are seconds inside the source recording.
    """

    audio: np.ndarray | None = None
    sample_rate: int = 16_000
    frames: tuple[Image.Image, ...] = ()
    fps: float = 0.0
    start: float = 0.0
    end: float = 0.0

    @property
    def has_audio(self) -> bool:
        return self.audio is not None and self.audio.size > 0

    @property
    def has_video(self) -> bool:
        return len(self.frames) > 0
