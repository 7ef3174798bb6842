"""``mmembed index``: add PDFs, images, audio, video and folders to an index (or, with
``--ray``, on a Ray cluster through mmembed-ray)."""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from typing import Any

from .arguments import Subparsers, backend_args, model_args, positive_int, storage_args
from .errors import CLIError
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..encoders import load_encoder
    from ..index import open_backend, uri_scheme
    from ..pipeline import index_documents

    where = location(args)
    if args.repair:
        _repair(where)
        if not args.paths:
            return 0
    elif not args.paths:
        raise CLIError("mmembed index needs files or folders to index (or --repair)")
    storage = storage_options(args, where)
    stored = stored_encoder(where)  # an existing index names its model unless --model does
    model = model_name(args, stored.name if stored else None)
    # --first-stage applies when the index is created (like --storage): an existing one keeps its own.
    stage: dict[str, Any] = {}
    if args.first_stage is not None:
        stage["first_stage"] = None if args.first_stage == "none" else args.first_stage
    if stage and uri_scheme(where) is not None:
        raise CLIError("--first-stage applies to index folders (the embedded index), not to URIs")
    if stage and stored is not None:
        raise CLIError(
            f"--first-stage applies when an index is created; {safe(where)} already exists "
            "(see `mmembed info`): index into a new folder to change it"
        )
    if args.ray is not None:
        if storage or stage:
            raise CLIError(
                "--storage / --pool / --first-stage are not passed to --ray workers: create the index "
                "first without --ray (e.g. index one file with those options), then index the rest with --ray"
            )
        return _index_on_ray(args, where, model)
    encoder = load_encoder(model, **encoder_options(args, stored))
    with closing(open_backend(where, encoder=encoder.info, **storage, **stage)) as index:
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
    print(f"index {safe(where)} now holds {total} page(s)")
    if not report.ok:
        print("error: nothing could be indexed; see the problems above", file=sys.stderr)
        return 1
    return 0


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
