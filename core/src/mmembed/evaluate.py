"""Measure retrieval quality on your own documents: BEIR-style queries + qrels against an index.

Long because the queries / qrels readers, the metrics and the BEIR loader share one set of
checks (grades, ids, ``EvalError``) and are the one public API of ``mmembed eval``; splitting
the BEIR loader off would need those checks in a third module or an import circle.

    >>> from mmembed.evaluate import Qrels, measure
    >>> qrels: Qrels = {"q1": {"report.pdf#3": 1}}
    >>> measure({"q1": {"report.pdf#3": 0.9, "report.pdf#1": 0.2}}, qrels)["nDCG@10"]
    1.0

Metrics come from ``ir-measures`` (which runs ``pytrec_eval``), never from hand-written
formulas: ``pip install 'mmembed-core[eval]'``. Documents are named either by mmembed page id
or as ``source#page`` (the file's name, or its full path when the qrels use paths).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .types import MMEmbedError, PageRecord

if TYPE_CHECKING:
    from .index.protocol import Filter
    from .retrieve import Retriever

Qrels = dict[str, dict[str, int]]
"""query id -> document id -> relevance grade (0 = not relevant)."""
Run = dict[str, dict[str, float]]
"""query id -> document id -> score."""
DocIds = Literal["auto", "id", "source#page", "path#page"]

DEFAULT_METRICS = ("nDCG@1", "nDCG@5", "nDCG@10", "R@1", "R@5", "R@10", "R@100", "RR@10")
MAX_GRADE = 1000
"""Relevance grades are integers in ``[-MAX_GRADE, MAX_GRADE]`` (TREC uses small ones; a huge
grade crashes pytrec_eval or turns every metric into NaN)."""
MAX_FIELD_CHARS = 1 << 17
"""Longest cell of a TSV queries / qrels file (csv's own limit)."""


class EvalError(MMEmbedError):
    """Unreadable queries / qrels, or qrels that name nothing in the index."""


@dataclass
class EvalReport:
    """What :func:`evaluate` measured: the mean of each metric, and each query's values."""

    name: str
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    queries: int = 0
    unjudged_queries: list[str] = field(default_factory=list)
    """Queries without any relevant document in the qrels (left out of the means)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queries": self.queries,
            "metrics": self.metrics,
            "unjudged_queries": self.unjudged_queries,
        }


def require_ir_measures() -> None:
    """Refuse early (before a model loads) when the ``[eval]`` extra is missing."""
    _ir_measures()


def _ir_measures() -> Any:
    try:
        import ir_measures
    except ImportError as exc:
        raise EvalError(
            "evaluation uses the ir-measures library, which is not installed: pip install 'mmembed-core[eval]'"
        ) from exc
    return ir_measures


def measure(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries (ir-measures' aggregate). The run is
    measured in its own ranking order, equal scores as listed (see :func:`rank_scores`)."""
    return measure_per_query(run, qrels, metrics)[0]


def measure_per_query(
    run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(mean per metric, per-query values) for the queries with at least one relevant document."""
    ir = _ir_measures()
    try:
        parsed = [ir.parse_measure(m) for m in metrics]
    except (ValueError, NameError, SyntaxError) as exc:
        raise EvalError(
            f"unknown metric in {list(metrics)} ({exc}); e.g. nDCG@10, R@100, RR@10, P@5"
        ) from exc
    judged = {q: docs for q, docs in qrels.items() if any(grade > 0 for grade in docs.values())}
    # A judged query with no retrieved page still counts (as zero), so pass every judged id.
    full_run = {q: rank_scores(run.get(q, {})) for q in judged}
    aggregate = ir.calc_aggregate(parsed, judged, full_run)
    per_query: dict[str, dict[str, float]] = {q: {} for q in judged}
    for row in ir.iter_calc(parsed, judged, full_run):
        per_query[row.query_id][str(row.measure)] = float(row.value)
    means = {name: float(aggregate.get(m, 0.0)) for name, m in zip(metrics, parsed, strict=True)}
    return means, per_query


def rank_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """``scores`` rewritten as strictly decreasing rank scores (n, n-1, ..., 1), in the run's
    own order: highest score first, equal scores in the order the run lists them (for
    :func:`evaluate`, the order ``mmembed search`` returns). Providers break ties their own way
    (pytrec_eval by document id, MS MARCO's RR another), so without this one report could
    mix tie rules and a tie could rank differently at another ``k``."""
    ordered = sorted(scores, key=lambda doc: -scores[doc])  # stable: ties keep the run's order
    return {doc: float(len(ordered) - rank) for rank, doc in enumerate(ordered)}


def load_queries(path: str | Path) -> dict[str, str]:
    """BEIR ``queries.jsonl`` (``{"_id", "text"}``; ``id`` / ``query_id`` and ``query`` also read)
    or a two-column TSV ``id<TAB>text``."""
    path = Path(path)
    queries: dict[str, str] = {}
    for line_no, row in _rows(path):
        qid = row.get("_id", row.get("id", row.get("query_id", row.get("query-id"))))
        text = row.get("text", row.get("query"))
        if qid is None or not isinstance(text, str) or not text.strip():
            raise EvalError(f"{path}:{line_no}: a query needs an id (_id) and a non-empty text")
        queries[str(qid)] = text
    if not queries:
        raise EvalError(f"{path}: no queries")
    return queries


def load_qrels(path: str | Path) -> Qrels:
    """BEIR ``qrels/*.tsv`` (``query-id<TAB>corpus-id<TAB>score`` with a header line), TREC qrels
    (``qid 0 docid grade``) or JSONL (``{"query-id", "corpus-id", "score"}``)."""
    path = Path(path)
    qrels: Qrels = {}
    for line_no, row in _rows(path):
        qid = row.get("query-id", row.get("query_id", row.get("qid")))
        doc = row.get("corpus-id", row.get("corpus_id", row.get("doc_id", row.get("docid"))))
        grade = _grade(row.get("score", row.get("relevance", 1)), f"{path}:{line_no}")
        if qid is None or doc is None:
            raise EvalError(f"{path}:{line_no}: a judgement needs a query id and a corpus id")
        qrels.setdefault(str(qid), {})[str(doc)] = grade
    if not qrels:
        raise EvalError(f"{path}: no judgements")
    return qrels


def _grade(value: object, where: str) -> int:
    """A relevance grade: an integer (``2``, ``"2"``, ``2.0``) within ``[-MAX_GRADE, MAX_GRADE]``."""
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        grade = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        raise EvalError(f"{where}: relevance {_short(value)} is not an integer") from None
    if not -MAX_GRADE <= grade <= MAX_GRADE:
        raise EvalError(f"{where}: relevance {_short(value)} is outside [-{MAX_GRADE}, {MAX_GRADE}]")
    return grade


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines, each checked to be UTF-8."""
    out = []
    for line_no, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EvalError(
                f"{path}:{line_no}: not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                "save the file as UTF-8"
            ) from None
        if line.strip():
            out.append((line_no, line))
    return out


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise EvalError(f"no file at {path}")
    lines = _lines(path)
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for line_no, line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
            except RecursionError:
                raise EvalError(f"{path}:{line_no}: JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise EvalError(f"{path}:{line_no}: expected a JSON object, got a {type(row).__name__}")
            rows.append((line_no, row))
        return rows
    texts = [line for _, line in lines]
    numbers = [n for n, _ in lines]
    delimiter = "\t" if texts and "\t" in texts[0] else " "
    cells = []
    reader = csv.reader(texts, delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line_no = numbers[min(reader.line_num, len(numbers)) - 1]
            raise EvalError(
                f"{path}:{line_no}: cannot be read as {_delimiter_name(delimiter)} ({exc})"
            ) from None
        cells.append([c for c in row if c != ""])
    if len(cells) != len(numbers):  # a quoted cell spanning lines: number the rows instead
        numbers = list(range(1, len(cells) + 1))
    return _columns(path, cells, numbers, delimiter)


def _delimiter_name(delimiter: str) -> str:
    return "tab-separated values" if delimiter == "\t" else "space-separated values"


def _columns(
    path: Path, cells: list[list[str]], numbers: list[int], delimiter: str
) -> list[tuple[int, dict[str, Any]]]:
    if cells and cells[0] and cells[0][0] in ("query-id", "query_id", "qid", "_id", "id"):
        header, body = cells[0], cells[1:]
        return [(n, dict(zip(header, row, strict=False))) for n, row in zip(numbers[1:], body, strict=True)]
    if cells and all(len(row) == 4 for row in cells):  # TREC: qid iteration docid grade
        return [(n, {"qid": r[0], "docid": r[2], "score": r[3]}) for n, r in zip(numbers, cells, strict=True)]
    if cells and all(len(row) == 3 for row in cells):
        return [(n, {"qid": r[0], "docid": r[1], "score": r[2]}) for n, r in zip(numbers, cells, strict=True)]
    if cells and all(len(row) >= 2 for row in cells):  # queries: id, text
        return [(n, {"id": r[0], "text": delimiter.join(r[1:])}) for n, r in zip(numbers, cells, strict=True)]
    raise EvalError(f"{path}: cannot tell the columns apart; use BEIR's TSV with a header, or JSONL")


def doc_id(record: PageRecord, scheme: DocIds) -> str:
    """The name a qrels file gives a page under ``scheme``."""
    if scheme == "id":
        return record.id
    source = record.source if scheme == "path#page" else Path(record.source).name
    return f"{source}#{record.page}"


def guess_doc_ids(qrels: Qrels, records: Sequence[PageRecord]) -> DocIds:
    """The scheme under which most of the qrels' documents name pages of the index."""
    judged = {doc for docs in qrels.values() for doc in docs}
    best: tuple[int, DocIds] = (0, "id")
    for scheme in ("id", "source#page", "path#page"):
        names = {doc_id(r, scheme) for r in records}  # type: ignore[arg-type]
        hits = len(judged & names)
        if hits > best[0]:
            best = (hits, scheme)  # type: ignore[assignment]
    if best[0] == 0:
        example = next(iter(judged))
        shown = ", ".join(sorted({doc_id(r, "source#page") for r in records[:3]}))
        raise EvalError(
            f"none of the qrels' documents (e.g. {example!r}) is a page of the index: name pages by their "
            f"mmembed id or as source#page (e.g. {shown}), and check that the corpus was indexed"
        )
    return best[1]


def evaluate(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    k: int = 100,
    doc_ids: DocIds = "auto",
    metrics: Sequence[str] = DEFAULT_METRICS,
    where: Filter | None = None,
    batch_size: int = 1,
    name: str = "",
    mode: str = "visual",
    alpha: float | None = None,
    rrf_k: int | None = None,
) -> EvalReport:
    """Search every judged query (top ``k``) and measure the run against ``qrels``.
    ``mode`` / ``alpha`` / ``rrf_k``: the search mode (see :meth:`mmembed.Retriever.search`).

    What is measured is mmembed's own ranking, the one ``mmembed search`` shows: each query is
    encoded alone (``batch_size=1``; a larger batch is faster on a GPU, but padding shifts
    scores by ~1e-6 and can reorder near-ties), and pages with equal scores keep the order the
    index returned them in, whatever ``k`` (see :func:`rank_scores`)."""
    if k < 1:
        raise EvalError(f"k must be at least 1, got {k}")
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise EvalError(
            f"the qrels judge {len(missing)} query id(s) the queries file lacks, e.g. {missing[0]!r}"
        )
    scheme = doc_ids
    if scheme == "auto":
        scheme = guess_doc_ids(qrels, list(retriever.index.records()))
    judged = [q for q in qrels if any(g > 0 for g in qrels[q].values())]
    run: Run = {}
    for start in range(0, len(judged), batch_size):
        ids = judged[start : start + batch_size]
        modes: dict[str, Any] = {} if mode == "visual" else {"mode": mode, "alpha": alpha, "rrf_k": rrf_k}
        found = retriever.search([queries[q] for q in ids], k=k, where=where, **modes)
        for qid, hits in zip(ids, found, strict=True):
            ranked: list[str] = []
            for hit in hits:  # several pages may share a name (same file name in two folders): keep the best
                name_ = doc_id(hit.record, scheme)
                if name_ not in ranked:
                    ranked.append(name_)
            run[qid] = {name_: float(len(ranked) - rank) for rank, name_ in enumerate(ranked)}
    means, per_query = measure_per_query(run, qrels, metrics)
    return EvalReport(
        name=name or retriever.index.encoder.name,
        metrics=means,
        per_query=per_query,
        queries=len(judged),
        unjudged_queries=[q for q in qrels if q not in judged],
    )


def format_table(reports: Sequence[EvalReport]) -> str:
    """Metrics as rows, runs as columns (with the difference to the first run when comparing)."""
    names = list(reports[0].metrics)
    header = ["metric", *(r.name for r in reports)] + (["Δ"] if len(reports) == 2 else [])
    rows = [header]
    for metric in names:
        values = [r.metrics[metric] for r in reports]
        row = [metric, *(f"{v:.4f}" for v in values)]
        if len(reports) == 2:
            row.append(f"{values[1] - values[0]:+.4f}")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({reports[0].queries} judged queries)")
    return "\n".join(lines)


# -- BEIR datasets on the Hugging Face Hub (ViDoRe) ----------------------------------------

BEIR_SUBSETS = ("corpus", "queries", "qrels")


@dataclass
class BeirDataset:
    """A BEIR-style page-retrieval dataset: ViDoRe v2 (``corpus-id`` / ``query-id``) and v3
    (``corpus_id`` / ``query_id``) name their columns differently; both read the same."""

    name: str
    queries: dict[str, str]
    qrels: Qrels
    corpus: Any
    """The ``corpus`` subset (a ``datasets.Dataset`` with an ``image`` column)."""

    def page_files(self, folder: str | Path) -> dict[str, Path]:
        """Write each corpus page to ``folder/<corpus id>.png`` (kept when already there) and
        return corpus id -> file: mmembed indexes files, and a re-run finds them unchanged."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        id_column = _column(self.corpus, ("corpus-id", "corpus_id"), f"{self.name} corpus")
        _column(self.corpus, ("image",), f"{self.name} corpus")
        files: dict[str, Path] = {}
        for row in self.corpus:
            corpus_id = str(row[id_column])
            path = out / f"{_file_stem(corpus_id)}.png"
            if path in files.values():
                raise EvalError(f"{self.name}: two corpus ids make the same file name {path.name}")
            if not path.is_file():
                image = row["image"]
                if image is None:
                    raise EvalError(f"{self.name}: corpus page {corpus_id!r} has no image")
                image.convert("RGB").save(path)
            files[corpus_id] = path
        return files

    def file_qrels(self, files: Mapping[str, Path]) -> Qrels:
        """The qrels with each corpus id renamed to its page file's ``name#1``."""
        return {
            q: {f"{files[doc].name}#1": grade for doc, grade in docs.items() if doc in files}
            for q, docs in self.qrels.items()
        }


def load_beir_dataset(name: str, *, split: str = "test", language: str | None = None) -> BeirDataset:
    """ViDoRe-style BEIR dataset ``name`` (a Hub id such as ``vidore/vidore_v3_hr``, or a
    local copy in the same layout: ``corpus`` / ``queries`` / ``qrels`` configs or folders
    of parquet files) through Hugging Face ``datasets``. ``language`` keeps only the queries
    whose ``language`` column says so (ViDoRe v3 translates its queries)."""
    try:
        import datasets
    except ImportError as exc:
        raise EvalError(
            "loading datasets by name uses Hugging Face datasets, which is not installed: "
            "pip install 'mmembed-core[vidore]'"
        ) from exc
    if not Path(name).is_dir() and name.count("/") != 1:
        raise EvalError(
            f"--dataset {name!r} is neither a folder nor a Hub dataset id like vidore/vidore_v3_hr"
        )
    subsets = {subset: _load_subset(datasets, name, subset, split) for subset in BEIR_SUBSETS}
    queries_ds, qrels_ds = subsets["queries"], subsets["qrels"]
    qid_column = _column(queries_ds, ("query-id", "query_id"), f"{name} queries")
    text_column = _column(queries_ds, ("query", "text"), f"{name} queries")
    queries: dict[str, str] = {}
    for row in queries_ds:
        if language is None or row.get("language") == language:
            queries[str(row[qid_column])] = str(row[text_column])
    if not queries:
        raise EvalError(f"{name}: no queries" + (f" in language {language!r}" if language else ""))
    qrel_q = _column(qrels_ds, ("query-id", "query_id"), f"{name} qrels")
    qrel_doc = _column(qrels_ds, ("corpus-id", "corpus_id"), f"{name} qrels")
    qrels: Qrels = {}
    for row in qrels_ds:
        if str(row[qrel_q]) in queries:
            grade = _grade(row.get("score", 1), f"{name} qrels, query {row[qrel_q]!r}")
            qrels.setdefault(str(row[qrel_q]), {})[str(row[qrel_doc])] = grade
    return BeirDataset(name, queries, qrels, subsets["corpus"])


def _load_subset(datasets: Any, name: str, subset: str, split: str) -> Any:
    """One subset: the dataset's config of that name (ViDoRe v2 and v3 declare them), else
    the folder of that name (datasets without declared configs)."""
    try:
        try:
            return datasets.load_dataset(name, subset, split=split)
        except ValueError:  # no config of that name
            return datasets.load_dataset(name, data_dir=subset, split=split)
    except (OSError, ValueError) as exc:  # ConnectionError, OfflineModeIsEnabled, not found
        raise EvalError(
            f"cannot load the {subset!r} subset of {name} (split {split!r}): {exc}. Without access to the "
            "Hugging Face Hub, load it once where the Hub is reachable (datasets caches it) or pass a local "
            "copy: --dataset FOLDER holding corpus/, queries/ and qrels/ (HF_HUB_OFFLINE=1 skips the network retries)"
        ) from exc


def _column(dataset: Any, names: Sequence[str], what: str) -> str:
    columns = list(dataset.column_names)
    for candidate in names:
        if candidate in columns:
            return candidate
    raise EvalError(f"{what} has no {' / '.join(names)} column (its columns: {', '.join(columns)})")


def _file_stem(corpus_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in corpus_id).strip(".") or "_"
