"""The parser and the entry point: one module per command, registered in :data:`COMMANDS`.

A command is a module with ``add_parser(subparsers)`` (its arguments, ending with
``set_defaults(func=run)``) and ``run(args) -> int`` (its exit code). Adding one is a new
module and one line in :data:`COMMANDS`. Parsing imports nothing heavy: a command imports
torch, the encoders or the index inside ``run``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from ..types import MMEmbedError
from . import delete, index, info, migrate, models, search, serve, train
from . import eval as evaluate
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from .output import safe

COMMANDS: tuple[ModuleType, ...] = (index, search, serve, delete, info, evaluate, train, migrate, models)
"""The commands, in the order ``mmembed --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmembed", description="Index documents as page images and search them (no OCR)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if getattr(args, "k", 1) < 1:
        parser.error(f"-k must be at least 1, got {args.k}")
    try:
        return int(args.func(args))
    except MMEmbedError as exc:
        print(f"error: {safe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: every batch committed so far is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `mmembed models | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {safe(exc.strerror or exc)}{safe(where)}", file=sys.stderr)
        return EXIT_ERROR
