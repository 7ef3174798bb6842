"""On-disk layout of an index folder (documented in ``docs/index-format.md``).

::

    <folder>/
      manifest.json          format version, encoder, storage codec, pooling (written once, atomically)
      index.sqlite           page records, metadata, thumbnails, segment bookkeeping (WAL mode)
      index.sqlite-wal/-shm  SQLite's write-ahead log (present while the index is in use)
      segments/00000001.f16  raw little-endian rows, one per vector (see codecs.py), append-only
      lock                   writer lock (``flock``), holds the writer's pid

No pickle: JSON, SQLite and raw arrays only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..types import EncoderInfo, MMEmbedError
from . import safe_files
from .codecs import CODECS, Codec, codec
from .errors import IndexFormatError, IndexStaleWarning

FORMAT_NAME = "mmembed-index"
FORMAT_VERSION = 2
"""Bump on any change older readers would misread; readers refuse newer versions. Version 2
added int8 storage and token pooling; an index using neither is still written as version 1
so that older mmembed-core releases keep reading it."""

MANIFEST = "manifest.json"
DATABASE = "index.sqlite"
SEGMENTS_DIR = "segments"
LOCK_FILE = "lock"

NO_SEGMENT = 0
"""``pages.seg_id`` of a page stored without vectors (real segment ids start at 1)."""

# Files an interrupted creation may leave behind: such a folder can be created again.
OWN_NAMES = {
    MANIFEST,
    DATABASE,
    DATABASE + "-wal",
    DATABASE + "-shm",
    DATABASE + "-journal",
    SEGMENTS_DIR,
    LOCK_FILE,
}


# Older names of the codec registry (storage used to mean a float dtype only).
StorageDtype = Codec
DTYPES = CODECS
storage_dtype = codec

POOLING_FACTORS = range(1, 5)
"""Token pooling factors an index can record (1 = no pooling)."""


@dataclass(frozen=True)
class Manifest:
    """The immutable facts of an index, stored in ``manifest.json``."""

    encoder: EncoderInfo
    dtype: str  # the storage codec's name (the key predates int8, hence "dtype")
    keep_thumbnails: bool
    format_version: int = 0  # 0: the lowest version that can describe this index
    pooling: int = 1  # token pooling factor applied at write time (1 = none)
    # "binary": sign-bit codes beside the segments, shortlist first; "hnsw": a graph over pooled
    # page vectors. Older readers ignore it and scan exactly, so it needs no version bump.
    first_stage: str | None = None
    # FTS5 tokenizer of the page-text tables (see text.py); None: an index made before text
    # search (no text tables until `--backfill-text`). Older readers ignore it: no version bump.
    text_tokenizer: str | None = None

    def __post_init__(self) -> None:
        if self.format_version == 0:
            needs_v2 = self.dtype == "int8" or self.pooling > 1
            object.__setattr__(self, "format_version", 2 if needs_v2 else 1)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "encoder": self.encoder.to_dict(),
            "dtype": self.dtype,
            "pooling": self.pooling,
            "keep_thumbnails": self.keep_thumbnails,
        }
        if self.first_stage is not None:  # absent: the exact scan, as in older manifests
            data["first_stage"] = self.first_stage
        if self.text_tokenizer is not None:
            data["text"] = {"tokenizer": self.text_tokenizer}
        return data

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexFormatError(
                f"cannot read the index manifest {path}: {exc}. The folder is damaged or not an "
                "mmembed index; rebuild the index into a new folder."
            ) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise IndexFormatError(f'{path} is not an mmembed index manifest (no "format": "{FORMAT_NAME}").')
        version = data.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise IndexFormatError(f"{path} has an invalid format_version {version!r}; rebuild the index.")
        if version > FORMAT_VERSION:
            raise IndexFormatError(
                f"the index at {folder} uses format version {version}, but this mmembed-core reads "
                f"versions up to {FORMAT_VERSION}. Upgrade mmembed-core (pip install -U mmembed-core)."
            )
        try:
            encoder = EncoderInfo.from_dict(data["encoder"])
            raw_dim = data["encoder"].get("dim")
            if not isinstance(raw_dim, int) or isinstance(raw_dim, bool) or raw_dim <= 0:
                raise ValueError(f"encoder dim {data['encoder'].get('dim')!r} is not a positive integer")
            if encoder.kind not in ("multi", "single") or encoder.similarity not in (
                "maxsim",
                "dot",
                "cosine",
            ):
                raise ValueError(f"kind {encoder.kind!r} / similarity {encoder.similarity!r} are unknown")
            if (encoder.kind == "multi") != (encoder.similarity == "maxsim"):
                raise ValueError(f"a {encoder.kind} encoder cannot use similarity {encoder.similarity!r}")
            dtype = data["dtype"]
            if not isinstance(dtype, str):
                raise TypeError(f"dtype {dtype!r} is not a string")
            codec(dtype)
            pooling = data.get("pooling", 1)
            if isinstance(pooling, bool) or pooling not in POOLING_FACTORS:
                raise ValueError(f"pooling {pooling!r} is not one of {list(POOLING_FACTORS)}")
            if pooling > 1 and encoder.kind != "multi":
                raise ValueError("token pooling applies to multi-vector indexes only")
            keep = bool(data.get("keep_thumbnails", True))
            first_stage = check_first_stage(data.get("first_stage"))
            text_tokenizer = _text_tokenizer(data.get("text"))
        except (KeyError, TypeError, ValueError, AttributeError, MMEmbedError) as exc:
            raise IndexFormatError(
                f"the index manifest {path} is incomplete or invalid ({exc}); rebuild the index."
            ) from exc
        return cls(
            encoder=encoder,
            dtype=dtype,
            keep_thumbnails=keep,
            format_version=version,
            pooling=pooling,
            first_stage=first_stage,
            text_tokenizer=text_tokenizer,
        )

    def write(self, folder: Path) -> None:
        write_json_atomic(folder / MANIFEST, self.to_json())


def _text_tokenizer(value: object) -> str | None:
    from .text import check_tokenizer

    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"text {value!r} is not an object")
    return check_tokenizer(value.get("tokenizer"))


FIRST_STAGES = ("binary", "hnsw", "plaid")
"""``first_stage`` values besides ``None`` (the exact scan only)."""


def check_first_stage(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value in FIRST_STAGES):
        return value
    raise ValueError(f"unknown first_stage {value!r}; choose one of {', '.join(FIRST_STAGES)} or None")


def fsync_dir(folder: Path) -> None:
    """Make a create/rename/unlink inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any], *, root: Path | None = None) -> None:
    """Write to a temporary file, fsync it, rename it over ``path``, fsync the folder.

    ``root`` (default: ``path``'s folder) is the index folder: below it no link is followed,
    so a link planted at the temporary name, at ``path`` or on the way is never written through.
    """
    root = path.parent if root is None else root
    rel = path.relative_to(root).as_posix()
    tmp = (path.parent / f".{path.name}.{os.getpid()}.tmp").relative_to(root).as_posix()
    try:
        fd = safe_files.create_new(root, tmp)
        with open(fd, "w", encoding="utf-8", closefd=True) as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        safe_files.rename(root, tmp, rel)
    finally:
        with contextlib.suppress(FileNotFoundError):
            safe_files.remove(root, tmp)
    fsync_dir(path.parent)


SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
CREATE TABLE segments (
    seg_id INTEGER PRIMARY KEY,
    file TEXT NOT NULL UNIQUE,
    committed_rows INTEGER NOT NULL
);
CREATE TABLE pages (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    page INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL,
    seg_id INTEGER NOT NULL,
    vec_offset INTEGER NOT NULL,
    n_vectors INTEGER NOT NULL
);
CREATE INDEX pages_source ON pages(source);
CREATE INDEX pages_location ON pages(seg_id, vec_offset);
CREATE TABLE thumbnails (
    row INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TRIGGER pages_drop_thumbnail AFTER DELETE ON pages BEGIN
    DELETE FROM thumbnails WHERE row = OLD.row;
END;
INSERT INTO meta(key, value) VALUES ('generation', 0), ('next_seg_id', 1);
"""


def connect(db_path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are explicit ``BEGIN``/``COMMIT``.

    A reader opens the file ``mode=ro``, so it never writes (a mounted snapshot or a shared
    read-only volume can be searched). When the folder is not writable and SQLite cannot
    create its shared-memory file there, no writer can exist either, so the database is
    opened ``immutable`` (no locking, no WAL index).
    """
    if readonly:
        conn = _connect_readonly(db_path)
    else:
        conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA synchronous=FULL")  # a COMMIT is durable once it returns
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _connect_readonly(db_path: Path) -> sqlite3.Connection:
    uri = db_path.absolute().as_uri()
    conn = sqlite3.connect(
        f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False, timeout=30.0
    )
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(db_path.parent, os.W_OK) and os.access(db_path, os.W_OK):
            raise  # a writable folder: the problem is elsewhere, report it
    _warn_unreadable_wal(db_path)
    conn = sqlite3.connect(
        f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA query_only=ON")
    return conn


WAL_HEADER_BYTES = 32


def _warn_unreadable_wal(db_path: Path) -> None:
    """An immutable open ignores the write-ahead log: say so when it holds frames (batches
    committed by a writer whose log was never checkpointed, copied without its ``-shm``)."""
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        size = wal.stat().st_size
    except OSError:
        return
    if size > WAL_HEADER_BYTES:
        warnings.warn(
            f"the index at {db_path.parent} is read-only and its {wal.name} holds {size} bytes of "
            f"committed changes that cannot be read without {db_path.name}-shm and write access: "
            "searches see the index as it was before them (recent pages may be missing). Open it "
            "once where the folder is writable (that folds the log into the index), or copy the "
            "folder somewhere writable.",
            IndexStaleWarning,
            stacklevel=4,
        )


def create_database(
    db_path: Path, *, dim: int, dtype: str, kind: str, text_tokenizer: str | None = None
) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise IndexFormatError(
                f"SQLite refused WAL mode for {db_path} (got {mode!r}); the index needs a local "
                "file system that supports shared memory (not a network share)."
            )
        conn.execute("PRAGMA synchronous=FULL")
        # The row shape is recorded twice (here and in the manifest) so an edit of either is
        # caught; both values are validated (an int, a CODECS key), so they can be inlined.
        if kind not in ("multi", "single"):
            raise MMEmbedError(f"unknown encoder kind {kind!r}")
        shape = (
            f"INSERT INTO meta(key, value) VALUES ('dim', {int(dim)}), "
            f"('dtype', '{codec(dtype).name}'), ('kind', '{kind}');"
        )
        from .text import schema as text_schema

        texts = text_schema(text_tokenizer) if text_tokenizer is not None else ""
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{SCHEMA}\n{texts}\n{shape}\nPRAGMA user_version={SCHEMA_VERSION};\nCOMMIT;"
        )
    finally:
        conn.close()


def check_database(conn: sqlite3.Connection, db_path: Path) -> None:
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise IndexFormatError(
            f"{db_path} is not a readable SQLite database ({exc}); rebuild the index."
        ) from exc
    if version > SCHEMA_VERSION:
        raise IndexFormatError(
            f"{db_path} has schema version {version}, newer than this mmembed-core reads "
            f"({SCHEMA_VERSION}). Upgrade mmembed-core."
        )
    missing = {"meta", "segments", "pages", "thumbnails"} - tables
    if version < 1 or missing:
        raise IndexFormatError(
            f"{db_path} is not a complete mmembed index database (missing {sorted(missing)}); "
            "rebuild the index into a new folder."
        )
