"""Hybrid search latency on the Qdrant backends: visual, text and hybrid per query, as ratios
to visual in the same process.

Random page vectors (multi-vector, the default pooled prefetch → MaxSim) and random
Zipf-distributed words per page, so only speed means anything here (recall of the text and
fused rankings is tested in tests/qdrant/test_qdrant_hybrid.py). Besides mmembed's hybrid
(both sides in one batched request, then Qdrant's RRF over prefetches restricted to the pages
each side found), it times the obvious alternative it replaced — one RRF fusion query over two
full prefetches, which runs the visual search a second time — as the baseline of that choice.

    python benchmarks/qdrant_hybrid.py --pages 3000 --engines edge
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from mmembed.index import PageInput, open_backend
from mmembed.types import EncoderInfo

ENCODER = EncoderInfo(name="bench/multi", family="colqwen2_5", kind="multi", dim=128, similarity="maxsim")
VOCABULARY = 5000


def build(engine: str, folder: str, pages: int, page_tokens: int, words: int, seed: int) -> Any:
    uri = f"qdrant-edge://{folder}/edge" if engine == "edge" else f"qdrant://{folder}/store/pages"
    index = open_backend(uri, ENCODER)
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(VOCABULARY)]
    weights = [1.0 / (i + 1) for i in range(VOCABULARY)]  # Zipf: a few very common words
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, pages, 250):
        index.add(
            [
                PageInput(
                    embedding=torch.randn(page_tokens, ENCODER.dim, generator=gen),  # (page_tokens, dim)
                    source=f"doc{i}.pdf",
                    page=1,
                    content_hash=hashlib.sha256(str(i).encode()).hexdigest(),
                    text=" ".join(rng.choices(vocab, weights, k=words)),
                )
                for i in range(start, min(pages, start + 250))
            ]
        )
    return index


def full_prefetch_fusion(index: Any, rows: torch.Tensor, text: str, depth: int, k: int) -> list[Any]:
    """The replaced design: one RRF fusion query over two full prefetches (qdrant-edge only)."""
    from mmembed_qdrant.text import TEXT, query_vector

    qe = index._qe
    sides = [
        index._visual(rows, depth, None),
        {"query": qe.Query.Nearest(index._sparse(query_vector(text)), using=TEXT)},
    ]
    request = qe.QueryRequest(
        limit=k,
        prefetches=[qe.Prefetch(limit=depth, **s) for s in sides],
        query=qe.Fusion.Rrf(k=61),
        with_payload=index._hit_payload,
    )
    return list(index._engine.query(request))


def median_ms(cases: dict[str, Callable[[int], object]], n: int, rounds: int) -> dict[str, float]:
    """Median ms per query of each case, timed interleaved (every case on query i, then i + 1),
    so the load of a shared machine falls on every case alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for i in range(n):
            for name, case in cases.items():
                start = time.perf_counter()
                case(i)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def measure(
    engine: str, args: argparse.Namespace, queries: torch.Tensor, texts: list[str]
) -> dict[str, float]:
    """Median ms per query of each case on a fresh store of ``engine``."""
    depth = max(args.k, 50)
    with tempfile.TemporaryDirectory() as folder:
        index = build(engine, folder, args.pages, args.page_tokens, args.words, args.seed)
        try:
            cases: dict[str, Callable[[int], object]] = {
                "visual": lambda i: index.search(queries[i : i + 1], args.k),
                "text": lambda i: index.search(None, args.k, mode="text", texts=[texts[i]]),
                "hybrid_rrf": lambda i: index.search(
                    queries[i : i + 1], args.k, mode="hybrid", texts=[texts[i]]
                ),
                "hybrid_alpha": lambda i: index.search(
                    queries[i : i + 1], args.k, mode="hybrid", texts=[texts[i]], alpha=0.5
                ),
            }
            if engine == "edge":
                cases["full_prefetch_rrf"] = lambda i: full_prefetch_fusion(
                    index, queries[i], texts[i], depth, args.k
                )
            for case in cases.values():  # warm up (the first queries load segments)
                case(0)
            return median_ms(cases, args.queries, args.rounds)
        finally:
            index.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=3000)
    ap.add_argument("--page-tokens", type=int, default=32)
    ap.add_argument("--words", type=int, default=200, help="words of text per page")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--query-tokens", type=int, default=16)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="times each query runs per case")
    ap.add_argument(
        "--engines", default="edge", help="comma-separated: edge, local (qdrant-client local mode)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    gen = torch.Generator().manual_seed(args.seed + 1)
    queries = torch.randn(args.queries, args.query_tokens, ENCODER.dim, generator=gen)  # (q, tokens, dim)
    rng = random.Random(args.seed + 1)
    texts = [" ".join(f"w{rng.randrange(50, VOCABULARY)}" for _ in range(4)) for _ in range(args.queries)]
    for engine in args.engines.split(","):
        ms = measure(engine, args, queries, texts)
        print(
            f"{engine}: {args.pages} pages x {args.page_tokens} tokens, {args.words} words, "
            f"{args.queries} queries x {args.rounds} rounds, k={args.k}; median ms/query"
        )
        for name, value in ms.items():
            print(f"  {name:<18} {value:8.1f} ms")
        ratios = " ".join(
            f"{name}={value / ms['visual']:.2f}x" for name, value in ms.items() if name != "visual"
        )
        print(f"{engine} vs visual: {ratios}")


if __name__ == "__main__":
    main()
