"""Arguments several commands share (model, backend, storage) and argparse value types.

Building the parser imports nothing heavy (no torch, no codecs): ``mmembed --help`` must
answer at once, so every choice list here is a plain constant.
"""

from __future__ import annotations

import argparse
from typing import TypeAlias

from ..types import STORAGE_NAMES

DEFAULT_MODEL = "vidore/colqwen2.5-v0.2"
MODEL_ENV = "MMEMBED_MODEL"

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The type of ``add_subparsers()``'s result, for the commands' ``add_parser``."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def model_args(p: argparse.ArgumentParser, default: str = f"${MODEL_ENV} or {DEFAULT_MODEL}") -> None:
    """``--model``, ``--revision``, ``--device``, ``--trust-remote-code``, ``--option``."""
    p.add_argument("--model", help=f"checkpoint id or local folder (default: {default})")
    p.add_argument("--revision", help="checkpoint revision (git tag / commit) on the hub")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the checkpoint's own Python code (auto_map) when no native family matches it",
    )
    p.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="model family option, e.g. text_model=./nomic-embed-text-v1.5 or matryoshka_dim=256 "
        "(repeatable; see `mmembed models`; an existing index reuses the options it was built with)",
    )


def backend_args(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--url``: where ``--index`` points (see :func:`.options.location`)."""
    p.add_argument(
        "--backend",
        choices=("local", "qdrant", "qdrant-edge"),
        default="local",
        help="local: --index is a folder; qdrant: --index is a collection on --url (API key: "
        "$QDRANT_API_KEY); qdrant-edge: --index is a folder of Qdrant's embedded engine",
    )
    p.add_argument("--url", help="Qdrant server URL with --backend qdrant, e.g. http://localhost:6333")


def storage_args(p: argparse.ArgumentParser, applies_to: str) -> None:
    """``--storage`` and ``--pool`` of a new index folder."""
    p.add_argument(
        "--storage",
        choices=STORAGE_NAMES,
        help=f"how vectors are stored in {applies_to}: float16 (default), bfloat16, float32, or "
        "int8 (per-token scaled, ~half of float16's bytes); fixed when the folder is created",
    )
    p.add_argument(
        "--pool",
        type=int,
        choices=(2, 3, 4),
        help=f"token pooling factor of {applies_to}: cluster each page's token vectors into "
        "1/N as many at write time (multi-vector models; needs scipy)",
    )
