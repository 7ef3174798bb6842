"""Training pairs: (query, page of the index), read from a file and checked against the index.

Formats:

- JSONL, one pair per line: ``{"query": ..., "source": "report.pdf", "page": 3}`` (``source``
  as stored in the index, or its file name when that is unambiguous) or ``{"query": ...,
  "id": "<mmembed page id>"}``;
- a BEIR / ViDoRe-layout folder (what ``mmembed eval`` reads): ``queries.jsonl`` and
  ``qrels/*.tsv`` (or ``qrels.tsv``), documents named by page id, ``source#page`` or
  ``path#page``; every judgement with a grade above 0 is a pair.

Every problem is an error naming the line and what to do (:class:`PairsError`): a page the
index does not hold, an empty query, the same pair twice, a file written for another index.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..evaluate import EvalError, doc_id, guess_doc_ids, load_qrels, load_queries
from ..types import MMEmbedError, PageRecord

MIN_PAIRS = 2
"""In-batch negatives need at least two pairs in a batch."""


class PairsError(MMEmbedError):
    """Training pairs that cannot be used as given (the message names the line)."""


@dataclass(frozen=True)
class TrainPair:
    """One query and the page that answers it."""

    query: str
    page_id: str
    where: str
    """Where the pair came from, as errors name it (``pairs.jsonl:3``)."""


@dataclass(frozen=True)
class PairSplit:
    """Pairs for training and held-out pairs (on pages training never sees)."""

    train: list[TrainPair]
    held_out: list[TrainPair]


class PageLookup:
    """Finds index pages by id, by ``source`` + ``page`` or by file name + ``page``."""

    def __init__(self, records: Iterable[PageRecord]) -> None:
        self.by_id: dict[str, PageRecord] = {}
        self.by_source: dict[tuple[str, int], PageRecord] = {}
        by_name: dict[tuple[str, int], list[PageRecord]] = {}
        for record in records:
            self.by_id[record.id] = record
            self.by_source[(record.source, record.page)] = record
            by_name.setdefault((Path(record.source).name, record.page), []).append(record)
        self.by_name = by_name

    def find(self, source: str, page: int) -> PageRecord | None:
        found = self.by_source.get((source, page))
        if found is None:
            resolved = str(Path(source).expanduser().resolve()) if source else source
            found = self.by_source.get((resolved, page))
        if found is None:
            named = self.by_name.get((Path(source).name, page), [])
            if len(named) > 1:
                raise PairsError(
                    f"{len(named)} indexed files are named {Path(source).name!r} "
                    f"({', '.join(r.source for r in named[:3])}); give the full source path"
                )
            found = named[0] if named else None
        return found

    def examples(self) -> str:
        shown = list(self.by_source)[:3]
        return ", ".join(f"{s}#{p}" for s, p in shown) or "nothing"


def read_pairs(path: str | Path, records: Sequence[PageRecord], *, index_path: str = "") -> list[TrainPair]:
    """The pairs of ``path`` (JSONL file or BEIR folder), each resolved to a page of the index
    whose ``records`` are given; raises :class:`PairsError` (see module docstring)."""
    path = Path(path)
    lookup = PageLookup(records)
    where = f" at {index_path}" if index_path else ""
    if path.is_dir():
        pairs, missing = _beir_pairs(path, records, lookup)
    elif path.is_file():
        pairs, missing = _jsonl_pairs(path, lookup)
    else:
        raise PairsError(f"no pairs file or folder at {path}")
    if missing and not pairs:
        raise PairsError(
            f"none of the {len(missing)} pair(s) in {path} names a page of the index{where} "
            f"(first: {missing[0]}); is the pairs file for another index? The index holds e.g. "
            f"{lookup.examples()}."
        )
    if missing:
        raise PairsError(
            f"{len(missing)} pair(s) name pages that are not in the index{where}, first: {missing[0]}. "
            f"Index those files first (`mmembed index <files> --index {index_path or '<index>'}`) or remove "
            "the pairs."
        )
    _check_duplicates(pairs)
    if len(pairs) < MIN_PAIRS:
        raise PairsError(f"{path}: {len(pairs)} pair(s); training needs at least {MIN_PAIRS}")
    return pairs


def _checked_query(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise PairsError(f"{where}: the query must be a string, got {type(text).__name__}")
    if not text.strip():
        raise PairsError(f"{where}: empty query; give the text a user would search with, or remove the line")
    return text


def _jsonl_pairs(path: Path, lookup: PageLookup) -> tuple[list[TrainPair], list[str]]:
    pairs: list[TrainPair] = []
    missing: list[str] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise PairsError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise PairsError(
                f'{where}: expected an object such as {{"query": ..., "source": ..., "page": 1}}'
            )
        query = _checked_query(row.get("query", row.get("text")), where)
        if "id" in row:
            record = lookup.by_id.get(str(row["id"]))
            named = f"page id {row['id']!r}"
        elif "source" in row and "page" in row:
            try:
                page = int(row["page"])
            except (TypeError, ValueError):
                raise PairsError(f"{where}: page {row['page']!r} is not a page number") from None
            record = lookup.find(str(row["source"]), page)
            named = f"page {page} of {row['source']}"
        else:
            raise PairsError(f'{where}: a pair needs "id", or "source" and "page" (1-based)')
        if record is None:
            missing.append(f"{where}: {named}")
            continue
        pairs.append(TrainPair(query, record.id, where))
    return pairs, missing


def _beir_pairs(
    folder: Path, records: Sequence[PageRecord], lookup: PageLookup
) -> tuple[list[TrainPair], list[str]]:
    queries_file = folder / "queries.jsonl"
    qrels_files = sorted((folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
    if (folder / "qrels.tsv").is_file():
        qrels_files.append(folder / "qrels.tsv")
    if not queries_file.is_file() or not qrels_files:
        raise PairsError(
            f"{folder} is not a BEIR-layout folder (queries.jsonl and qrels/*.tsv); or pass a JSONL pairs file"
        )
    try:
        queries = load_queries(queries_file)
        qrels: dict[str, dict[str, int]] = {}
        for file in qrels_files:
            for qid, docs in load_qrels(file).items():
                qrels.setdefault(qid, {}).update(docs)
        scheme = guess_doc_ids(qrels, list(records))
    except EvalError as err:
        raise PairsError(str(err)) from err
    names = {doc_id(r, scheme): r for r in records}
    pairs: list[TrainPair] = []
    missing: list[str] = []
    for qid, docs in qrels.items():
        where = f"{folder.name}: query {qid!r}"
        if qid not in queries:
            raise PairsError(f"{where} is judged in the qrels but missing from queries.jsonl")
        query = _checked_query(queries[qid], where)
        for doc, grade in docs.items():
            if grade <= 0:
                continue
            record = names.get(doc)
            if record is None:
                missing.append(f"{where}: document {doc!r}")
            else:
                pairs.append(TrainPair(query, record.id, f"{where} -> {doc}"))
    return pairs, missing


def _check_duplicates(pairs: Sequence[TrainPair]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for pair in pairs:
        key = (pair.query.strip(), pair.page_id)
        if key in seen:
            raise PairsError(
                f"{pair.where}: the same pair as {seen[key]} (query {pair.query!r}, page {pair.page_id}); "
                "a duplicate counts twice in training and would be its own negative in a batch. Remove it."
            )
        seen[key] = pair.where


def positives_by_query(pairs: Iterable[TrainPair]) -> dict[str, set[str]]:
    """Every page known to answer each query text (never a negative for it)."""
    known: dict[str, set[str]] = {}
    for pair in pairs:
        known.setdefault(pair.query.strip(), set()).add(pair.page_id)
    return known


def split_pairs(pairs: Sequence[TrainPair], eval_fraction: float, *, seed: int) -> PairSplit:
    """Hold out ``eval_fraction`` of the *pages* (with all their pairs), so that evaluation
    runs on pages training never saw. ``0`` keeps every pair for training."""
    if not 0 <= eval_fraction < 1:
        raise PairsError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    pages = sorted({p.page_id for p in pairs})
    random.Random(seed).shuffle(pages)
    n_held = round(len(pages) * eval_fraction)
    if eval_fraction > 0 and n_held == 0 and len(pages) > MIN_PAIRS:
        n_held = 1
    held = set(pages[:n_held])
    split = PairSplit([p for p in pairs if p.page_id not in held], [p for p in pairs if p.page_id in held])
    if len(split.train) < MIN_PAIRS:
        raise PairsError(
            f"holding out {eval_fraction:.0%} of the pages leaves {len(split.train)} training pair(s); "
            "give more pairs or a smaller eval fraction (--eval-fraction)"
        )
    return split
