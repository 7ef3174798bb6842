"""``mmembed serve``: a local search page and JSON API over an index (see :mod:`mmembed.serve`)."""

from __future__ import annotations

import argparse
import sys

from .arguments import Subparsers, model_args
from .options import encoder_options
from .output import safe


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("serve", help="a local search page and JSON API over an index")
    p.add_argument("--index", required=True)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-k", type=int, default=50, help="largest k a request may ask for (default 50)")
    p.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="also answer requests whose Host header is NAME (repeatable; default: the bound "
        "address and loopback names only, against DNS rebinding)",
    )
    model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..serve import serve

    print(f"serving {safe(args.index)} on http://{args.host}:{args.port}/ (Ctrl+C to stop)", file=sys.stderr)
    serve(
        args.index,
        host=args.host,
        port=args.port,
        model=args.model,
        max_k=args.max_k,
        allowed_host=args.allowed_host or (),
        **encoder_options(args),
    )
    return 0
