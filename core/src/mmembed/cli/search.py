"""``mmembed search``: rank the pages of an index for a query (``--json``, ``--explain``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .arguments import Subparsers, backend_args, model_args, positive_int
from .errors import UsageError
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
    p.add_argument(
        "--mode",
        choices=("visual", "text", "hybrid"),
        default="visual",
        help="rank by the page images' vectors (visual, default), the pages' own text layer (text, bm25) "
        "or both fused (hybrid)",
    )
    fusion = p.add_mutually_exclusive_group()
    fusion.add_argument(
        "--alpha",
        type=float,
        metavar="A",
        help="with --mode hybrid: fuse by A * visual + (1 - A) * text of normalised scores (0..1)",
    )
    fusion.add_argument(
        "--rrf-k",
        type=positive_int,
        metavar="K",
        help="with --mode hybrid: reciprocal rank fusion's constant (default 60)",
    )
    model_args(p, default="the model the index was built with")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..encoders import load_encoder
    from ..index.errors import FilterError
    from ..index.filters import compile_filter
    from ..index.fusion import search_options
    from ..retrieve import Retriever
    from ..types import MMEmbedError

    # What the command line says is checked before the index and the model are opened.
    if not args.query.strip():
        raise UsageError(f"the query is empty ({args.query!r}): give the text to search for")
    if args.tokens and not args.explain:
        raise UsageError("--tokens picks the overlays written by --explain DIR; add --explain DIR")
    if args.mode != "hybrid" and (args.alpha is not None or args.rrf_k is not None):
        raise UsageError("--alpha and --rrf-k tune --mode hybrid; add --mode hybrid")
    try:
        search_options(args.mode, args.alpha, args.rrf_k)  # the fusion parameters' one rule
    except MMEmbedError as exc:
        raise UsageError(f"--mode / --alpha / --rrf-k: {exc}") from exc
    filters = parse_filters(args.filter or [], args.where)
    encoder_options(args)  # a malformed --option, before the index is looked for
    try:
        compile_filter(filters)  # the filter language every backend shares
    except FilterError as exc:
        raise UsageError(f"--filter / --where: {exc}") from exc
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
            raise UsageError("--exact and --candidates apply to an index folder, not to a server backend")
        modes: dict[str, Any] = {}
        if args.mode != "visual":
            modes = {"mode": args.mode, "alpha": args.alpha, "rrf_k": args.rrf_k}
        hits = retriever.search(args.query, k=args.k, where=filters, **modes, **shortlist)
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
        sides = "  " + " ".join(f"{m.side}#{m.rank}" for m in hit.matches) if hit.matches else ""
        print(f"{rank:>3}. {hit.score:10.4f}  {safe(hit.source)}  {where(hit)}  [{safe(hit.id)}]{sides}")
    if overlays:
        how = " and ".join(sorted(vectors_from))  # "stored" vectors, or the page "re-encoded"
        print(f"wrote {len(overlays)} similarity overlay(s) to {safe(args.explain)} ({how} page vectors)")
    return 0
