"""Exact MaxSim throughput: mmembed's scorer against colpali-engine's reference and the GEMM floor.

For each storage dtype (float32, float16) and each query batch size it prints pages/s of

* the reference: a faithful re-implementation of colpali-engine 0.3.18
  ``BaseVisualRetrieverProcessor.score_multi_vector`` (``pad_sequence`` batches of 128,
  ``einsum("bnd,csd->bcns")``, max over page tokens, sum over query tokens), computing in
  the storage dtype as it does. It is slow, so it runs on a subset of the pages and its
  pages/s is extrapolated (throughput is linear in the number of pages). When
  colpali-engine is installed, the re-implementation is first checked against it;
* mmembed's :func:`mmembed.scoring.maxsim` on the whole store, given as a ``Ragged`` (what
  the index passes);
* the floor: ``2 * query_tokens * page_tokens * dim * pages`` FLOPs at the best float32
  matmul rate measured in this process for this problem's shapes.

The machine may be shared, so the GEMM, the reference and mmembed are timed in interleaved
rounds (at least ``--repeats``, more while a case has run less than ``--case-seconds``) and
each keeps its best time. The last line holds the ratios:
``speedup`` = mmembed / reference pages/s, ``floor_ratio`` = mmembed time / floor time (the
floor uses the best GEMM rate of the whole run). Targets: speedup >= 4x, floor_ratio <= 1.5x.

    python benchmarks/maxsim.py                   # 10 000 pages, 1 and 16 queries
    python benchmarks/maxsim.py --pages 2000 --queries 1
"""

from __future__ import annotations

import argparse
import functools
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mmembed.scoring import Ragged, maxsim

REFERENCE_BATCH = 128  # colpali-engine's default batch_size


def reference_score_multi_vector(
    qs: list[torch.Tensor], ps: list[torch.Tensor], batch_size: int = REFERENCE_BATCH
) -> torch.Tensor:
    """colpali-engine 0.3.18 ``score_multi_vector`` on CPU, same steps and dtypes."""
    rows = []
    for i in range(0, len(qs), batch_size):
        q_batch = torch.nn.utils.rnn.pad_sequence(qs[i : i + batch_size], batch_first=True, padding_value=0)
        cols = []
        for j in range(0, len(ps), batch_size):
            p_batch = torch.nn.utils.rnn.pad_sequence(
                ps[j : j + batch_size], batch_first=True, padding_value=0
            )
            # (b, n, d) x (c, s, d) -> (b, c, n, s): max over page tokens s, sum over query tokens n
            cols.append(torch.einsum("bnd,csd->bcns", q_batch, p_batch).max(dim=3)[0].sum(dim=2))
        rows.append(torch.cat(cols, dim=1))
    return torch.cat(rows, dim=0).to(torch.float32)


def gemm_runs(query_tokens: int, dim: int, page_tokens: int) -> list[tuple[Callable[[], None], float]]:
    """``(run, flops)`` float32 matmuls of this problem's shape ``(query_tokens, dim) x (dim,
    n)`` in both operand orders and two widths, each ~2 GFLOP; the floor takes the best."""
    runs: list[tuple[Callable[[], None], float]] = []
    queries = torch.randn(query_tokens, dim)
    for pages in (8, 32):
        n = pages * page_tokens
        docs = torch.randn(n, dim)
        reps = max(1, int(2e9 // (2 * query_tokens * dim * n)))
        flops = 2.0 * query_tokens * dim * n * reps
        cases = [
            (queries, docs.t().contiguous(), torch.empty(query_tokens, n)),  # (q, dim) x (dim, n)
            (docs, queries.t(), torch.empty(n, query_tokens)),  # (n, dim) x (dim, q)
        ]
        runs += [(functools.partial(_repeat_mm, a, b, out, reps), flops) for a, b, out in cases]
    return runs


def _repeat_mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, reps: int) -> None:
    for _ in range(reps):
        torch.mm(a, b, out=out)


def parity_with_colpali(dtype: torch.dtype) -> str:
    """Check the re-implementation against the installed colpali-engine, if any."""
    try:
        from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor
    except Exception as exc:  # not installed, or incompatible with this torch/transformers
        return f"parity with colpali-engine skipped ({type(exc).__name__})"
    gen = torch.Generator().manual_seed(1)
    qs = [torch.randn(int(n), 128, generator=gen).to(dtype) for n in (5, 32, 17)]
    ps = [
        torch.randn(int(n), 128, generator=gen).to(dtype)
        for n in torch.randint(1, 300, (150,), generator=gen)
    ]
    theirs = BaseVisualRetrieverProcessor.score_multi_vector(qs, ps, device="cpu")
    ours = reference_score_multi_vector(qs, ps)
    return f"parity with colpali-engine score_multi_vector ({dtype}): max |diff| = {(theirs - ours).abs().max():.3g}"


@dataclass
class Case:
    """One storage dtype x query batch: best times over interleaved rounds."""

    tag: str
    n_queries: int
    n_pages: int
    n_reference_pages: int
    reference: Callable[[], torch.Tensor]
    ours: Callable[[], torch.Tensor]
    check: Callable[[], float]
    reference_s: float = float("inf")
    ours_s: float = float("inf")


def make_case(
    store: torch.Tensor, queries: list[torch.Tensor], t_page: int, tag: str, reference_seconds: float
) -> Case:
    n_pages = store.shape[0] // t_page
    offsets = torch.arange(n_pages + 1, dtype=torch.int64) * t_page
    docs = Ragged(store, offsets)  # what the index passes: flat rows + offsets, no copy
    pages = list(store.view(n_pages, t_page, -1).unbind(0))  # views, as a list for the reference
    # Size the reference subset (whole batches of 128) from one timed batch.
    probe = min(REFERENCE_BATCH, n_pages)
    probe_s = timed(functools.partial(reference_score_multi_vector, queries, pages[:probe]))
    n_ref = min(n_pages, max(probe, int(reference_seconds / probe_s * probe) // probe * probe))
    reference = functools.partial(reference_score_multi_vector, queries, pages[:n_ref])
    subset = Ragged(store[: n_ref * t_page], offsets[: n_ref + 1])

    def check() -> float:
        return float((maxsim(queries, subset) - reference()).abs().max())

    ours = functools.partial(maxsim, queries, docs)
    return Case(tag, len(queries), n_pages, n_ref, reference, ours, check)


def random_store(n_pages: int, t_page: int, dim: int, distinct: int = 512) -> torch.Tensor:
    """Unit-norm random page vectors. Only ``distinct`` pages are drawn (drawing ~10^9
    normals takes longer than the benchmark); the store repeats them, which changes nothing
    for the scorers: ``distinct`` pages (~200 MB) are far bigger than any cache."""
    base = torch.nn.functional.normalize(torch.randn(min(distinct, n_pages) * t_page, dim), dim=-1)
    store = torch.empty(n_pages * t_page, dim)
    for start in range(0, store.shape[0], base.shape[0]):
        block = store[start : start + base.shape[0]]
        block.copy_(base[: block.shape[0]])
    return store


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--queries", type=str, default="1,16", help="comma-separated query batch sizes")
    parser.add_argument("--page-tokens", type=int, default=768)
    parser.add_argument("--query-tokens", type=int, default=32)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved rounds at least; best time counts"
    )
    parser.add_argument(
        "--case-seconds", type=float, default=15.0, help="more rounds (up to 20) while a case took less"
    )
    parser.add_argument(
        "--reference-seconds",
        type=float,
        default=2.0,
        help="rough time of one reference run; sets the subset of pages it scores",
    )
    parser.add_argument("--no-parity", action="store_true", help="skip importing colpali-engine")
    args = parser.parse_args()
    n_pages, t_page, t_query, dim = args.pages, args.page_tokens, args.query_tokens, args.dim
    batch_sizes = [int(q) for q in args.queries.split(",")]
    torch.manual_seed(0)
    print(
        f"MaxSim benchmark: {n_pages} pages x {t_page} tokens x {dim} dims, {t_query}-token queries, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of >= {args.repeats} "
        "interleaved rounds"
    )
    if not args.no_parity:
        print(parity_with_colpali(torch.float32))

    store = random_store(n_pages, t_page, dim)  # (pages * tokens, dim) float32
    all_queries = [
        torch.nn.functional.normalize(torch.randn(t_query, dim), dim=-1) for _ in range(max(batch_sizes))
    ]
    gemms = {q: gemm_runs(q * t_query, dim, t_page) for q in batch_sizes}
    rates = dict.fromkeys(batch_sizes, 0.0)  # best float32 GFLOP/s seen, per query batch
    cases: list[Case] = []
    for dtype, tag in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        if dtype != torch.float32:
            store = store.to(dtype)  # the float32 store is freed: peak memory stays ~1.5 stores
            gc.collect()
        for q in batch_sizes:
            queries = [x.to(dtype) for x in all_queries[:q]]
            case = make_case(store, queries, t_page, tag, args.reference_seconds)
            start, rounds = time.perf_counter(), 0
            # Interleaved rounds, so all three see the same machine load; cheap cases get
            # more rounds within --case-seconds, for more chances at a quiet moment.
            while rounds < args.repeats or (time.perf_counter() - start < args.case_seconds and rounds < 20):
                for run, flops in gemms[q]:
                    rates[q] = max(rates[q], flops / timed(run) / 1e9)
                case.reference_s = min(case.reference_s, timed(case.reference))
                case.ours_s = min(case.ours_s, timed(case.ours))
                rounds += 1
            diff = case.check()
            report(case, rates[q], 2 * q * t_query * t_page * dim * n_pages, diff)
            cases.append(case)
    print(
        "float32 GEMM rate (best seen): "
        + ", ".join(f"{q * t_query} query tokens {r:.1f} GFLOP/s" for q, r in rates.items())
    )
    print("targets: speedup >= 4x, floor_ratio <= 1.5x")
    ratios = []
    for c in cases:
        floor_s = 2 * c.n_queries * t_query * t_page * dim * c.n_pages / (rates[c.n_queries] * 1e9)
        ratios += [
            f"speedup_{c.tag}_q{c.n_queries}={speedup(c):.1f}x",
            f"floor_ratio_{c.tag}_q{c.n_queries}={c.ours_s / floor_s:.2f}x",
        ]
    print(" ".join(ratios))


def speedup(c: Case) -> float:
    return (c.n_pages / c.ours_s) / (c.n_reference_pages / c.reference_s)


def report(c: Case, rate: float, flops: float, diff: float) -> None:
    floor_s = flops / (rate * 1e9)
    how = "all pages" if c.n_reference_pages == c.n_pages else f"on {c.n_reference_pages} pages, extrapolated"
    print(
        f"{c.tag} storage, {c.n_queries:>3} queries: reference {c.n_reference_pages / c.reference_s:8.1f} "
        f"pages/s ({how}) | mmembed {c.n_pages / c.ours_s:8.1f} pages/s ({c.ours_s:.3f} s) | floor "
        f"{c.n_pages / floor_s:8.1f} pages/s ({floor_s:.3f} s at {rate:.0f} GFLOP/s so far) | speedup "
        f"{speedup(c):.1f}x, floor ratio {c.ours_s / floor_s:.2f}x | max |mmembed - reference| {diff:.2g}"
    )


if __name__ == "__main__":
    main()
