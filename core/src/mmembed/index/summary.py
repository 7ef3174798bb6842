"""What an index folder holds (``mmembed info``), read from its manifest and database only.

:meth:`LocalIndex.info <mmembed.index.LocalIndex.info>` and :func:`folder_info` (the CLI's
path: no torch, no memory maps) build the same summary with :func:`summarize`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from ..types import EncoderInfo
from . import format as fmt
from . import integrity
from .options import open_folder
from .text import count_with_text, has_text_tables


def summarize(conn: sqlite3.Connection, path: Path, manifest: fmt.Manifest) -> dict[str, Any]:
    """Summary of the index at ``path``: sizes, encoder, storage format, pages with text. ``conn`` is inside
    a read transaction, so the counts describe one committed state."""
    pages, vectors, scored = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(n_vectors), 0), COUNT(NULLIF(n_vectors, 0)) FROM pages"
    ).fetchone()
    committed, segments = conn.execute(
        "SELECT COALESCE(SUM(committed_rows), 0), COUNT(*) FROM segments"
    ).fetchone()
    sources = conn.execute("SELECT COUNT(DISTINCT source) FROM pages").fetchone()[0]
    text_store = manifest.text_tokenizer is not None and has_text_tables(conn)  # hybrid (issue 25)
    with_text = count_with_text(conn) if text_store else 0
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    enc = manifest.encoder
    row_bytes = fmt.codec(manifest.dtype).row_bytes(enc.dim)
    return {
        "path": str(path),
        "format_version": manifest.format_version,
        "pages": int(pages),
        "sources": int(sources),
        "vectors": int(vectors),
        "reclaimable_vectors": int(committed) - int(vectors),
        "segments": int(segments),
        "encoder": enc.to_dict(),
        "encoder_name": enc.name,
        "encoder_revision": enc.revision,
        "family": enc.family,
        "kind": enc.kind,
        "similarity": enc.similarity,
        "dim": enc.dim,
        "dtype": manifest.dtype,
        "storage": manifest.dtype,
        "pooling": manifest.pooling,
        # Vector bytes as stored by the codec (int8: values and scale), per live page with vectors.
        "bytes_per_token": row_bytes,
        "bytes_per_page": round(int(vectors) * row_bytes / int(scored)) if scored else 0,
        "keep_thumbnails": manifest.keep_thumbnails,
        "first_stage": manifest.first_stage,
        "pages_with_text": with_text,
        "text_tokenizer": manifest.text_tokenizer,
        "bytes": int(size),
    }


def folder_info(path: str | os.PathLike[str]) -> tuple[dict[str, Any], EncoderInfo]:
    """``(LocalIndex.info(), encoder)`` of the existing index in folder ``path``, opened
    read-only with the same checks (and errors) as ``open_index(path, readonly=True)``,
    without importing torch: what ``mmembed info`` prints."""
    folder = Path(path).expanduser().absolute()
    opened = open_folder(
        folder,
        None,
        create=False,
        readonly=True,
        storage=None,
        pooling=None,
        dtype=None,
        keep_thumbnails=True,
        first_stage=None,
    )
    conn = opened.conn
    try:
        with integrity.sqlite_errors(folder):
            conn.execute("BEGIN")
            try:
                info = summarize(conn, folder, opened.manifest)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
    finally:
        conn.close()
    return info, opened.manifest.encoder
