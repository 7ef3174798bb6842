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
    if getattr(args, "trust_remote_code", False):
        options["trust_remote_code"] = True
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
        retriever = Retriever(index, encoder)
        hits = retriever.search(args.query, k=args.k, where=where)
        if args.tokens and not args.explain:
            raise CLIError("--tokens picks the overlays written by --explain DIR; add --explain DIR")
        overlays: list[Path] = []
        for rank, hit in enumerate(hits if args.explain else [], 1):
            stem = f"{rank:02d}-{Path(hit.source).stem}-p{hit.page}"
            overlays += retriever.explain(args.query, hit).save(args.explain, stem, tokens=args.tokens)
    finally:
        index.close()
    if args.json:
        print(json.dumps([hit.to_json() for hit in hits], indent=2))
        return 0
    if not hits:
        print("no matching pages")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>3}. {hit.score:10.4f}  {hit.source}  page {hit.page}  [{hit.id}]")
    if overlays:
        print(f"wrote {len(overlays)} similarity overlay(s) to {args.explain}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    print(f"serving {args.index} on http://{args.host}:{args.port}/ (Ctrl+C to stop)", file=sys.stderr)
    serve(
        args.index,
        host=args.host,
        port=args.port,
        model=args.model,
        max_k=args.max_k,
        **_encoder_options(args),
    )
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
            print(f"{key:>15}: {value}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .encoders import load_encoder
    from .evaluate import DEFAULT_METRICS, evaluate, format_table, load_qrels, load_queries
    from .retrieve import Retriever

    queries, qrels = load_queries(args.queries), load_qrels(args.qrels)
    if args.corpus:  # index the corpus first (a no-op for files the index already holds)
        indexing = build_parser().parse_args(["index", *args.corpus, "--index", args.index, "--quiet"])
        indexing.model, indexing.revision, indexing.device = args.model, args.revision, args.device
        code = cmd_index(indexing)
        if code:
            return code
    reports = []
    for path in [args.index, *(args.compare or [])]:
        index = _open_existing(path, readonly=True)
        try:
            stored = index.encoder.name
            encoder = load_encoder(args.model if path == args.index and args.model else stored)
            reports.append(
                evaluate(
                    Retriever(index, encoder),
                    queries,
                    qrels,
                    k=args.k,
                    doc_ids=args.doc_ids,
                    metrics=args.metrics or DEFAULT_METRICS,
                    name=f"{Path(path).name} ({Path(stored).name})",
                )
            )
        finally:
            index.close()
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    else:
        print(format_table(reports))
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
        p.add_argument(
            "--trust-remote-code",
            action="store_true",
            help="run the checkpoint's own Python code (auto_map) when no native family matches it",
        )

    p = sub.add_parser("index", help="add PDFs, images and folders to an index")
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="rank the pages of an index for a query")
    p.add_argument("query")
    p.add_argument("--index", required=True)
    p.add_argument("-k", type=int, default=5, help="number of pages (default 5)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE", help="metadata equality (repeatable)")
    p.add_argument("--where", help='a JSON filter, e.g. \'{"page": {"$lte": 3}}\'')
    p.add_argument("--json", action="store_true")
    p.add_argument("--explain", metavar="DIR", help="write a similarity overlay PNG per hit into DIR")
    p.add_argument(
        "--tokens",
        type=int,
        nargs="+",
        metavar="I",
        help="with --explain: also one overlay per query token I",
    )
    model_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("serve", help="a local search page and JSON API over an index")
    p.add_argument("--index", required=True)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-k", type=int, default=50, help="largest k a request may ask for (default 50)")
    model_args(p)
    p.set_defaults(func=cmd_serve)

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

    p = sub.add_parser("eval", help="measure retrieval quality (nDCG, recall, MRR) against qrels")
    p.add_argument("--index", required=True, help="the index to evaluate (its pages are the corpus)")
    p.add_argument("--queries", required=True, help="BEIR queries.jsonl ({_id, text}) or id<TAB>text")
    p.add_argument(
        "--qrels", required=True, help="BEIR qrels TSV (query-id, corpus-id, score), TREC or JSONL"
    )
    p.add_argument("--corpus", nargs="+", help="files / folders to index into --index first")
    p.add_argument("-k", type=int, default=100, help="pages retrieved per query (default 100)")
    p.add_argument(
        "--doc-ids",
        choices=["auto", "id", "source#page", "path#page"],
        default="auto",
        help="how the qrels name pages: mmembed page id, file name#page or full path#page (default: guess)",
    )
    p.add_argument("--metrics", nargs="+", help="ir-measures names (default nDCG@1,5,10 R@1,5,10,100 RR@10)")
    p.add_argument(
        "--compare", nargs="+", metavar="INDEX", help="other indexes (e.g. another model) side by side"
    )
    p.add_argument("--json", action="store_true")
    model_args(p)
    p.set_defaults(func=cmd_eval)

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
