"""The main job, end to end: index a folder of PDFs as page images, then search it.

    make demo                       # or: python examples/demo.py [--model M] [--data DIR]

The model comes from ``--model`` or ``$MMEMBED_MODEL``; by default it is picked for the
machine: with a GPU, nomic-ai/colnomic-embed-multimodal-3b (3B parameters, best quality);
without one, the small model with the most published ViDoRe quality per second measured on a CPU
(``CPU_CANDIDATES``: colSmol-256M or ColModernVBert, ~250M parameters each, ~22-65 s per page on
2 cores; a 3B model takes over a minute per page). When its weights cannot be had, the demo says
so and runs the same pipeline on a tiny random checkpoint, whose scores are meaningless.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import mmembed
from mmembed.cli import MODEL_ENV
from mmembed.encoders import Encoder
from mmembed.loaders.sample_pdfs import write_sample_pdfs

ROOT = Path(__file__).resolve().parent.parent
QUERIES = [
    "installed solar capacity by year",
    "ingredients for a tomato soup",
    "quarterly revenue growth chart",
]


GPU_MODEL = "nomic-ai/colnomic-embed-multimodal-3b"
# The CPU candidates: (published ViDoRe v1 nDCG@5, pages/s relative to colSmol-256M, measured by
# benchmarks/encode.py: `mmembed index` with its defaults on full-size checkpoints, 1224x1584
# pages, 2 threads).
# The demo takes the one with the most published quality per measured second (docs/indexing-speed.md,
# "The CPU default").
CPU_CANDIDATES: dict[str, tuple[float, float]] = {
    "vidore/colSmol-256M": (80.1, 1.0),
    "ModernVBERT/colmodernvbert": (81.2, 0.72),
}
CPU_MODEL = max(CPU_CANDIDATES, key=lambda name: CPU_CANDIDATES[name][0] * CPU_CANDIDATES[name][1])


def default_model(has_gpu: bool) -> tuple[str, str]:
    """``(model, why)``: the demo's model for this machine when none was asked for."""
    if has_gpu:
        return GPU_MODEL, "a GPU is available, so the 3B model with the best retrieval quality"
    quality, speed = CPU_CANDIDATES[CPU_MODEL]
    others = "; ".join(
        f"{name} {q} at {s / speed:.2g}x its speed"
        for name, (q, s) in CPU_CANDIDATES.items()
        if name != CPU_MODEL
    )
    return CPU_MODEL, (
        "no GPU here, so the small model with the most published ViDoRe quality per measured CPU "
        f"second: nDCG@5 {quality} ({others}; docs/indexing-speed.md); "
        f"the 3B {GPU_MODEL} would take over a minute per page"
    )


def choose_model(asked: str | None, has_gpu: bool) -> tuple[str, str]:
    """``--model`` wins, then ``$MMEMBED_MODEL``, then :func:`default_model`."""
    if asked:
        return asked, "given with --model"
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV], f"from ${MODEL_ENV}"
    return default_model(has_gpu)


def load_model(name: str, cache: Path) -> tuple[Encoder, bool]:
    """The requested encoder, or a tiny random one when the weights are out of reach."""
    try:
        return mmembed.load_encoder(name), False
    except mmembed.MMEmbedError as exc:
        print(
            f"\nThe weights of {name!r} could not be loaded here: {exc}\n"
            "With the weights on disk, point the demo at their folder with `--model DIR` or "
            f"`{MODEL_ENV}=DIR make demo` (an adapter checkpoint needs its base model too, or "
            "`base_model=`); a GPU is strongly advised, a 3B model takes over a minute per page on "
            "a laptop CPU.\n"
            "Running the same pipeline now on a TINY RANDOM checkpoint instead: the ranking below "
            "only shows the plumbing, its SCORES ARE MEANINGLESS.\n",
            flush=True,
        )
    from mmembed_testing import make_tiny_checkpoint

    tiny = cache / "tiny-colqwen2_5"
    if not (tiny / "config.json").exists():
        make_tiny_checkpoint("colqwen2_5", tiny)
    return mmembed.load_encoder(str(tiny)), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        help=f"checkpoint id or folder (default: ${MODEL_ENV}, else {GPU_MODEL} on a GPU, {CPU_MODEL} on CPU)",
    )
    parser.add_argument("--data", type=Path, default=ROOT / "examples" / "data")
    parser.add_argument("--index", type=Path, default=ROOT / "demo_index")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache")
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("queries", nargs="*", default=QUERIES)
    args = parser.parse_args(argv)
    import torch

    args.model, why = choose_model(args.model, torch.cuda.is_available())
    print(f"model: {args.model} ({why}; --model picks another)", flush=True)

    args.data.mkdir(parents=True, exist_ok=True)
    if not any(args.data.glob("*.pdf")):
        written = write_sample_pdfs(args.data)
        print(f"wrote {len(written)} sample PDFs to {args.data}")

    encoder, meaningless = load_model(args.model, args.cache)
    print(
        f"encoder: {encoder.info.name} ({encoder.info.family}, {encoder.info.kind}-vector, dim {encoder.info.dim})"
    )

    if args.index.exists():
        existing = mmembed.open_index(args.index, create=False, readonly=True)
        same = existing.encoder == encoder.info
        existing.close()
        if not same:  # the demo's own folder: rebuild it for the other model
            shutil.rmtree(args.index)
    with mmembed.open_index(args.index, encoder=encoder.info) as index:
        report = mmembed.index_documents(args.data, index, encoder, progress=True)
        print(report.summary())
        print(f"index {args.index}: {index.count()} pages\n")
        retriever = mmembed.Retriever(index, encoder)
        for query, hits in zip(args.queries, retriever.search(args.queries, k=args.k), strict=True):
            label = "  (tiny random model: meaningless scores)" if meaningless else ""
            print(f"query: {query!r}{label}")
            for rank, hit in enumerate(hits, 1):
                print(f"  {rank}. {hit.score:9.4f}  {Path(hit.source).name}  page {hit.page}")
            print()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
