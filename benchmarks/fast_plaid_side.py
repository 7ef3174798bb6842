"""fast-plaid on the scale benchmark's vectors, run in fast-plaid's own environment.

fast-plaid's wheels are built against one exact (older) torch, so it cannot share mmembed's
environment: ``benchmarks/scale.py --peers fast-plaid`` writes the pages and queries as
``.npy`` files into a folder and runs this script with ``--fast-plaid-python``. It builds a
fast-plaid index on CPU, times each query (top 10, one at a time after a warm-up) and prints
one JSON line: the config, build seconds, per-query latencies, the hits' page numbers (in the
order the pages were given), index bytes and peak RSS. Imports numpy, torch and fast_plaid
only (never mmembed).

    /work/side/fast-plaid/bin/python benchmarks/fast_plaid_side.py FOLDER [--probe 8] [--full 4096]
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
from fast_plaid import search


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--probe", type=int, default=8, help="n_ivf_probe")
    ap.add_argument("--full", type=int, default=4096, help="n_full_scores")
    ap.add_argument("--nbits", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(2)
    f = args.folder
    tokens, offsets = np.load(f / "pages.npy"), np.load(f / "offsets.npy")
    docs = [torch.from_numpy(tokens[a:b].astype(np.float32)) for a, b in itertools.pairwise(offsets)]
    qt, qo = np.load(f / "queries.npy"), np.load(f / "query_offsets.npy")
    queries = [torch.from_numpy(qt[a:b].astype(np.float32)) for a, b in itertools.pairwise(qo)]
    index = f / "fast-plaid-index"
    t0 = time.perf_counter()
    engine = search.FastPlaid(index=str(index), device="cpu")
    engine.create(documents_embeddings=docs, nbits=args.nbits)
    build_s = time.perf_counter() - t0

    def one(q: torch.Tensor) -> list[int]:
        found = engine.search(
            queries_embeddings=q.unsqueeze(0), top_k=10, n_ivf_probe=args.probe, n_full_scores=args.full
        )
        return [int(d) for d, _ in found[0]]

    one(queries[0])  # warm-up
    latencies, ids = [], []
    for q in queries:
        t = time.perf_counter()
        ids.append(one(q))
        latencies.append(time.perf_counter() - t)
    index_bytes = sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
    print(
        json.dumps(
            {
                "config": f"nbits={args.nbits} probe={args.probe} full={args.full}",
                "build_s": build_s,
                "latencies": latencies,
                "ids": ids,
                "index_bytes": index_bytes,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
