"""``mmembed migrate``: copy an index into another backend (or storage) without re-encoding."""

from __future__ import annotations

import argparse
from contextlib import closing
from typing import TYPE_CHECKING, Any

from .arguments import Subparsers, storage_args
from .errors import CLIError
from .options import open_existing, storage_options
from .output import safe

if TYPE_CHECKING:
    from ..types import PageRecord


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("migrate", help="copy an index into another backend without re-encoding")
    p.add_argument("--from", dest="source", required=True, metavar="INDEX", help="index folder or URI")
    p.add_argument(
        "--to", dest="target", required=True, metavar="INDEX", help="e.g. qdrant://host:6333/pages"
    )
    p.add_argument("--batch-size", type=int, default=256, help="pages per write (default 256)")
    storage_args(p, "a new --to folder (default: the source's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Copy every page of an index (vectors, records, thumbnails) into another, without
    re-encoding; an upsert by page id, so a re-run after an interruption finishes the job.
    A new folder keeps the source's storage and pooling (``--storage`` converts; ``--pool``
    pools an unpooled source)."""
    from ..index import open_backend, uri_scheme

    source = open_existing(args.source, readonly=True)
    with closing(source):
        target_options = storage_options(args, args.target)
        pooled = int(getattr(source, "pooling", 1))  # the source's vectors are already pooled
        if pooled > 1:
            if args.pool is not None and args.pool != pooled:
                raise CLIError(
                    f"{args.source} holds vectors pooled by {pooled}; they cannot be pooled again or "
                    f"unpooled: drop --pool (the copy keeps pooling={pooled}) or re-index the documents"
                )
            if uri_scheme(args.target) is None:
                target_options["pooling"] = pooled  # checked against an existing target too
        if uri_scheme(args.target) is None and "storage" not in target_options:
            target_options["dtype"] = getattr(source, "storage", None)  # a new copy keeps the codec
        with closing(open_backend(args.target, encoder=source.encoder, **target_options)) as target:
            copied, total = _copy_pages(args, source, target, pooled=pooled > 1)
    print(
        f"copied {copied} page(s) from {safe(args.source)} to {safe(args.target)}; it now holds {total} page(s)"
    )
    return 0


def _copy_pages(args: argparse.Namespace, source: Any, target: Any, *, pooled: bool) -> tuple[int, int]:
    from ..index import PageInput

    # Vectors of a pooled source go in as they are (pooled=True), into any embedded index.
    upsert_options = {"pooled": True} if pooled and hasattr(target, "pooling") else {}
    copied = 0
    batch: list[PageRecord] = []

    def flush() -> None:
        nonlocal copied
        vectors = source.get_embeddings([r.id for r in batch])
        pages = [
            PageInput(rows, r.source, r.page, r.content_hash, r.metadata, r.thumbnail, id=r.id)
            for r, rows in zip(batch, vectors, strict=True)
            if rows is not None  # deleted meanwhile
        ]
        copied += len(target.upsert(pages, **upsert_options))
        batch.clear()

    for record in source.records():
        batch.append(record)
        if len(batch) >= args.batch_size:
            flush()
    if batch:
        flush()
    return copied, int(target.count())
