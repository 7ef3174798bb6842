"""``mmembed info``: what an index holds (pages, model, storage, first stage, size)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import Subparsers, backend_args
from .options import folder_summary, location, open_existing
from .output import safe


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("info", help="what an index holds")
    p.add_argument("--index", required=True)
    backend_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..index.locations import uri_scheme

    where = location(args)
    if uri_scheme(where) is None:  # a folder: read its manifest and database, torch never loads
        info, enc = folder_summary(where)
    else:  # another backend (qdrant://, qdrant-edge://) imports what it needs
        index = open_existing(where, readonly=True)
        try:
            info = index.info()
        finally:
            index.close()
        enc = index.encoder
    summary = {
        "path": where if "://" in where else str(Path(where).resolve()),
        "pages": info["pages"],
        "sources": info.get("sources"),
        "model": enc.name,
        "revision": enc.revision,
        "family": enc.family,
        "kind": enc.kind,
        "similarity": enc.similarity,
        "dim": enc.dim,
        "storage": info.get("storage", info.get("dtype")),
        "pooling": info.get("pooling"),
        "bytes_per_page": info.get("bytes_per_page"),
        "bytes_per_token": info.get("bytes_per_token"),
        "first_stage": info.get("first_stage") or "none (exact scan)",
        "pages_with_text": info.get("pages_with_text"),
        "text_tokenizer": info.get("text_tokenizer")
        or ("none (mmembed index --backfill-text adds it)" if "text_tokenizer" in info else None),
        "bytes": info.get("bytes"),
        "format_version": info.get("format_version"),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>15}: {safe(value)}")
    return 0
