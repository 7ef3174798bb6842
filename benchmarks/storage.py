"""Exact-scan speed of each storage codec on the same vectors: float16 (default), int8, float32.

Three indexes hold the same unit-norm pages; each round searches every index once with the
same queries, in turn (interleaved, so load from other jobs hits all codecs alike), and the
median seconds per query are compared with float16's. Speed only: recall of each mode is
measured on real structure by ``benchmarks/scale.py``.

    python benchmarks/storage.py --pages 1500 --page-tokens 512
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mmembed.index import PageInput, open_index
from mmembed.types import EncoderInfo

CODECS = ("float16", "int8", "float32")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=1500)
    ap.add_argument("--page-tokens", type=int, default=512)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--query-tokens", type=int, default=24)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    enc = EncoderInfo(name="bench/storage", family="bench", kind="multi", dim=args.dim, similarity="maxsim")
    g = torch.Generator().manual_seed(0)

    def unit(rows: int) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.randn(rows, args.dim, generator=g), dim=1)  # (rows, dim)

    pages = [unit(args.page_tokens) for _ in range(args.pages)]
    queries = [unit(args.query_tokens) for _ in range(args.queries)]
    root = Path(tempfile.mkdtemp(prefix="mmembed-storage-"))
    try:
        indexes = {name: open_index(root / name, enc, storage=name) for name in CODECS}
        for index in indexes.values():
            for a in range(0, len(pages), 250):
                index.add(
                    [PageInput(p, "x", i + 1, f"{i:064x}") for i, p in enumerate(pages[a : a + 250], start=a)]
                )
            index.search([queries[0]], k=10)  # map the segments before timing
        seconds: dict[str, list[float]] = {name: [] for name in CODECS}
        for _ in range(args.rounds):
            for name, index in indexes.items():
                started = time.perf_counter()
                index.search(queries, k=10)
                seconds[name].append((time.perf_counter() - started) / len(queries))
        per_query = {name: statistics.median(times) for name, times in seconds.items()}
        bytes_per_token = {name: index.info()["bytes_per_token"] for name, index in indexes.items()}
        for index in indexes.values():
            index.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.pages} pages x {args.page_tokens} tokens x {args.dim}-d, {args.query_tokens}-token queries, "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"{'storage':<8} {'bytes/token':>11} {'ms/query':>9} {'vs float16':>10}")
    for name in CODECS:
        ratio = per_query[name] / per_query["float16"]
        print(f"{name:<8} {bytes_per_token[name]:>11} {per_query[name] * 1e3:>9.1f} {ratio:>9.2f}x")


if __name__ == "__main__":
    main()
