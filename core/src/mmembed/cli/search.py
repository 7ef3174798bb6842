"""``mmembed search``: rank the pages of an index for a query (``--json``, ``--explain``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .arguments import Subparsers, backend_args, model_args, positive_int
from .errors import CLIError
from .options import encoder_options, location, model_name, open_existing, parse_filters
from .output import safe, where


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("search", help="rank the pages of an index for a query")
    p.add_argument("query")
    p.add_argument("--index", required=True, help="index folder or qdrant://host:6333/collection")
    backend_args(p)
    p.add_argument("-k", type=int, default=5, help="number of pages (default 5)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE", help="metadata equality (repeatable)")
    p.add_argument("--where", help='a JSON filter, e.g. \'{"page": {"$lte": 3}}\'')
    p.add_argument("--json", action="store_true")
    p.add_argument("--explain", metavar="DIR", help="write a similarity overlay PNG per hit into DIR")
    p.add_argument(
        "--exact", action="store_true", help="score every page exactly (skip the index's first stage)"
    )
    p.add_argument(
        "--candidates",
        type=positive_int,
        metavar="C",
        help="pages the first stage shortlists for exact scoring (default 200)",
    )
    p.add_argument(
        "--tokens",
        type=int,
        nargs="+",
        metavar="I",
        help="with --explain: also one overlay per query token I",
    )
    model_args(p, default="the model the index was built with")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..encoders import load_encoder
    from ..retrieve import Retriever

    filters = parse_filters(args.filter or [], args.where)
    index = open_existing(location(args), readonly=True)
    try:
        encoder = load_encoder(model_name(args, index.encoder.name), **encoder_options(args, index.encoder))
        retriever = Retriever(index, encoder)
        shortlist: dict[str, Any] = {}
        if args.exact:
            shortlist["exact"] = True
        if args.candidates is not None:
            shortlist["candidates"] = args.candidates
        if shortlist and not hasattr(index, "first_stage"):
            raise CLIError("--exact and --candidates apply to an index folder, not to a server backend")
        hits = retriever.search(args.query, k=args.k, where=filters, **shortlist)
        if args.tokens and not args.explain:
            raise CLIError("--tokens picks the overlays written by --explain DIR; add --explain DIR")
        overlays: list[Path] = []
        vectors_from: set[str] = set()
        for rank, hit in enumerate(hits if args.explain else [], 1):
            stem = f"{rank:02d}-{Path(hit.source).stem}-p{hit.page}"
            explanation = retriever.explain(args.query, hit)
            vectors_from.add(explanation.vectors_from)
            overlays += explanation.save(args.explain, stem, tokens=args.tokens)
    finally:
        index.close()
    if args.json:
        print(json.dumps([hit.to_json() for hit in hits], indent=2))
        return 0
    if not hits:
        print("no matching pages or segments")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>3}. {hit.score:10.4f}  {safe(hit.source)}  {where(hit)}  [{safe(hit.id)}]")
    if overlays:
        how = " and ".join(sorted(vectors_from))  # "stored" vectors, or the page "re-encoded"
        print(f"wrote {len(overlays)} similarity overlay(s) to {safe(args.explain)} ({how} page vectors)")
    return 0
