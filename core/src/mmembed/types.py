"""Plain data types shared by every part of mmembed.

Embeddings are always 2-D float tensors of shape ``(n_vectors, dim)``: a multi-vector
model returns one row per token / patch, a single-vector (dense) model returns one row.
That single convention lets the index and scorer treat both kinds the same way.
"""

from __future__ import annotations

import logging
import re
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


logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 200_000
"""Most characters of text stored per page (a dense printed page holds ~5 000); longer text
layers are cut there, and the cut is logged naming the page."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(text: str | bytes | None, *, where: str = "a page") -> str:
    """Text fit to store: invalid UTF-8 replaced, control characters (except newline and
    tab) turned into spaces, at most :data:`MAX_TEXT_CHARS` characters (a longer text is cut
    and the cut logged, naming ``where``).

    >>> clean_text(b"caf\\xc3\\xa9 \\xff\\x00ok")
    'café \ufffd ok'
    """
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = _SURROGATE.sub("\ufffd", text)  # lone surrogates cannot be encoded for SQLite
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    if len(text) > MAX_TEXT_CHARS:
        logger.warning(
            "%s has a text layer of %d characters; only the first %d are stored for text search",
            where,
            len(text),
            MAX_TEXT_CHARS,
        )
        text = text[:MAX_TEXT_CHARS]
    return text if text.strip() else ""


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


CORE_METADATA_PREFIX = "_mmembed_"
"""Metadata keys core keeps for itself on a page (e.g. ``_mmembed_patch_layout``): stored with
the page, never shown on a user-facing path (search hits, ``--json``, the web API, adapters)."""


def user_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` without core's own keys (:data:`CORE_METADATA_PREFIX`)."""
    if not any(key.startswith(CORE_METADATA_PREFIX) for key in metadata):
        return metadata
    return {k: v for k, v in metadata.items() if not k.startswith(CORE_METADATA_PREFIX)}


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


SearchMode = Literal["visual", "text", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = ("visual", "text", "hybrid")


@dataclass(frozen=True)
class SideMatch:
    """How one side of a text or hybrid search ranked a hit."""

    side: Literal["visual", "text"]
    rank: int
    """1-based rank of the hit in that side's list."""
    score: float
    """That side's own score: MaxSim / dot / cosine for ``visual``, ``-bm25()`` for ``text``."""

    def to_json(self) -> dict[str, Any]:
        return {"side": self.side, "rank": self.rank, "score": self.score}


@dataclass(frozen=True)
class SearchHit:
    """One ranked result of a search."""

    id: str
    score: float
    record: PageRecord
    matches: tuple[SideMatch, ...] = ()
    """Text and hybrid searches: which side(s) found the hit, with its rank and score on each
    (a side that did not find it is absent). Empty for a visual search."""

    @property
    def found_by(self) -> tuple[str, ...]:
        """The sides that found the hit, e.g. ``("visual", "text")`` (empty for a visual search)."""
        return tuple(m.side for m in self.matches)

    @property
    def source(self) -> str:
        return self.record.source

    @property
    def page(self) -> int:
        return self.record.page

    @property
    def metadata(self) -> dict[str, Any]:
        """The page's metadata as the user gave it: keys core keeps for itself
        (``_mmembed_*``, e.g. the patch layout) stay on :attr:`record` only."""
        return user_metadata(self.record.metadata)

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
            "metadata": self.metadata,
        }
        span = self.time_span
        if span is not None:  # a media hit says where in the recording, as a page number does
            data["start"], data["end"] = span
        if self.matches:  # text / hybrid only: visual output is unchanged
            data["matches"] = [m.to_json() for m in self.matches]
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
