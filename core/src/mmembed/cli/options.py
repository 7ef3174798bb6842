"""From parsed arguments to what the library takes: the model name and ``load_encoder``
options, where ``--index`` points, storage options and filters. Heavy modules (encoders,
index) are imported inside the functions that need them."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..types import EncoderInfo
from .arguments import DEFAULT_MODEL, MODEL_ENV
from .errors import CLIError, UsageError


def model_name(args: argparse.Namespace, stored: str | None = None) -> str:
    """``--model``, else the model an existing index was built with, else ``$MMEMBED_MODEL``
    or the default."""
    if getattr(args, "model", None):
        return str(args.model)
    if stored:
        return stored
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def encoder_options(args: argparse.Namespace, stored: EncoderInfo | None = None) -> dict[str, Any]:
    """``load_encoder`` keywords: ``--device``, ``--revision``, the family options an existing
    index recorded (when ``--model`` does not name another model) and ``--option KEY=VALUE``."""
    options: dict[str, Any] = {}
    if getattr(args, "device", None):
        options["device"] = args.device
    if getattr(args, "revision", None):
        options["revision"] = args.revision
    if getattr(args, "trust_remote_code", False):
        options["trust_remote_code"] = True
    if stored is not None and not getattr(args, "model", None):
        from ..encoders.registry import recorded_options

        options.update(recorded_options(stored))
    for pair in getattr(args, "option", None) or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option {pair!r} is not KEY=VALUE (e.g. --option matryoshka_dim=256)")
        try:
            options[key] = json.loads(raw)  # numbers, booleans
        except json.JSONDecodeError:
            options[key] = raw
    return options


def location(args: argparse.Namespace) -> str:
    """Where ``--index`` points: a folder or a backend URI (``--backend qdrant --url``)."""
    backend = getattr(args, "backend", None) or "local"
    if backend == "local":
        if getattr(args, "url", None):
            raise UsageError("--url needs --backend qdrant (or pass --index qdrant://host:6333/collection)")
        return str(args.index)
    if backend == "qdrant-edge":  # Qdrant's embedded engine: --index is a folder
        if getattr(args, "url", None):
            raise UsageError("--backend qdrant-edge takes no --url: --index is the engine's folder")
        return f"qdrant-edge://{Path(args.index).expanduser().resolve()}"
    if not args.url:
        raise UsageError("--backend qdrant needs --url (e.g. --url http://localhost:6333 --index pages)")
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise UsageError(f"--url {args.url!r} is not an http(s) URL such as http://localhost:6333")
    return f"{'qdrants' if url.scheme == 'https' else 'qdrant'}://{url.netloc}/{args.index}"


def open_existing(location: str, *, readonly: bool) -> Any:
    """The index at ``location``; :class:`CLIError` when there is none."""
    from ..index import open_backend, uri_scheme

    if uri_scheme(location) is None and not Path(location).exists():
        raise CLIError(f"no index at {location}: create one with `mmembed index FILES... --index {location}`")
    return open_backend(location, create=False, readonly=readonly)


def folder_summary(location: str) -> tuple[dict[str, Any], EncoderInfo]:
    """``(info, encoder)`` of the index folder at ``location`` without importing torch;
    :class:`CLIError` when there is none."""
    from ..index.summary import folder_info

    if not Path(location).exists():
        raise CLIError(f"no index at {location}: create one with `mmembed index FILES... --index {location}`")
    return folder_info(location)


def stored_encoder(location: str) -> EncoderInfo | None:
    """The encoder an existing index was built with (``None`` when there is no index yet)."""
    from ..index import IndexNotFoundError, open_backend, uri_scheme

    if uri_scheme(location) is None and not Path(location).exists():
        return None
    try:
        with closing(open_backend(location, create=False, readonly=True)) as existing:
            return existing.encoder
    except IndexNotFoundError:
        return None


def storage_options(args: argparse.Namespace, location: str) -> dict[str, Any]:
    """``storage`` / ``pooling`` for ``open_backend`` from ``--storage`` / ``--pool``."""
    from ..index import uri_scheme

    options = {
        key: value for key, value in (("storage", args.storage), ("pooling", args.pool)) if value is not None
    }
    if options and uri_scheme(location) is not None:
        raise UsageError("--storage and --pool apply to index folders (the embedded index), not to URIs")
    return options


def parse_filters(pairs: Sequence[str], where_json: str | None) -> dict[str, Any] | None:
    """One filter from ``--filter KEY=VALUE`` (repeatable) and ``--where JSON``."""
    clauses: list[dict[str, Any]] = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--filter {pair!r} is not KEY=VALUE (e.g. --filter source=report.pdf)")
        value: Any
        try:
            value = json.loads(raw)  # numbers, booleans, lists
        except json.JSONDecodeError:
            value = raw
        if key == "source" and isinstance(value, str) and Path(value).exists():
            value = str(Path(value).resolve())  # sources are stored as absolute paths
        clauses.append({key: value})
    if where_json is not None:
        example = '--where \'{"page": {"$lte": 3}}\''
        try:
            where = json.loads(where_json)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--where is not valid JSON ({exc}); e.g. {example}") from exc
        except RecursionError:
            raise UsageError(f"--where is nested too deeply to read; flatten it, e.g. {example}") from None
        if not isinstance(where, dict):
            raise UsageError(f"--where must be a JSON object, got {where_json[:40]!r}; e.g. {example}")
        clauses.append(where)
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
