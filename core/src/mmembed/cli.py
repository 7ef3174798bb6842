"""The ``mmembed`` command line: index, search, delete, info, migrate, models.

``--index`` takes a folder (the embedded index) or a backend URI such as
``qdrant://host:6333/collection`` (``--backend qdrant --url URL --index COLLECTION`` says the same).

Exit codes: 0 on success, 2 on usage errors (argparse), 1 on any other error, with a
one-line message that names the file or page and says what to do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .types import EncoderInfo, MMEmbedError, SearchHit

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


def _encoder_options(args: argparse.Namespace, stored: EncoderInfo | None = None) -> dict[str, Any]:
    """``load_encoder`` keywords: ``--device``, ``--revision``, the family options an existing
    index recorded (when ``--model`` does not name another model) and ``--option KEY=VALUE``."""
    options: dict[str, Any] = {}
    if getattr(args, "device", None):
        options["device"] = args.device
    if getattr(args, "revision", None):
        options["revision"] = args.revision
    if getattr(args, "trust_remote_code", False):
        options["trust_remote_code"] = True
    if stored is not None and stored.settings and not getattr(args, "model", None):
        from .encoders import UnknownModelError, get_family

        try:
            accepted = set(get_family(stored.family).options)
        except UnknownModelError:
            accepted = set()
        options.update({k: v for k, v in stored.settings.items() if k in accepted})
    for pair in getattr(args, "option", None) or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"--option {pair!r} is not KEY=VALUE (e.g. --option matryoshka_dim=256)")
        try:
            options[key] = json.loads(raw)  # numbers, booleans
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _location(args: argparse.Namespace) -> str:
    """Where ``--index`` points: a folder or a backend URI (``--backend qdrant --url``)."""
    backend = getattr(args, "backend", None) or "local"
    if backend == "local":
        if getattr(args, "url", None):
            raise CLIError("--url needs --backend qdrant (or pass --index qdrant://host:6333/collection)")
        return str(args.index)
    if backend == "qdrant-edge":  # Qdrant's embedded engine: --index is a folder
        if getattr(args, "url", None):
            raise CLIError("--backend qdrant-edge takes no --url: --index is the engine's folder")
        return f"qdrant-edge://{Path(args.index).expanduser().resolve()}"
    if not args.url:
        raise CLIError("--backend qdrant needs --url (e.g. --url http://localhost:6333 --index pages)")
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise CLIError(f"--url {args.url!r} is not an http(s) URL such as http://localhost:6333")
    return f"{'qdrants' if url.scheme == 'https' else 'qdrant'}://{url.netloc}/{args.index}"


def _open_existing(location: str, *, readonly: bool) -> Any:
    from .index import open_backend, uri_scheme

    if uri_scheme(location) is None and not Path(location).exists():
        raise CLIError(f"no index at {location}: create one with `mmembed index FILES... --index {location}`")
    return open_backend(location, create=False, readonly=readonly)


def _stored_encoder(location: str) -> EncoderInfo | None:
    """The encoder an existing index was built with (``None`` when there is no index yet)."""
    from .index import IndexNotFoundError, open_backend, uri_scheme

    if uri_scheme(location) is None and not Path(location).exists():
        return None
    try:
        with closing(open_backend(location, create=False, readonly=True)) as existing:
            return existing.encoder
    except IndexNotFoundError:
        return None


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
    from .index import open_backend, uri_scheme
    from .pipeline import index_documents

    location = _location(args)
    storage_options = _storage_options(args, location)
    stored = _stored_encoder(location)  # an existing index names its model unless --model does
    model = _model_name(args, stored.name if stored else None)
    # --first-stage applies when the index is created (like --storage): an existing one keeps its own.
    stage: dict[str, Any] = {}
    if args.first_stage is not None:
        stage["first_stage"] = None if args.first_stage == "none" else args.first_stage
    if stage and uri_scheme(location) is not None:
        raise CLIError("--first-stage applies to index folders (the embedded index), not to URIs")
    if stage and stored is not None:
        raise CLIError(
            f"--first-stage applies when an index is created; {safe(location)} already exists "
            "(see `mmembed info`): index into a new folder to change it"
        )
    if args.ray is not None:
        if storage_options or stage:
            raise CLIError(
                "--storage / --pool / --first-stage are not passed to --ray workers: create the index "
                "first without --ray (e.g. index one file with those options), then index the rest with --ray"
            )
        return _index_on_ray(args, location, model)
    encoder = load_encoder(model, **_encoder_options(args, stored))
    with closing(open_backend(location, encoder=encoder.info, **storage_options, **stage)) as index:
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
            segment_seconds=args.segment_seconds,
            fps=args.fps,
            max_frames=args.max_frames,
            media_streams=args.media_streams,
        )
        total = index.count()
    print(safe_lines(report.summary()))
    print(f"index {safe(location)} now holds {total} page(s)")
    if not report.ok:
        print("error: nothing could be indexed; see the problems above", file=sys.stderr)
        return 1
    return 0


def _storage_options(args: argparse.Namespace, location: str) -> dict[str, Any]:
    """``storage`` / ``pooling`` for ``open_backend`` from ``--storage`` / ``--pool``."""
    from .index import uri_scheme

    options = {
        key: value for key, value in (("storage", args.storage), ("pooling", args.pool)) if value is not None
    }
    if options and uri_scheme(location) is not None:
        raise CLIError("--storage and --pool apply to index folders (the embedded index), not to URIs")
    return options


def _index_on_ray(args: argparse.Namespace, location: str, model: str) -> int:
    try:
        from mmembed_ray import index_documents as index_on_ray
    except ImportError as exc:
        raise CLIError(f"--ray needs the mmembed-ray package ({exc}); pip install 'mmembed-ray'") from exc
    report = index_on_ray(
        args.paths,
        location,
        model,
        address=args.ray or None,
        encoders=args.encoders,
        gpus_per_encoder=args.gpus_per_encoder,
        batch_size=args.batch_size,
        dpi=args.dpi,
        password=args.password,
        include=args.include or None,
        exclude=args.exclude or None,
        thumbnails=not args.no_thumbnails,
        revision=getattr(args, "revision", None),
        device=getattr(args, "device", None),
    )
    print(safe_lines(report.summary()))
    if not report.ok:
        print("error: nothing could be indexed; see the problems above", file=sys.stderr)
        return 1
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .encoders import load_encoder
    from .retrieve import Retriever

    where = _parse_filters(args.filter or [], args.where)
    index = _open_existing(_location(args), readonly=True)
    try:
        encoder = load_encoder(_model_name(args, index.encoder.name), **_encoder_options(args, index.encoder))
        retriever = Retriever(index, encoder)
        shortlist: dict[str, Any] = {}
        if args.exact:
            shortlist["exact"] = True
        if args.candidates is not None:
            shortlist["candidates"] = args.candidates
        if shortlist and not hasattr(index, "first_stage"):
            raise CLIError("--exact and --candidates apply to an index folder, not to a server backend")
        hits = retriever.search(args.query, k=args.k, where=where, **shortlist)
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
        print(f"{rank:>3}. {hit.score:10.4f}  {safe(hit.source)}  {_where(hit)}  [{safe(hit.id)}]")
    if overlays:
        how = " and ".join(sorted(vectors_from))  # "stored" vectors, or the page "re-encoded"
        print(f"wrote {len(overlays)} similarity overlay(s) to {safe(args.explain)} ({how} page vectors)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    print(f"serving {safe(args.index)} on http://{args.host}:{args.port}/ (Ctrl+C to stop)", file=sys.stderr)
    serve(
        args.index,
        host=args.host,
        port=args.port,
        model=args.model,
        max_k=args.max_k,
        allowed_host=args.allowed_host or (),
        **_encoder_options(args),
    )
    return 0


def _where(hit: SearchHit) -> str:
    """``page 3`` for a page, ``0:30.0–1:00.0`` (start–end in the recording) for a media segment."""
    from .loaders import format_time

    span = hit.time_span
    if span is None:
        return f"page {hit.page}"
    return f"{format_time(span[0])}–{format_time(span[1])} ({hit.metadata.get('media', 'media')})"


def cmd_delete(args: argparse.Namespace) -> int:
    with closing(_open_existing(_location(args), readonly=False)) as index:
        if args.id:
            deleted = index.delete(ids=args.id)
        else:
            source = str(Path(args.source).resolve()) if Path(args.source).exists() else args.source
            deleted = index.delete(where={"source": {"$in": sorted({source, args.source})}})
    print(f"deleted {deleted} page(s)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    location = _location(args)
    index = _open_existing(location, readonly=True)
    try:
        info = index.info()
    finally:
        index.close()
    enc = index.encoder
    summary = {
        "path": location if "://" in location else str(Path(location).resolve()),
        "pages": info["pages"],
        "sources": info.get("sources"),
        "model": enc.name,
        "revision": enc.revision,
        "family": enc.family,
        "kind": enc.kind,
        "similarity": enc.similarity,
        "dim": enc.dim,
        "storage": info.get("storage", info.get("dtype")),
        "pooling": info.get("pooling"),
        "bytes_per_page": info.get("bytes_per_page"),
        "bytes_per_token": info.get("bytes_per_token"),
        "first_stage": info.get("first_stage") or "none (exact scan)",
        "bytes": info.get("bytes"),
        "format_version": info.get("format_version"),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>15}: {safe(value)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .encoders import load_encoder
    from .evaluate import DEFAULT_METRICS, evaluate, format_table, load_beir_dataset, load_qrels, load_queries
    from .retrieve import Retriever

    doc_ids = args.doc_ids
    if args.dataset:
        if args.queries or args.qrels or args.corpus:
            raise CLIError(
                "--dataset brings its own queries, qrels and corpus; drop --queries / --qrels / --corpus"
            )
        dataset = load_beir_dataset(args.dataset, split=args.split, language=args.language)
        folder = args.corpus_dir or f"{args.index.rstrip('/')}-corpus"
        files = dataset.page_files(folder)
        queries, qrels = dataset.queries, dataset.file_qrels(files)
        args.corpus, doc_ids = [folder], "source#page"
        print(
            f"{safe(args.dataset)}: {len(queries)} queries, {len(files)} pages in {safe(folder)}",
            file=sys.stderr,
        )
    elif not (args.queries and args.qrels):
        raise CLIError("give --queries and --qrels (BEIR files), or --dataset vidore/<name>")
    else:
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
            own_model = path == args.index and args.model
            encoder = load_encoder(
                args.model if own_model else stored,
                **_encoder_options(args, None if own_model else index.encoder),
            )
            reports.append(
                evaluate(
                    Retriever(index, encoder),
                    queries,
                    qrels,
                    k=args.k,
                    doc_ids=doc_ids,
                    metrics=args.metrics or DEFAULT_METRICS,
                    name=f"{Path(path).name} ({Path(stored).name})",
                )
            )
        finally:
            index.close()
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    else:
        print(safe_lines(format_table(reports)))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy every page of an index (vectors, records, thumbnails) into another, without
    re-encoding; an upsert by page id, so a re-run after an interruption finishes the job.
    A new folder keeps the source's storage and pooling (``--storage`` converts; ``--pool``
    pools an unpooled source)."""
    from .index import open_backend, uri_scheme

    source = _open_existing(args.source, readonly=True)
    with closing(source):
        target_options = _storage_options(args, args.target)
        pooled = int(getattr(source, "pooling", 1))  # the source's vectors are already pooled
        if pooled > 1:
            if args.pool is not None and args.pool != pooled:
                raise CLIError(
                    f"{args.source} holds vectors pooled by {pooled}; they cannot be pooled again or "
                    f"unpooled: drop --pool (the copy keeps pooling={pooled}) or re-index the documents"
                )
            if uri_scheme(args.target) is None:
                target_options["pooling"] = pooled  # checked against an existing target too
        if uri_scheme(args.target) is None and "storage" not in target_options:
            target_options["dtype"] = getattr(source, "storage", None)  # a new copy keeps the codec
        with closing(open_backend(args.target, encoder=source.encoder, **target_options)) as target:
            copied, total = _copy_pages(args, source, target, pooled=pooled > 1)
    print(
        f"copied {copied} page(s) from {safe(args.source)} to {safe(args.target)}; it now holds {total} page(s)"
    )
    return 0


def _copy_pages(args: argparse.Namespace, source: Any, target: Any, *, pooled: bool) -> tuple[int, int]:
    from .index import PageInput
    from .types import PageRecord

    # Vectors of a pooled source go in as they are (pooled=True), into any embedded index.
    upsert_options = {"pooled": True} if pooled and hasattr(target, "pooling") else {}
    copied = 0
    batch: list[PageRecord] = []

    def flush() -> None:
        nonlocal copied
        vectors = source.get_embeddings([r.id for r in batch])
        pages = [
            PageInput(rows, r.source, r.page, r.content_hash, r.metadata, r.thumbnail, id=r.id)
            for r, rows in zip(batch, vectors, strict=True)
            if rows is not None  # deleted meanwhile
        ]
        copied += len(target.upsert(pages, **upsert_options))
        batch.clear()

    for record in source.records():
        batch.append(record)
        if len(batch) >= args.batch_size:
            flush()
    if batch:
        flush()
    return copied, int(target.count())


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

    def model_args(p: argparse.ArgumentParser, default: str = f"${MODEL_ENV} or {DEFAULT_MODEL}") -> None:
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
        p.add_argument(
            "--backend",
            choices=("local", "qdrant", "qdrant-edge"),
            default="local",
            help="local: --index is a folder; qdrant: --index is a collection on --url (API key: "
            "$QDRANT_API_KEY); qdrant-edge: --index is a folder of Qdrant's embedded engine",
        )
        p.add_argument("--url", help="Qdrant server URL with --backend qdrant, e.g. http://localhost:6333")

    def storage_args(p: argparse.ArgumentParser, applies_to: str) -> None:
        from .index.codecs import CODECS

        p.add_argument(
            "--storage",
            choices=tuple(CODECS),
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

    p = sub.add_parser("index", help="add PDFs, images, audio, video and folders to an index")
    p.add_argument("paths", nargs="+", help="files or folders (recursive)")
    p.add_argument(
        "--index", required=True, help="index folder or qdrant://host:6333/collection (created if missing)"
    )
    backend_args(p)
    model_args(p)
    storage_args(p, "a new index folder")
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
    p.add_argument(
        "--first-stage",
        choices=("binary", "hnsw", "none"),
        help="when creating the index: binary = sign-bit codes beside the vectors, searches shortlist "
        "pages by Hamming MaxSim then score the shortlist exactly; hnsw = a graph over pooled page "
        "vectors proposes pages, their codes narrow them (largest indexes; needs mmembed-core[ann]); none = exact scan of "
        "every page (default)",
    )
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
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="index on a Ray cluster (ADDRESS: auto, ray://head:10001; none: a local one); needs mmembed-ray",
    )
    p.add_argument("--encoders", type=int, default=1, help="with --ray: encoder actors (one per GPU)")
    p.add_argument("--gpus-per-encoder", type=float, default=0.0, help="with --ray: GPUs per encoder actor")
    p.set_defaults(func=cmd_index)

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
        type=_positive_int,
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
    p.set_defaults(func=cmd_search)

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
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("delete", help="remove pages by id or by source file")
    p.add_argument("--index", required=True)
    backend_args(p)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--id", action="append", help="page id (repeatable)")
    group.add_argument("--source", help="remove every page of this file")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("info", help="what an index holds")
    p.add_argument("--index", required=True)
    backend_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="measure retrieval quality (nDCG, recall, MRR) against qrels")
    p.add_argument("--index", required=True, help="the index to evaluate (its pages are the corpus)")
    p.add_argument("--queries", help="BEIR queries.jsonl ({_id, text}) or id<TAB>text")
    p.add_argument("--qrels", help="BEIR qrels TSV (query-id, corpus-id, score), TREC or JSONL")
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="a BEIR page dataset by name instead of files: a Hub id (vidore/vidore_v3_hr, "
        "vidore/esg_reports_v2, ...) or a local copy's folder; its pages are indexed first",
    )
    p.add_argument("--split", default="test", help="with --dataset: the split (default test)")
    p.add_argument("--language", help="with --dataset: only queries in this language (e.g. english)")
    p.add_argument(
        "--corpus-dir", help="with --dataset: where its page images are written (default <index>-corpus)"
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

    p = sub.add_parser("migrate", help="copy an index into another backend without re-encoding")
    p.add_argument("--from", dest="source", required=True, metavar="INDEX", help="index folder or URI")
    p.add_argument(
        "--to", dest="target", required=True, metavar="INDEX", help="e.g. qdrant://host:6333/pages"
    )
    p.add_argument("--batch-size", type=int, default=256, help="pages per write (default 256)")
    storage_args(p, "a new --to folder (default: the source's)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("models", help="supported model families and known checkpoints")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
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
