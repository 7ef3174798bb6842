"""PLAID first stage and its compressed (residual) rerank against the exact scan, one process.

Corpus with real structure, never random vectors: the distinct-page MiniLM corpus that
``benchmarks/corpus.py`` caches (``--corpus`` folder, its first ``--pages`` pages), or a
``benchmarks/scale.py`` cache ``.npz``. Builds one ``first_stage="plaid"`` index (float16
vectors), then prints for each setting: recall@10 vs the exact scan, p50 latency and its
ratio to the exact scan's p50 (same process, same queries), and the compressed rerank's
recall@10 — the residual codes' MaxSim alone ranking the PLAID candidates, no float16 read.

    python benchmarks/plaid.py --corpus /work/cache/scale --pages 10000 --candidates 50,100 --nprobe 2,4
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmembed.index import PageInput, open_index, plaid, plaid_search
from mmembed.types import EncoderInfo


def load(args: argparse.Namespace) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """``(pages, queries)``: ``(tokens, dim)`` float16 arrays and float32 query tensors, from the
    distinct-page corpus (``benchmarks/corpus.py``'s cache) or a ``scale.py`` cache ``.npz``."""
    if args.corpus.endswith(".npz"):
        stored = np.load(args.corpus)
        n = min(int(stored["pages"]), args.pages or int(stored["pages"]))
        pages = [stored[f"page{i}"] for i in range(n)]
        queries = [torch.from_numpy(stored[f"query{i}"]).float() for i in range(int(stored["queries"]))]
        return pages, queries
    sys.path.insert(0, str(Path(args.corpus_code)))
    from corpus import built_pages, load_corpus  # type: ignore[import-not-found]

    cache = Path(args.corpus)
    n = min(args.pages or built_pages(cache), built_pages(cache))
    corpus = load_corpus(n, cache)
    return list(corpus.pages), [torch.from_numpy(np.asarray(q)).float() for q in corpus.queries]


def build(path: Path, pages: list[np.ndarray], enc: EncoderInfo) -> float:
    t0 = time.perf_counter()
    with open_index(path, enc, first_stage="plaid") as ix:
        ix.graph_extend_pages = 1 << 30  # one build at the end, like a bulk load
        for a in range(0, len(pages), 500):
            ix.add(
                [
                    PageInput(
                        embedding=torch.from_numpy(p).float(),
                        source=f"p{a + i}.txt",
                        page=1,
                        content_hash=f"{a + i:024x}" + "0" * 40,
                    )
                    for i, p in enumerate(pages[a : a + 500])
                ]
            )
        ix.extend_graph()
    return time.perf_counter() - t0


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / max(len(t), 1) for f, t in zip(found, truth, strict=True)]))


def timed(fn, queries: list[torch.Tensor]) -> tuple[list[list[str]], float]:  # type: ignore[no-untyped-def]
    ids, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = fn(q)
        times.append(time.perf_counter() - t0)
        ids.append(hits)
    return ids, statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--corpus", default="/work/cache/scale", help="the corpus cache folder, or a scale.py .npz"
    )
    ap.add_argument("--corpus-code", default=str(Path(__file__).parent), help="folder of corpus.py")
    ap.add_argument("--pages", type=int, default=0, help="use only this many pages (0: all)")
    ap.add_argument("--candidates", default="100")
    ap.add_argument("--nprobe", default=str(plaid_search.NPROBE))
    ap.add_argument("--ndocs", default=str(plaid_search.NDOCS))
    ap.add_argument("--threshold", default=str(plaid_search.CENTROID_THRESHOLD))
    ap.add_argument("--centroids-per-root", type=float, default=plaid.CENTROIDS_PER_ROOT_TOKEN)
    ap.add_argument(
        "--queries", type=int, default=40, help="use only the first N queries, half paraphrase half held-out"
    )
    ap.add_argument("--exact-latency-queries", type=int, default=10)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    pages, queries = load(args)
    half = args.queries // 2  # the corpus lists paraphrases first, then held-out openings
    queries = queries[:half] + queries[len(queries) // 2 : len(queries) // 2 + args.queries - half]
    dim = int(pages[0].shape[1])
    enc = EncoderInfo(name="bench/plaid", family="bench", kind="multi", dim=dim, similarity="maxsim")
    plaid.CENTROIDS_PER_ROOT_TOKEN = args.centroids_per_root
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mmembed-plaid-"))
    tokens = sum(int(p.shape[0]) for p in pages)
    try:
        seconds = float("nan")  # an index kept in --workdir by an earlier run is reused
        if (workdir / "ix" / "manifest.json").is_file() and not (
            workdir / "ix" / "plaid" / "plaid.json"
        ).is_file():
            with open_index(workdir / "ix") as ix:  # pages stored by an interrupted run: code them
                t0 = time.perf_counter()
                ix.extend_graph()
                seconds = time.perf_counter() - t0
        elif not (workdir / "ix" / "plaid" / "plaid.json").is_file():
            seconds = build(workdir / "ix", pages, enc)
        state = plaid.read_state(workdir / "ix")
        assert state.layout is not None
        k_centroids = int(state.layout["centroids"][2][0])
        file_bytes = (workdir / "ix" / "plaid" / str(state.file)).stat().st_size
        print(
            f"{len(pages)} pages, {tokens / len(pages):.0f} tokens/page avg, dim {dim}, {len(queries)} queries; "
            f"PLAID build {seconds:.0f} s, {k_centroids} centroids, {NBITS_NOTE}, "
            f"PLAID file {file_bytes / len(pages) / 1024:.1f} KB/page "
            f"({file_bytes / tokens:.1f} B/token; float16 {2 * dim} B/token); "
            f"{torch.get_num_threads()} torch threads, machine shared"
        )
        with open_index(workdir / "ix") as ix:
            exact_ids = [[h.id for h in hits] for hits in ix.search(queries, 10, exact=True)]
            _, exact_p50 = timed(
                lambda q: [h.id for h in ix.search([q], 10, exact=True)[0]],
                queries[: args.exact_latency_queries],
            )
            print(f"{'mode':44} {'recall@10':>9} {'p50 ms':>8} {'x exact':>8} {'codes-only r@10':>15}")
            print(f"{'exact (float16)':44} {1.0:9.3f} {exact_p50:8.1f} {1.0:8.2f} {'':>15}")
            _, arrays = ix._snapshots.plaid.state_and_arrays()  # type: ignore[attr-defined]
            assert arrays is not None
            for nprobe in [int(x) for x in args.nprobe.split(",")]:
                for ndocs in [int(x) for x in args.ndocs.split(",")]:
                    for threshold in [float(x) for x in args.threshold.split(",")]:
                        plaid_search.NPROBE, plaid_search.NDOCS = nprobe, ndocs
                        plaid_search.CENTROID_THRESHOLD = threshold
                        codes_only = compressed_recall(ix, arrays, queries, exact_ids)
                        for c in [int(x) for x in args.candidates.split(",")]:
                            ids, p50 = timed(
                                lambda q, c=c: [h.id for h in ix.search([q], 10, candidates=c)[0]], queries
                            )
                            name = f"plaid nprobe={nprobe} t={threshold} ndocs={ndocs} C={c}"
                            print(
                                f"{name:44} {recall(ids, exact_ids):9.3f} {p50:8.1f} "
                                f"{exact_p50 / p50:8.2f} {codes_only:15.3f}"
                            )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


NBITS_NOTE = f"{plaid.NBITS}-bit residuals"
CODES_POOL = 256
"""Pages of the centroid interaction the codes-only rerank ranks (at least ``NDOCS``)."""


def compressed_recall(ix, arrays, queries: list[torch.Tensor], exact_ids: list[list[str]]) -> float:  # type: ignore[no-untyped-def]
    """recall@10 of the compressed rerank: the centroid interaction's best ``CODES_POOL`` pages
    ranked by the residual codes' MaxSim alone (no float16 read)."""
    id_of_row = {}
    with ix._snapshots.read() as conn:  # type: ignore[attr-defined]
        for row, pid in conn.execute("SELECT row, id FROM pages"):
            id_of_row[int(row)] = str(pid)
    rows = np.asarray(arrays.rows)
    allowed = np.arange(rows.shape[0], dtype=np.int64)
    found = []
    for q in queries:
        pages = plaid_search.candidate_pages(arrays, q, allowed, max(plaid_search.NDOCS, CODES_POOL))
        scores = plaid_search.residual_maxsim(arrays, q, pages)
        best = pages[np.argsort(-scores, kind="stable")[:10]]
        found.append([id_of_row[int(rows[p])] for p in best])
    return recall(found, exact_ids)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
