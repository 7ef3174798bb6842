"""Distributed indexing throughput: pages/s of :func:`mmembed_ray.index_documents` with 1
and then 2 encoder actors on a local Ray cluster, against the single-process pipeline.

It builds a tiny random ColQwen2.5 (``mmembed_testing``) and a corpus of sample PDFs,
starts Ray with ``--cpus`` CPUs, and times each configuration end to end (listing,
rendering, encoding, writing; Ray start-up and actor model loading excluded by a warm-up
run), each into a fresh index. On CPU the encoders compete with rendering for the same
cores, so the numbers here say how the pipeline overlaps work, not how a GPU cluster
scales (one encoder actor per GPU; rendering on CPU nodes).

    python benchmarks/ray_index.py                 # 8 copies of the sample PDFs, 2 CPUs
    python benchmarks/ray_index.py --copies 16 --dpi 96
    python benchmarks/ray_index.py --target qdrant-edge --writers encoders   # Qdrant's engine

``--target`` picks the index: a folder (the embedded index), ``qdrant-edge`` (Qdrant's
embedded engine) or ``qdrant-local`` (qdrant-client's local mode); ``--writers`` who
upserts: the driver, or the encoder actors themselves (on these one-process-per-folder
targets they take turns; on a Qdrant server they write in parallel).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--copies", type=int, default=8, help="copies of the sample PDFs (3 files, 9 pages each set)"
    )
    parser.add_argument("--dpi", type=int, default=72)
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs for rendering (+2 for encoders)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--target", choices=("folder", "qdrant-edge", "qdrant-local"), default="folder")
    parser.add_argument("--writers", choices=("driver", "encoders"), default="driver")
    args = parser.parse_args()

    import ray

    import mmembed
    from mmembed.loaders.sample_pdfs import write_sample_pdfs
    from mmembed_ray import index_documents
    from mmembed_testing import make_tiny_checkpoint

    root = Path(tempfile.mkdtemp(prefix="mmembed-ray-bench-"))
    try:
        model = str(make_tiny_checkpoint("colqwen2_5", root / "model", seed=0))
        corpus = root / "corpus"
        for i in range(args.copies):
            write_sample_pdfs(corpus / f"set{i}")
        for i, pdf in enumerate(sorted(corpus.rglob("*.pdf"))):
            with pdf.open("ab") as f:  # make every copy's bytes unique, so every page is indexed
                f.write(f"\n% copy {i}\n".encode())

        encoder = mmembed.load_encoder(model)
        start = time.perf_counter()
        with mmembed.open_index(root / "single", encoder.info) as index:
            report = mmembed.index_documents(corpus, index, encoder, dpi=args.dpi, batch_size=args.batch_size)
        single = report.pages_indexed / (time.perf_counter() - start)
        print(f"single process: {report.pages_indexed} pages, {single:.1f} pages/s")

        # Each encoder actor holds one logical CPU; render tasks need free ones besides, else
        # 2 encoders on 2 slots starve the renderers. Logical slots, not extra cores.
        ray.init(num_cpus=args.cpus + 2, include_dashboard=False, log_to_driver=False)

        def target(name: str) -> str:
            if args.target == "qdrant-edge":
                return f"qdrant-edge://{root / name}"
            if args.target == "qdrant-local":
                return f"qdrant://{root / name}/pages"
            return str(root / name)

        index_documents(corpus / "set0", target("warmup"), model, dpi=args.dpi)  # workers, imports
        for encoders in (1, 2):
            start = time.perf_counter()
            report = index_documents(
                corpus,
                target(f"ray{encoders}"),
                model,
                encoders=encoders,
                dpi=args.dpi,
                batch_size=args.batch_size,
                writers=args.writers,
            )
            rate = report.pages_indexed / (time.perf_counter() - start)
            print(
                f"ray into {args.target}, {encoders} encoder(s), {args.writers} writes: "
                f"{report.pages_indexed} pages, {rate:.1f} pages/s"
            )
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
