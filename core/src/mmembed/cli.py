"""The ``mmembed`` command line: index, search, delete, info, models.

Exit codes: 0 on success, 2 on usage errors (argparse), 1 on any other error, with a
one-line message that names the file or page and says what to do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .types import MMEmbedError

DEFAULT_MODEL = "vidore/colqwen2.5-v0.2"
MODEL_ENV = "MMEMBED_MODEL"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def safe(text: object) -> str:
    """``text`` with control characters escaped (``\\x1b``): file names and stored metadata
    are untrusted, and printed raw an escape sequence would clear or recolour the terminal."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in str(text)
    )


def safe_lines(text: str) -> str:
    """:func:`safe` for each line of a multi-line report."""
    return "\n".join(safe(line) for line in text.split("\n"))


class CLIError(MMEmbedError):
    """A problem to report on one line, exit code 1."""


def _model_name(args: argparse.Namespace, stored: str | None = None) -> str:
    if getattr(args, "model", None):
        return str(args.model)
    if stored:
        return stored
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def _encoder_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if getattr(args, "device", None):
        options["device"] = args.device
    if getattr(args, "revision", None):
        options["revision"] = args.revision
    return options


def _open_existing(path: str, *, readonly: bool) -> Any:
    from .index import open_index

    if not Path(path).exists():
        raise CLIError(f"no index at {path}: create one with `mmembed index FILES... --index {path}`")
    return open_index(path, create=False, readonly=readonly)


def _parse_filters(pairs: Sequence[str], where_json: str | None) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"--filter {pair!r} is not KEY=VALUE (e.g. --filter source=report.pdf)")
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
            raise CLIError(f"--where is not valid JSON ({exc}); e.g. {example}") from exc
        except RecursionError:
            raise CLIError(f"--where is nested too deeply to read; flatten it, e.g. {example}") from None
        if not isinstance(where, dict):
            raise CLIError(f"--where must be a JSON object, got {where_json[:40]!r}; e.g. {example}")
        clauses.append(where)
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def cmd_index(args: argparse.Namespace) -> int:
    from .encoders import load_encoder
    from .index import open_index
    from .pipeline import index_documents

    stored_name = None
    if Path(args.index).exists():  # an existing index names its model unless --model says otherwise
        with open_index(args.index, create=False, readonly=True) as existing:
            stored_name = existing.encoder.name
    encoder = load_encoder(_model_name(args, stored_name), **_encoder_options(args))
    with open_index(args.index, encoder=encoder.info) as index:
        report = index_documents(
            args.paths,
            index,
            encoder,
            batch_size=args.batch_size,
            dpi=args.dpi,
            max_pixels=args.max_pixels,
            **({} if args.max_image_pixels is None else {"max_image_pixels": args.max_image_pixels or None}),
            strict=args.strict,
            include=args.include or None,
            exclude=args.exclude or None,
            password=args.password,
            thumbnails=not args.no_thumbnails,
            progress=not args.quiet,
        )
        total = index.count()
    print(safe_lines(report.summary()))
    print(f"index {safe(args.index)} now holds {total} page(s)")
    if not report.ok:
        print("error: nothing could be indexed; see the problems above", file=sys.stderr)
        return 1
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .encoders import load_encoder
    from .retrieve import Retriever

    where = _parse_filters(args.filter or [], args.where)
    index = _open_existing(args.index, readonly=True)
    try:
        encoder = load_encoder(_model_name(args, index.encoder.name), **_encoder_options(args))
        hits = Retriever(index, encoder).search(args.query, k=args.k, where=where)
    finally:
        index.close()
    if args.json:
        print(json.dumps([hit.to_json() for hit in hits], indent=2))
        return 0
    if not hits:
        print("no matching pages")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>3}. {hit.score:10.4f}  {safe(hit.source)}  page {hit.page}  [{safe(hit.id)}]")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from .index import open_index

    if not Path(args.index).exists():
        raise CLIError(f"no index at {args.index}")
    with open_index(args.index, create=False) as index:
        if args.id:
            deleted = index.delete(ids=args.id)
        else:
            source = str(Path(args.source).resolve()) if Path(args.source).exists() else args.source
            deleted = index.delete(where={"source": {"$in": sorted({source, args.source})}})
    print(f"deleted {deleted} page(s)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    index = _open_existing(args.index, readonly=True)
    try:
        info = index.info()
    finally:
        index.close()
    enc = index.encoder
    summary = {
        "path": str(Path(args.index).resolve()),
        "pages": info["pages"],
        "sources": info.get("sources"),
        "model": enc.name,
        "revision": enc.revision,
        "family": enc.family,
        "kind": enc.kind,
        "similarity": enc.similarity,
        "dim": enc.dim,
        "dtype": info.get("dtype"),
        "bytes": info["bytes"],
        "format_version": info.get("format_version"),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>15}: {safe(value)}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .encoders import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2, default=str))
        return 0
    for m in models:
        print(f"{m['family']:<14} {m['kind']:<7} dim {m['dim'] or 'varies'!s:<7} {m.get('notes', '')}")
        for ckpt in m.get("checkpoints", []):
            print(f"    {ckpt}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmembed", description="Index documents as page images and search them (no OCR)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model", help=f"checkpoint id or local folder (default: ${MODEL_ENV} or {DEFAULT_MODEL})"
        )
        p.add_argument("--revision", help="checkpoint revision (git tag / commit) on the hub")
        p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")

    p = sub.add_parser("index", help="add PDFs, images and folders to an index")
    p.add_argument("paths", nargs="+", help="files or folders (recursive)")
    p.add_argument("--index", required=True, help="index folder (created if missing)")
    model_args(p)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dpi", type=int, default=144)
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        help="render / downscale every page to at most this many pixels (the model's own cap applies too)",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        help="refuse images / pages larger than this many pixels before decoding them (decompression-bomb "
        "guard; default: PIL's limit, ~89 million; 0 = no limit, only for files you trust)",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first bad file or page")
    p.add_argument("--include", action="append", help="glob of files to take from folders (repeatable)")
    p.add_argument("--exclude", action="append", help="glob of files to leave out (repeatable)")
    p.add_argument("--password", help="password of encrypted PDFs")
    p.add_argument("--no-thumbnails", action="store_true", help="do not keep page thumbnails in the index")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="rank the pages of an index for a query")
    p.add_argument("query")
    p.add_argument("--index", required=True)
    p.add_argument("-k", type=int, default=5, help="number of pages (default 5)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE", help="metadata equality (repeatable)")
    p.add_argument("--where", help='a JSON filter, e.g. \'{"page": {"$lte": 3}}\'')
    p.add_argument("--json", action="store_true")
    model_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("delete", help="remove pages by id or by source file")
    p.add_argument("--index", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--id", action="append", help="page id (repeatable)")
    group.add_argument("--source", help="remove every page of this file")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("info", help="what an index holds")
    p.add_argument("--index", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="supported model families and known checkpoints")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "batch_size", 1) < 1 or getattr(args, "k", 1) < 1:
        parser.error("--batch-size and -k must be at least 1")
    try:
        return int(args.func(args))
    except MMEmbedError as exc:
        print(f"error: {safe(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every batch committed so far is kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mmembed models | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {safe(exc.strerror or exc)}{safe(where)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
