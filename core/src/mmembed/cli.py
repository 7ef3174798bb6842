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

from .types import MMEmbedError, SearchHit

DEFAULT_MODEL = "vidore/colqwen2.5-v0.2"
MODEL_ENV = "MMEMBED_MODEL"


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
    if where_json:
        try:
            clauses.append(json.loads(where_json))
        except json.JSONDecodeError as exc:
            raise CLIError(
                f'--where is not valid JSON ({exc}); e.g. --where \'{{"page": {{"$lte": 3}}}}\''
            ) from exc
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
            strict=args.strict,
            include=args.include or None,
            exclude=args.exclude or None,
            password=args.password,
            thumbnails=not args.no_thumbnails,
            progress=not args.quiet,
            segment_seconds=args.segment_seconds,
            fps=args.fps,
            max_frames=args.max_frames,
            media_streams=args.media_streams,
        )
        total = index.count()
    print(report.summary())
    print(f"index {args.index} now holds {total} page(s)")
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
        print("no matching pages or segments")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>3}. {hit.score:10.4f}  {hit.source}  {_where(hit)}  [{hit.id}]")
    return 0


def _where(hit: SearchHit) -> str:
    """``page 3`` for a page, ``0:30.0–1:00.0`` (start–end in the recording) for a media segment."""
    from .loaders import format_time

    span = hit.time_span
    if span is None:
        return f"page {hit.page}"
    return f"{format_time(span[0])}–{format_time(span[1])} ({hit.metadata.get('media', 'media')})"


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
            print(f"{key:>15}: {value}")
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

    p = sub.add_parser("index", help="add PDFs, images, audio, video and folders to an index")
    p.add_argument("paths", nargs="+", help="files or folders (recursive)")
    p.add_argument("--index", required=True, help="index folder (created if missing)")
    model_args(p)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dpi", type=int, default=144)
    p.add_argument("--strict", action="store_true", help="stop at the first bad file or page")
    p.add_argument("--include", action="append", help="glob of files to take from folders (repeatable)")
    p.add_argument("--exclude", action="append", help="glob of files to leave out (repeatable)")
    p.add_argument("--password", help="password of encrypted PDFs")
    p.add_argument("--no-thumbnails", action="store_true", help="do not keep page thumbnails in the index")
    media = p.add_argument_group("audio and video (needs mmembed-core[media] and an audio/video model)")
    media.add_argument(
        "--segment-seconds",
        type=float,
        help="length of each indexed segment (default: 120 for sound, 30 for video)",
    )
    media.add_argument("--fps", type=float, default=2.0, help="video frames sampled per second (default 2)")
    media.add_argument("--max-frames", type=int, default=64, help="at most this many frames per segment")
    media.add_argument(
        "--media-streams",
        choices=("auto", "audio", "video"),
        default="auto",
        help="what to decode: every stream the file has (auto), sound only, or pictures only",
    )
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
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every batch committed so far is kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mmembed models | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
