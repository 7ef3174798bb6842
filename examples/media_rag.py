"""Audio and video retrieval end to end: write a few recordings, index them, search them.

    python examples/media_rag.py --model nvidia/omni-embed-nemotron-3b  [--data DIR] [--index DIR] [QUERY ...]

The recordings are synthesised (PyAV): a "lecture" of tones and speech-like noise, a product
"video" of coloured frames over a hum, and a silent clip. Each is cut into segments; a hit
prints the file and the start–end of the segment, as a page hit prints its page number.
Needs ``pip install 'mmembed-core[media]'`` and an audio/video model (Omni-Embed-Nemotron).
When its weights cannot be loaded (offline, not downloaded), the example says why and runs the
same pipeline on a tiny random checkpoint of its layout (meaningless scores; built by
``pip install mmembed-testing``), as ``make demo`` does. Recordings and index go to a temporary
folder unless ``--data`` / ``--index`` name one.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np

import mmembed
from mmembed.loaders import format_time
from mmembed.loaders.sample_media import noise, tone, write_media

QUERIES = ["a high-pitched whistle", "someone talking", "a red product shot"]


def write_recordings(folder: Path) -> list[Path]:
    """Three short recordings with clearly different stretches (deterministic bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    lecture = np.concatenate([tone(220, 4.0), noise(4.0, seed=1), tone(3000, 4.0)])  # (samples,)
    return [
        write_media(folder / "lecture.flac", audio=lecture),
        write_media(
            folder / "product.mp4",
            audio=tone(120, 6.0, amplitude=0.2),
            colours=[(200, 30, 30), (30, 30, 200), (30, 200, 30)],
            seconds_per_colour=2.0,
        ),
        write_media(folder / "silent.webm", colours=[(240, 240, 240)], seconds_per_colour=2.0),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=os.environ.get("MMEMBED_MEDIA_MODEL", "nvidia/omni-embed-nemotron-3b")
    )
    parser.add_argument(
        "--data", type=Path, help="where the recordings are written (default: a temporary folder)"
    )
    parser.add_argument("--index", type=Path, help="the index folder (default: a temporary folder)")
    parser.add_argument("--segment-seconds", type=float, default=4.0)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("queries", nargs="*", default=QUERIES)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("av") is None:
        print("this example decodes audio and video with PyAV: pip install 'mmembed-core[media]'")
        return 1
    with tempfile.TemporaryDirectory(prefix="mmembed-media-") as scratch:
        return run(args, Path(scratch))


def load_model(name: str, scratch: Path) -> mmembed.Encoder:
    """The requested encoder, or a tiny random one of its layout when the weights are out of reach."""
    try:
        return mmembed.load_encoder(name)
    except mmembed.MMEmbedError as exc:
        print(
            f"The weights of {name!r} could not be loaded here: {exc}\n"
            "With the weights on disk, pass their folder with --model DIR. Running the same pipeline now "
            "on a TINY RANDOM checkpoint instead: its SCORES ARE MEANINGLESS."
        )
    try:
        from mmembed_testing import make_tiny_checkpoint
    except ImportError:
        raise SystemExit(
            "the tiny stand-in model is built by mmembed-testing, which is not installed: "
            "pip install mmembed-testing, or pass --model with a checkpoint folder"
        ) from None
    return mmembed.load_encoder(str(make_tiny_checkpoint("omni_embed_nemotron", scratch / "tiny-omni")))


def run(args: argparse.Namespace, scratch: Path) -> int:
    data = args.data or scratch / "media_data"
    written = write_recordings(data)
    print(f"wrote {len(written)} recordings to {data}")
    encoder = load_model(args.model, scratch)
    print(f"encoder: {encoder.info.name} ({encoder.info.family}, dim {encoder.info.dim})")
    with mmembed.open_index(args.index or scratch / "media_index", encoder=encoder.info) as index:
        report = mmembed.index_documents(data, index, encoder, segment_seconds=args.segment_seconds)
        print(report.summary())
        retriever = mmembed.Retriever(index, encoder)
        for query, hits in zip(args.queries, retriever.search(args.queries, k=args.k), strict=True):
            print(f"query: {query!r}")
            for rank, hit in enumerate(hits, 1):
                span = hit.time_span
                where = f"{format_time(span[0])}–{format_time(span[1])}" if span else f"page {hit.page}"
                print(f"  {rank}. {hit.score:8.4f}  {Path(hit.source).name}  {where}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
