"""Options an index is created with, their checks, and the creation of a new index folder.

Storage options (``storage``, ``pooling``, ``keep_thumbnails``, ``first_stage``) are recorded
in the manifest once, at creation. Opening an existing index checks the given ones against
it (:func:`check_options`). :func:`check_encoder` is shared with other backends
(mmembed-qdrant) so every backend refuses the same malformed ``EncoderInfo`` the same way.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..types import EncoderInfo, MMEmbedError
from . import files, integrity
from . import format as fmt
from .codecs import Codec
from .errors import IndexFormatError, IndexNotFoundError, IndexOptionError
from .lock import WriterLock
from .text import check_tokenizer


def storage_option(storage: str | None, dtype: str | None) -> str | None:
    """The storage to create an index with: ``storage``, or its older name ``dtype`` (which,
    as it always did, only applies at creation: an existing index is not checked against it)."""
    if storage is not None and dtype is not None and storage != dtype:
        raise MMEmbedError(
            f"storage={storage!r} and dtype={dtype!r} disagree; dtype is the older name of "
            "storage, pass only storage"
        )
    chosen = storage if storage is not None else dtype
    if chosen is not None:
        fmt.codec(chosen)
    return chosen


def check_pooling(pooling: int | None, encoder: EncoderInfo | None) -> None:
    if pooling is None:
        return
    if isinstance(pooling, bool) or not isinstance(pooling, int) or pooling not in fmt.POOLING_FACTORS:
        raise MMEmbedError(
            f"pooling must be 2, 3 or 4 (tokens per pooled vector; 1 or None: no pooling), got {pooling!r}"
        )
    if pooling > 1 and encoder is not None and encoder.kind != "multi":
        raise MMEmbedError(
            f"pooling={pooling} applies to multi-vector indexes only, but encoder {encoder.name!r} "
            f"makes one {encoder.kind} vector per page; leave pooling unset"
        )


def check_options(manifest: fmt.Manifest, path: Path, *, storage: str | None, pooling: int | None) -> None:
    """Options given when opening an existing index must equal the stored ones."""
    for option, wanted, stored in (
        ("storage", storage, manifest.dtype),
        ("pooling", pooling, manifest.pooling),
    ):
        if wanted is not None and wanted != stored:
            raise IndexOptionError(
                f"the index at {path} was created with {option}={stored!r}, not {option}={wanted!r}; "
                f"open it without {option}= (or with {option}={stored!r}), or copy it into a new "
                f"index with `mmembed migrate --from {path} --to NEW_FOLDER` to change it"
            )


def check_encoder(encoder: EncoderInfo) -> None:
    """Refuse an ``EncoderInfo`` no index can store (bad dim, kind or similarity)."""
    if not isinstance(encoder, EncoderInfo):
        raise MMEmbedError(f"encoder must be an EncoderInfo, got {type(encoder).__name__}")
    if encoder.dim <= 0:
        raise MMEmbedError(f"encoder {encoder.name!r} declares dim {encoder.dim}; it must be positive")
    if encoder.kind not in ("multi", "single"):
        raise MMEmbedError(
            f"encoder {encoder.name!r} has kind {encoder.kind!r}; expected 'multi' or 'single'"
        )
    if encoder.similarity not in ("maxsim", "dot", "cosine"):
        raise MMEmbedError(
            f"encoder {encoder.name!r} has similarity {encoder.similarity!r}; expected maxsim, dot or cosine"
        )
    if encoder.kind == "multi" and encoder.similarity != "maxsim":
        raise MMEmbedError(f"encoder {encoder.name!r} is multi-vector, so its similarity must be 'maxsim'")


def create_index(
    path: Path,
    encoder: EncoderInfo,
    *,
    dtype: str,
    pooling: int,
    keep_thumbnails: bool,
    first_stage: str | None,
    text_tokenizer: str | None = None,
) -> None:
    """Make ``path`` (missing, empty, or left by an interrupted creation) a new empty index.

    The manifest is written last, atomically: until it exists the folder is not an index and
    the next creation discards what an interrupted one left. Another process that finished
    creating the index first wins (its manifest is kept)."""
    check_encoder(encoder)
    fmt.codec(dtype)
    if text_tokenizer is not None:
        check_tokenizer(text_tokenizer)
    try:
        fmt.check_first_stage(first_stage)
    except ValueError as exc:
        raise MMEmbedError(str(exc)) from None
    if first_stage is not None and encoder.kind == "single":
        raise MMEmbedError(
            f"first_stage={first_stage!r} shortlists multi-vector pages; encoder {encoder.name!r} is "
            "single-vector (its exact scan is already one matrix product): leave first_stage=None."
        )
    if path.is_dir():
        foreign = sorted(
            n for n in os.listdir(path) if n not in fmt.OWN_NAMES and not n.startswith(f".{fmt.MANIFEST}.")
        )
        if foreign:
            raise IndexFormatError(
                f"cannot create an index in {path}: the folder already holds other files "
                f"({', '.join(foreign[:5])}). "
                + (other_backend_hint(path) or "Choose a new or empty folder.")
            )
    path.mkdir(parents=True, exist_ok=True)  # (the folder itself is the caller's choice)
    lock = WriterLock(path / fmt.LOCK_FILE, path)
    lock.acquire()
    try:
        if (path / fmt.MANIFEST).is_file():  # another process finished creating it
            return
        # Leftovers of an interrupted creation (no manifest yet) are discarded.
        for name in (fmt.DATABASE, fmt.DATABASE + "-wal", fmt.DATABASE + "-shm", fmt.DATABASE + "-journal"):
            files.remove(path, name, missing_ok=True)
        files.mkdir(path, fmt.SEGMENTS_DIR)
        for leftover in files.listdir(path, fmt.SEGMENTS_DIR):
            files.remove(path, files.in_segments(leftover))
        fmt.create_database(
            path / fmt.DATABASE,
            dim=encoder.dim,
            dtype=dtype,
            kind=encoder.kind,
            text_tokenizer=text_tokenizer,  # hybrid (issue 25): the page-text tables
        )
        fmt.fsync_dir(path)
        manifest = fmt.Manifest(
            encoder=encoder,
            dtype=dtype,
            keep_thumbnails=keep_thumbnails,
            pooling=pooling,
            first_stage=first_stage,
            text_tokenizer=text_tokenizer,
        )
        manifest.write(path)
    finally:
        lock.release()


@dataclass(frozen=True)
class OpenedFolder:
    """An index folder checked and opened: its manifest, codec and database connection."""

    manifest: fmt.Manifest
    codec: Codec
    conn: sqlite3.Connection
    folder_readonly: bool  # this process cannot write the folder: searches only
    created_now: bool  # this open made the folder an index


def open_folder(
    path: Path,
    encoder: EncoderInfo | None,
    *,
    create: bool,
    readonly: bool,
    storage: str | None,
    pooling: int | None,
    dtype: str | None,
    keep_thumbnails: bool,
    first_stage: str | None,
    text_tokenizer: str | None = None,
) -> OpenedFolder:
    """Open (creating it when missing, if allowed) the index in ``path`` after checking the
    given options and encoder against it; see :func:`~mmembed.index.open_index`."""
    create_storage = storage_option(storage, dtype)
    check_pooling(pooling, encoder)
    created_now = False
    if path.exists() and not path.is_dir():
        raise IndexFormatError(f"{path} is a file, not an index folder; give the folder the index lives in.")
    if not (path / fmt.MANIFEST).is_file():
        if readonly or not create:
            raise IndexNotFoundError(
                f"no mmembed index at {path} (no {fmt.MANIFEST}); "
                + (
                    other_backend_hint(path)
                    or "check the path, or build one first (e.g. `mmembed index <files> --index <folder>`)."
                )
            )
        if encoder is None:
            raise IndexNotFoundError(
                f"no mmembed index at {path}; to create one there, pass the EncoderInfo of the "
                "encoder that embeds the pages."
            )
        create_index(
            path,
            encoder,
            dtype=create_storage or "float16",
            pooling=pooling or 1,
            keep_thumbnails=keep_thumbnails,
            first_stage=first_stage,
            text_tokenizer=text_tokenizer,
        )
        created_now = True
    manifest = fmt.Manifest.read(path)
    if encoder is not None:
        manifest.encoder.check_compatible(encoder, index_path=str(path))
    check_pooling(pooling, manifest.encoder)
    check_options(manifest, path, storage=storage, pooling=pooling)
    codec = fmt.codec(manifest.dtype)
    db_path = path / fmt.DATABASE
    if not db_path.is_file():
        raise IndexFormatError(f"the index at {path} has no {fmt.DATABASE}; it is damaged, rebuild it.")
    # A folder this process cannot write (a mounted snapshot, a shared volume) is opened
    # read-only: it can be searched, and writes are refused with a clear error.
    folder_readonly = not readonly and not (os.access(path, os.W_OK) and os.access(db_path, os.W_OK))
    # SQLite opens these by path and follows links: refuse links before it does.
    files.check_database_files(path, fmt.DATABASE, writer=not (readonly or folder_readonly))
    with integrity.sqlite_errors(path):
        conn = fmt.connect(db_path, readonly=readonly or folder_readonly)
    try:
        fmt.check_database(conn, db_path)
        with integrity.sqlite_errors(path):
            integrity.check_recorded_shape(conn, path, manifest.encoder, codec)
            # An index older than the recorded shape: sizes must fit the manifest's rows.
            integrity.check_sizes(conn, path, manifest.encoder, codec)
    except BaseException:
        conn.close()
        raise
    return OpenedFolder(manifest, codec, conn, folder_readonly, created_now)


def other_backend_hint(path: Path) -> str:
    """What ``path`` is when it is another backend's folder given without its scheme (a
    qdrant-edge index, a Qdrant local store), and how to open it; ``""`` otherwise."""
    if (path / "mmembed.json").is_file() and (path / "shard").is_dir():
        return (
            f"it is a qdrant-edge index: open it as qdrant-edge://{path} "
            "(or add --backend qdrant-edge), which needs mmembed-qdrant[edge]."
        )
    if (path / "meta.json").is_file() and (path / "collection").is_dir():
        return f"it is a Qdrant local store: open one of its collections as qdrant://{path}/COLLECTION."
    return ""


class StoredOptions:
    """The options an open index was created with, read from its manifest; the
    :class:`~mmembed.index.local.LocalIndex` facade has them as properties."""

    manifest: fmt.Manifest
    path: Path

    @property
    def encoder(self) -> EncoderInfo:
        return self.manifest.encoder

    @property
    def storage(self) -> str:
        """The storage codec: ``float16``, ``bfloat16``, ``float32`` or ``int8``."""
        return self.manifest.dtype

    @property
    def dtype(self) -> str:
        """Older name of :attr:`storage`."""
        return self.manifest.dtype

    @property
    def pooling(self) -> int:
        """Token pooling factor applied when pages are written (1 = none)."""
        return self.manifest.pooling

    @property
    def keep_thumbnails(self) -> bool:
        return self.manifest.keep_thumbnails

    @property
    def first_stage(self) -> str | None:
        """``"binary"`` (codes on disk, shortlist then exact rerank by default) or ``None``."""
        return self.manifest.first_stage

    def check_options(self, *, storage: str | None = None, pooling: int | None = None) -> None:
        """Raise :class:`IndexOptionError` when a given option differs from the stored one."""
        storage_option(storage, None)
        check_pooling(pooling, self.encoder)
        check_options(self.manifest, self.path, storage=storage, pooling=pooling)
