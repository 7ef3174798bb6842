"""``mmembed models``: the supported model families and their known checkpoints.

A fresh process prints ``models.json`` beside this module, the registry's listing written by
``tools/model_listing.py`` (a test keeps it equal to :func:`mmembed.encoders.list_models`):
the family modules import torch, and listing them should not take seconds. In a process that
has already imported the encoders (a program calling ``main(["models"])`` after registering
its own family), the live registry answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .arguments import Subparsers

LISTING = Path(__file__).with_name("models.json")


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("models", help="supported model families and known checkpoints")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def listing() -> list[dict[str, Any]]:
    """The families ``list_models()`` gives, without importing them when not yet loaded."""
    if "mmembed.encoders" in sys.modules:
        from ..encoders import list_models

        return [dict(row) for row in list_models()]
    rows: list[dict[str, Any]] = json.loads(LISTING.read_text(encoding="utf-8"))
    return rows


def run(args: argparse.Namespace) -> int:
    models = listing()
    if args.json:
        print(json.dumps(models, indent=2, default=str))
        return 0
    for m in models:
        print(f"{m['family']:<14} {m['kind']:<7} dim {m['dim'] or 'varies'!s:<7} {m.get('notes', '')}")
        for ckpt in m.get("checkpoints", []):
            print(f"    {ckpt}")
    return 0
