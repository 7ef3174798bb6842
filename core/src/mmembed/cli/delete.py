"""``mmembed delete``: remove pages by id or by source file."""

from __future__ import annotations

import argparse
from contextlib import closing
from pathlib import Path

from .arguments import Subparsers, backend_args
from .options import location, open_existing


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("delete", help="remove pages by id or by source file")
    p.add_argument("--index", required=True)
    backend_args(p)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--id", action="append", help="page id (repeatable)")
    group.add_argument("--source", help="remove every page of this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with closing(open_existing(location(args), readonly=False)) as index:
        if args.id:
            deleted = index.delete(ids=args.id)
        else:
            source = str(Path(args.source).resolve()) if Path(args.source).exists() else args.source
            deleted = index.delete(where={"source": {"$in": sorted({source, args.source})}})
    print(f"deleted {deleted} page(s)")
    return 0
