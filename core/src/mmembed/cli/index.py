"""``mmembed index``: add PDFs, images, audio, video and folders to an index (or, with
``--ray``, on a Ray cluster through mmembed-ray)."""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from typing import Any

from .arguments import Subparsers, backend_args, model_args, positive_int, storage_args
from .errors import CLIError, UsageError
from .options import encoder_options, location, model_name, storage_options, stored_encoder
from .output import safe, safe_lines


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("index", help="add PDFs, images, audio, video and folders to an index")
    p.add_argument("paths", nargs="*", help="files or folders (recursive)")
    p.add_argument(
        "--repair",
        action="store_true",
        help="rewrite the index folder's first-stage data (sign-bit codes, HNSW graph) that no longer "
        "matches its checksums, from the stored vectors; with no files, only that",
    )
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
        type=positive_int,
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
        choices=("binary", "hnsw", "plaid", "none"),
        help="when creating the index: binary = sign-bit codes beside the vectors, searches shortlist "
        "pages by Hamming MaxSim then score the shortlist exactly; hnsw = a graph over pooled page "
        "vectors proposes pages, their codes narrow them (largest indexes; needs mmembed-core[ann]); plaid = "
        "token centroids with 2-bit residual codes propose and rescore pages (largest indexes); none = exact scan of "
        "every page (default)",
    )
    text = p.add_argument_group("page text (text and hybrid search)")
    text.add_argument(
        "--no-text",
        action="store_true",
        help="do not store the pages' text layer (then only --mode visual finds them)",
    )
    text.add_argument(
        "--text-tokenizer",
        choices=("unicode61", "trigram"),
        help="when creating the index: unicode61 = words, case and accents folded (default); trigram = "
        "substrings, for CJK or code-like text",
    )
    text.add_argument(
        "--backfill-text",
        action="store_true",
        help="fill in the text of pages indexed without it (an index built before text search, or a damaged "
        "text index) from their recorded source files whose hash still matches; others are named and skipped",
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..encoders import load_encoder
    from ..index import open_backend, uri_scheme
    from ..pipeline import index_documents

    where = location(args)
    if args.backfill_text:
        return _backfill_text(args, where)
    if args.repair:
        _repair(where)
        if not args.paths:
            return 0
    elif not args.paths:
        raise UsageError(
            "give the files or folders to index (or --repair to rewrite first-stage data, "
            "or --backfill-text to fill in page text)"
        )
    storage = storage_options(args, where)
    stored = stored_encoder(where)  # an existing index names its model unless --model does
    model = model_name(args, stored.name if stored else None)
    # --first-stage applies when the index is created (like --storage): an existing one keeps its own.
    stage: dict[str, Any] = {}
    if args.first_stage is not None:
        stage["first_stage"] = None if args.first_stage == "none" else args.first_stage
    if args.text_tokenizer is not None:
        stage["text_tokenizer"] = args.text_tokenizer
    flags = [
        f
        for f, key in (("--first-stage", "first_stage"), ("--text-tokenizer", "text_tokenizer"))
        if key in stage
    ]
    if stage and uri_scheme(where) is not None:
        raise UsageError(f"{' / '.join(flags)} applies to index folders (the embedded index), not to URIs")
    if stage and stored is not None:
        raise CLIError(
            f"{' / '.join(flags)} applies when an index is created; {safe(where)} already exists "
            "(see `mmembed info`): index into a new folder to change it"
        )
    if args.ray is not None:
        if storage or stage:
            raise UsageError(
                "--storage / --pool / --first-stage / --text-tokenizer are not passed to --ray workers: create the index "
                "first without --ray (e.g. index one file with those options), then index the rest with --ray"
            )
        return _index_on_ray(args, where, model, encoder_options(args, stored))
    encoder = load_encoder(model, **encoder_options(args, stored))
    with closing(open_backend(where, encoder=encoder.info, **storage, **stage)) as index:
        report = index_documents(
            args.paths,
            index,
            encoder,
            batch_size=args.batch_size,
            dpi=args.dpi,
            max_pixels=args.max_pixels,
            **_image_pixel_cap(args),
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
            text=not args.no_text,
        )
        total = index.count()
    print(safe_lines(report.summary()))
    print(f"index {safe(where)} now holds {total} page(s)")
    if not report.ok:
        print("error: nothing could be indexed; see the problems above", file=sys.stderr)
        return 1
    return 0


def _backfill_text(args: argparse.Namespace, where: str) -> int:
    from ..index import open_backend, uri_scheme

    if args.paths:
        raise UsageError("--backfill-text reads the files the index recorded; give no paths with it")
    # Index folders, and Qdrant stores (qdrant://, qdrant-edge://: their 'text' sparse vector, issue 25).
    if uri_scheme(where) not in (None, "qdrant", "qdrants", "qdrant-edge"):
        raise UsageError("--backfill-text applies to index folders and Qdrant URIs")
    if uri_scheme(where) is not None and args.text_tokenizer not in (None, "unicode61"):
        raise UsageError("--text-tokenizer: the Qdrant backends store text with 'unicode61' only")
    from ..text_backfill import backfill_text

    with closing(open_backend(where, create=False)) as opened:
        index: Any = opened  # the embedded index or a Qdrant store: both have info() and the backfill calls
        report = backfill_text(index, tokenizer=args.text_tokenizer, password=args.password)
        with_text = index.info()["pages_with_text"]
    print(safe_lines(report.summary()))
    print(f"index {safe(where)} now has text for {with_text} page(s)")
    return 0


MEDIA_DEFAULTS = {"segment_seconds": None, "fps": 2.0, "max_frames": 64, "media_streams": "auto"}
"""The audio / video options' defaults: ``--ray`` indexes pages only, so it refuses any other value."""


def _index_on_ray(args: argparse.Namespace, location: str, model: str, model_options: dict[str, Any]) -> int:
    from ..index import IndexNotFoundError, open_backend

    changed = [f"--{k.replace('_', '-')}" for k, v in MEDIA_DEFAULTS.items() if getattr(args, k) != v]
    if changed:
        raise UsageError(
            f"{' / '.join(changed)} are not passed to --ray workers (they index pages: PDFs, images, "
            "office documents); index audio and video without --ray"
        )
    try:
        from mmembed_ray import index_documents as index_on_ray
    except ImportError as exc:
        raise CLIError(f"--ray needs the mmembed-ray package ({exc}); pip install 'mmembed-ray'") from exc
    # Every loading and model option goes to the workers: the same index as without --ray.
    revision, device = model_options.pop("revision", None), model_options.pop("device", None)
    image_cap: dict[str, Any] = {}
    if args.max_image_pixels is not None:
        image_cap["max_image_pixels"] = args.max_image_pixels or None
    report = index_on_ray(
        args.paths,
        location,
        model,
        address=args.ray or None,
        encoders=args.encoders,
        gpus_per_encoder=args.gpus_per_encoder,
        batch_size=args.batch_size,
        dpi=args.dpi,
        max_pixels=args.max_pixels,
        **image_cap,
        strict=args.strict,
        password=args.password,
        include=args.include or None,
        exclude=args.exclude or None,
        thumbnails=not args.no_thumbnails,
        revision=revision,
        device=device,
        encoder_options=model_options,
    )
    print(safe_lines(report.summary()))
    try:
        with closing(open_backend(location, create=False, readonly=True)) as index:
            print(f"index {safe(location)} now holds {index.count()} page(s)")
    except IndexNotFoundError:  # nothing could be indexed into a new index
        pass
    if not report.ok:
        print("error: nothing could be indexed; see the problems above", file=sys.stderr)
        return 1
    return 0


def _repair(where: str) -> None:
    from ..index import open_index, uri_scheme

    if uri_scheme(where) is not None:
        raise CLIError("--repair applies to index folders (the embedded index), not to URIs")
    with closing(open_index(where, create=False)) as index:
        done = index.repair()
    codes = done["codes_rewritten"]
    print(
        f"repaired {safe(where)}: "
        + (f"rewrote the codes {', '.join(codes)}" if codes else "codes match their checksums")
        + ("; rebuilt the HNSW graph" if done["graph_rebuilt"] else ""),
    )


def _image_pixel_cap(args: argparse.Namespace) -> dict[str, Any]:
    """``max_image_pixels`` only when the flag was given (0 lifts the cap), else the default."""
    return {} if args.max_image_pixels is None else {"max_image_pixels": args.max_image_pixels or None}
