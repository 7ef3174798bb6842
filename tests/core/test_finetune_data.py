"""What ``mmembed train`` trains on, and how it survives running out of memory (issue 24):
pseudo-queries from the pages' own text, BEIR folders as pairs, ``--source-key``, the bad
inputs each with a named error, and the batch halving on out-of-memory.

The index here (:func:`text_index`): 12 text pages in 2 reportlab PDFs (two departments, as
metadata) plus the 8 textless pages of ``colour_pages``' ``plain.pdf``, on a tiny random
ColQwen2.5 checkpoint. Runs are 1-2 optimizer steps: they prove the wiring, not learning
(``test_finetune.py`` proves learning).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import mmembed
from mmembed.finetune import PairsError, TrainError, TrainUsageError
from mmembed.finetune.pseudo import MAX_QUERY_CHARS, MAX_QUERY_WORDS, sample_pseudo_queries
from mmembed_testing.colour_pages import DPI, ColourPages, write_colour_pages

SHORT: dict[str, Any] = {"max_steps": 2, "batch_size": 4, "negatives": 1, "dpi": DPI, "lora_dropout": 0.0}
TOPICS = ("harbour", "orchard", "railway", "glacier", "bakery", "observatory")
FIELDS = ("budget", "staffing", "safety", "inventory", "maintenance", "energy")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _page_text(doc: int, page: int) -> list[str]:
    topic, field = TOPICS[page], FIELDS[(page + doc) % len(FIELDS)]
    return [
        f"Quarterly {field} review of the {topic} project, volume {doc + 1}.",
        f"The {topic} team reported {12 * page + doc + 3} open items in {field} planning.",
        f"Contractors finished the {topic} {field} audit before the winter deadline.",
        f"Next steps for the {topic}: a second {field} survey and a public summary.",
    ]


def _write_text_pdfs(folder: Path) -> list[Path]:
    from reportlab.pdfgen import canvas

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in range(2):
        path = folder / f"report-{doc}.pdf"
        pdf = canvas.Canvas(str(path), pagesize=(288, 288), invariant=1)
        for page in range(6):
            pdf.setFillColorRGB(page / 6, 0.3 + 0.3 * doc, 1 - page / 6)
            pdf.rect(0, 200, 288, 88, stroke=0, fill=1)
            pdf.setFillColorRGB(0, 0, 0)
            for line, text in enumerate(_page_text(doc, page)):
                pdf.setFont("Helvetica", 7)
                pdf.drawString(8, 180 - 14 * line, text)
            pdf.showPage()
        pdf.save()
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def colour_pages(tmp_path_factory: pytest.TempPathFactory) -> ColourPages:
    return write_colour_pages(tmp_path_factory.mktemp("colour_pages"))


@pytest.fixture(scope="module")
def text_index(
    tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path, colour_pages: ColourPages
) -> Path:
    """12 text pages (two files, metadata ``dept``) + 8 textless colour pages."""
    folder = tmp_path_factory.mktemp("text_index")
    reports = _write_text_pdfs(folder / "docs")
    encoder = mmembed.load_encoder(tiny_colqwen2_5)
    path = folder / "index"
    index = mmembed.open_index(path, encoder.info)
    try:
        report = mmembed.index_documents(
            [*reports, colour_pages.docs / "plain.pdf"],
            index,
            encoder,
            dpi=DPI,
            metadata=lambda source: {"dept": "north" if "report-0" in source else "south"},
        )
        assert report.pages_indexed == 20 and not report.issues, report.summary()
    finally:
        index.close()
    return path


def _records(index: Path) -> list[Any]:
    opened = mmembed.open_index(index, create=False, readonly=True)
    try:
        return list(opened.records())
    finally:
        opened.close()


# -- pseudo-queries: sampling properties -------------------------------------------------


def _random_pages(seed: int) -> dict[str, str | None]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(400)] + ["the", "of", "and", "to", "in"]
    pages: dict[str, str | None] = {}
    for p in range(30):
        if p % 7 == 0:
            pages[f"p{p}"] = None if p % 2 else "   \n "
            continue
        sentences = [
            " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 40))) + rng.choice([".", "!", "?", ""])
            for _ in range(rng.randint(1, 6))
        ]
        pages[f"p{p}"] = " ".join(sentences) + "\n\nPage footer of the report."
    pages["tiny"] = "Four words only here."
    return pages


def _words(text: str) -> list[str]:
    return re.findall(r"\w[\w'’-]*", text.lower())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pseudo_queries_are_bounded_parts_of_their_own_page(seed: int) -> None:
    pages = _random_pages(seed)
    pairs, summary = sample_pseudo_queries(pages, 3, seed=seed)
    assert pairs and summary.queries == len(pairs)
    per_page: dict[str, list[str]] = {}
    for pair in pairs:
        per_page.setdefault(pair.page_id, []).append(pair.query)
        text = pages[pair.page_id]
        assert text is not None
        query_words, page_words = _words(pair.query), _words(text)
        assert 0 < len(query_words) < len(page_words), "never the whole page"
        assert len(query_words) <= MAX_QUERY_WORDS and len(pair.query) <= MAX_QUERY_CHARS
        assert " ".join(query_words) in " ".join(page_words), "a query is a run of the page's own words"
        assert "footer" not in query_words, "text on every page (a footer) names no page"
    assert all(len(qs) == len(set(qs)) <= 3 for qs in per_page.values())
    # Pages without text are skipped and counted; so is a page too short to have a part.
    empty = [p for p, t in pages.items() if not (t or "").strip()]
    assert summary.pages_without_text == len(empty) and not set(empty) & set(per_page)
    assert "tiny" not in per_page and summary.pages_with_too_little_text >= 1
    assert summary.pages_with_queries == len(per_page)
    # Deterministic for a seed.
    assert sample_pseudo_queries(pages, 3, seed=seed)[0] == pairs
    assert sample_pseudo_queries(pages, 3, seed=seed + 10)[0] != pairs


def test_pseudo_queries_mix_sentences_and_key_phrases() -> None:
    text = " ".join(_page_text(0, 2))
    pairs, _ = sample_pseudo_queries({"a": text, "b": " ".join(_page_text(1, 4))}, 4, seed=0)
    queries = [p.query for p in pairs if p.page_id == "a"]
    assert len(queries) == 4
    assert any(len(_words(q)) >= 5 for q in queries), queries  # a sentence (or its window)
    assert any(2 <= len(_words(q)) <= 4 for q in queries), queries  # a key phrase
    with pytest.raises(ValueError, match="at least 1"):
        sample_pseudo_queries({"a": text}, 0)


# -- pseudo-queries: one short run, and the usage errors ----------------------------------


def test_pseudo_query_run_trains_mines_and_counts_skipped_pages(text_index: Path, tmp_path: Path) -> None:
    result = mmembed.train(text_index, None, tmp_path / "adapter", pseudo_queries=3, **SHORT)
    assert result.steps == 2 and result.pseudo_queries is not None
    summary = result.pseudo_queries
    assert summary.pages_without_text == 8 and summary.pages_with_queries == 12 and summary.queries == 36
    assert result.train_pairs + result.held_out_pairs == 36 and result.held_out_pairs > 0
    assert result.before is not None and result.after is not None  # held-out pseudo-queries evaluated
    assert result.negatives > 0
    out = result.out
    data = json.loads((out / "training.json").read_text())["data"]
    assert data["pairs"] == "pseudo-queries:3" and data["pseudo_queries"]["pages_without_text"] == 8
    mined = [json.loads(line) for line in (out / "hard_negatives.jsonl").read_text().splitlines()]
    assert len(mined) == result.train_pairs
    texts = {r.id for r in _records(text_index) if "report-" in r.source}
    assert {row["positive"] for row in mined} <= texts  # textless pages are never positives
    # The adapter as this process caches it is the adapter a later run loads: an index built
    # with it is accepted by the next `mmembed train` (its fingerprint covers training.json).
    from mmembed.encoders.cache import _load

    cached = mmembed.load_encoder(out)
    assert cached.info.family == "colqwen2_5"
    fresh = _load(str(out), None, None, cached.device, cached.dtype, {})
    assert cached.info.fingerprint == fresh.info.fingerprint


def test_pseudo_queries_with_real_held_out_pairs_from_the_cli(
    text_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real labelled pairs measure a pseudo-query run: their pages get no pseudo-queries."""
    from mmembed.cli import main

    records = sorted((r for r in _records(text_index) if "report-1" in r.source), key=lambda r: r.page)[:3]
    held = tmp_path / "held.jsonl"
    held.write_text(
        "".join(json.dumps({"query": f"{TOPICS[r.page - 1]} report", "id": r.id}) + "\n" for r in records)
    )
    out = tmp_path / "adapter"
    argv = ["train", "--index", str(text_index), "--pseudo-queries", "2", "--eval-pairs", str(held),
            "--out", str(out), "--max-steps", "2", "--batch-size", "4", "--negatives", "1",
            "--dpi", str(DPI), "--lora-dropout", "0", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert (
        "18 pseudo-queries from 9 page(s) (up to 2 per page); skipped 8 page(s) without text" in captured.err
    )
    assert "R@1" in captured.out  # the before / after table
    data = json.loads((out / "training.json").read_text())["data"]
    assert data["held_out_pairs"] == 3 and data["train_pairs"] == 18
    mined = (out / "hard_negatives.jsonl").read_text()
    assert not any(r.id in mined for r in records)  # never positives, never negatives


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pseudo-queries", "0"], "at least 1"),
        (["--pseudo-queries", "-2"], "at least 1"),
        (["--pseudo-queries", "3", "--pairs", "PAIRS"], "do not go together"),
        ([], "give --pairs"),
        (["--pseudo-queries", "2", "--source-key", "dept"], "source key must be"),
    ],
)
def test_pseudo_query_usage_errors_exit_2_before_the_model_opens(
    extra: list[str],
    message: str,
    text_index: Path,
    colour_pages: ColourPages,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mmembed.cli import main
    from mmembed.finetune import api

    monkeypatch.setattr(api, "_load_private_encoder", _must_not_load)
    out = tmp_path / "adapter"
    extra = [str(colour_pages.pairs) if a == "PAIRS" else a for a in extra]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--index", str(text_index), "--out", str(out), "--quiet", *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def _must_not_load(*args: object, **kwargs: object) -> None:
    raise AssertionError("the model was opened before a usage error")


def test_pseudo_queries_on_an_index_without_text_is_a_usage_error(
    tmp_path: Path,
    tiny_colqwen2_5: Path,
    colour_pages: ColourPages,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mmembed.cli import main
    from mmembed.finetune import api

    encoder = mmembed.load_encoder(tiny_colqwen2_5)
    index = mmembed.open_index(tmp_path / "index", encoder.info)
    try:
        mmembed.index_documents([colour_pages.docs / "plain.pdf"], index, encoder, dpi=DPI)
    finally:
        index.close()
    monkeypatch.setattr(api, "_load_private_encoder", _must_not_load)
    out = tmp_path / "adapter"
    with pytest.raises(TrainUsageError, match=r"stores no page text .*8 of 8 page\(s\) without text"):
        mmembed.train(tmp_path / "index", None, out, pseudo_queries=2)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--index", str(tmp_path / "index"), "--out", str(out), "--pseudo-queries", "2"])
    assert exit_info.value.code == 2 and "--backfill-text" in capsys.readouterr().err
    assert not out.exists()


# -- BEIR / ViDoRe-layout folders as pairs -------------------------------------------------


def _beir(folder: Path, queries: dict[str, str], qrels: list[tuple[str, str, int]]) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
    )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    )
    return folder


@pytest.mark.parametrize("scheme", ["source#page", "path#page", "id"])
def test_a_beir_folder_is_read_as_pairs(scheme: str, text_index: Path, tmp_path: Path) -> None:
    from mmembed.finetune.pairs import read_pairs

    records = _records(text_index)
    reports = sorted((r for r in records if "report-0" in r.source), key=lambda r: r.page)

    def name(r: Any) -> str:
        return (
            r.id
            if scheme == "id"
            else f"{r.source if scheme == 'path#page' else Path(r.source).name}#{r.page}"
        )

    folder = _beir(
        tmp_path / "beir",
        {"q1": "harbour budget", "q2": "orchard staffing", "q3": "unjudged"},
        [("q1", name(reports[0]), 2), ("q2", name(reports[1]), 1), ("q2", name(reports[2]), 0)],
    )
    pairs = read_pairs(folder, records)
    assert [(p.query, p.page_id) for p in pairs] == [
        ("harbour budget", reports[0].id),
        ("orchard staffing", reports[1].id),
    ]  # grade 0 is not a pair


def test_a_beir_folder_trains_from_the_cli(text_index: Path, tmp_path: Path) -> None:
    from mmembed.cli import main

    records = sorted(
        (r for r in _records(text_index) if "report-" in r.source), key=lambda r: (r.source, r.page)
    )
    queries = {f"q{i}": _page_text(int("report-1" in r.source), r.page - 1)[1] for i, r in enumerate(records)}
    qrels = [(f"q{i}", f"{Path(r.source).name}#{r.page}", 1) for i, r in enumerate(records)]
    folder = _beir(tmp_path / "beir", queries, qrels)
    out = tmp_path / "adapter"
    argv = ["train", "--index", str(text_index), "--pairs", str(folder), "--out", str(out), "--max-steps", "1",
            "--batch-size", "4", "--dpi", str(DPI), "--eval-fraction", "0", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "training.json").read_text())
    assert summary["data"]["train_pairs"] == 12 and summary["steps"] == 1


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("page not in the index", r"not in the index .*document 'report-0\.pdf#99'"),
        ("another index", r"none of the qrels' documents"),
        ("empty query", r"queries\.jsonl:2: a query needs .*non-empty text"),
        ("query missing", r"query 'q9' is judged in the qrels but missing from queries\.jsonl"),
        ("duplicate", r"query 'q3' -> report-0\.pdf#1: the same pair as .*query 'q1' -> report-0\.pdf#1"),
    ],
)
def test_bad_beir_folders_are_refused_before_anything_is_written(
    case: str, message: str, text_index: Path, tmp_path: Path
) -> None:
    queries = {"q1": "harbour budget", "q2": "orchard staffing"}
    qrels = [("q1", "report-0.pdf#1", 1), ("q2", "report-0.pdf#2", 1)]
    if case == "page not in the index":
        qrels.append(("q1", "report-0.pdf#99", 1))
    elif case == "another index":
        qrels = [("q1", "elsewhere.pdf#1", 1), ("q2", "elsewhere.pdf#2", 1)]
    elif case == "empty query":
        queries["q2"] = "  "
    elif case == "duplicate":  # the same text under two query ids, judging the same page
        queries["q3"] = "harbour budget"
        qrels.append(("q3", "report-0.pdf#1", 1))
    else:
        qrels.append(("q9", "report-0.pdf#3", 1))
    folder = _beir(tmp_path / "beir", queries, qrels)
    out = tmp_path / "adapter"
    with pytest.raises(PairsError, match=message):
        mmembed.train(text_index, folder, out, **SHORT)
    assert not out.exists()


def test_a_pairs_file_of_another_index_names_what_this_one_holds(text_index: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": "q", "id": f"0123abcd-p{p}"}) + "\n" for p in (1, 2)))
    with pytest.raises(PairsError, match=r"another index\? The index holds e\.g\. .*report-\d\.pdf#\d"):
        mmembed.train(text_index, pairs, tmp_path / "adapter", **SHORT)
    assert not (tmp_path / "adapter").exists()


# -- --source-key: a metadata value as the source of same-source batches ----------------


def test_source_key_groups_batches_by_a_metadata_value(text_index: Path) -> None:
    from mmembed.finetune.sampling import SourceBatchSampler, source_of

    records = [r for r in _records(text_index) if "report-" in r.source]
    sources = [source_of(r, "metadata:dept") for r in records]
    assert sorted(set(sources)) == ["metadata:dept='north'", "metadata:dept='south'"]
    assert source_of(records[0], "folder") == str(Path(records[0].source).parent)
    sampler = SourceBatchSampler(sources, [r.id for r in records], 6, sampling="same-source", seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(12))
    assert all(len({sources[i] for i in batch}) == 1 for batch in batches)  # one department per batch


def test_source_key_from_the_cli_and_a_key_no_page_has(text_index: Path, tmp_path: Path) -> None:
    from mmembed.cli import main

    records = [r for r in _records(text_index) if "report-" in r.source]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"query": _page_text(int("report-1" in r.source), r.page - 1)[2], "id": r.id}) + "\n"
            for r in records
        )
    )
    out = tmp_path / "adapter"
    argv = ["train", "--index", str(text_index), "--pairs", str(pairs), "--out", str(out), "--max-steps", "1",
            "--batch-size", "4", "--dpi", str(DPI), "--eval-fraction", "0", "--quiet",
            "--source-key", "metadata:dept"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "training.json").read_text())
    assert summary["data"]["sources"] == 2 and summary["hyperparameters"]["source_key"] == "metadata:dept"

    with pytest.raises(
        TrainError, match=r"no training page has the metadata key 'team' \(the keys they have: dept"
    ):
        mmembed.train(text_index, pairs, tmp_path / "other", source_key="metadata:team", **SHORT)
    assert not (tmp_path / "other").exists()


# -- out of memory: the batch halves, then a clear error ----------------------------------


def _oom_above(limit: int | None, kind: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The real model's forward, except that a batch of more than ``limit`` rows (any batch
    when ``limit`` is None) runs out of memory first, the way ``kind`` does."""
    from mmembed.finetune.families import TrainableEncoder

    real = TrainableEncoder.embed
    seen: list[int] = []

    def embed(self: TrainableEncoder, module: Any, inputs: dict[str, Any]) -> torch.Tensor:
        rows = int(inputs["input_ids"].shape[0])
        seen.append(rows)
        if limit is None or rows > limit:
            if kind == "cpu":  # a real allocation failure of torch's CPU allocator
                torch.empty(1 << 50, dtype=torch.uint8)
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB for {rows} rows (GPU 0; 8 GiB total capacity)"
            )
        return real(self, module, inputs)

    monkeypatch.setattr(TrainableEncoder, "embed", embed)
    return seen


@pytest.mark.parametrize("kind", ["cuda", "cpu"])
def test_out_of_memory_halves_the_batch_and_says_so(
    kind: str, text_index: Path, colour_pages: ColourPages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _oom_above(2, kind, monkeypatch)
    out = tmp_path / "adapter"
    options = {**SHORT, "batch_size": 8, "negatives": 0, "eval_fraction": 0.0}
    result = mmembed.train(text_index, None, out, pseudo_queries=2, **options)
    assert result.batch_size == 2 and result.gradient_accumulation_steps == 4
    assert result.memory_retries == [
        "out of memory at batch size 8, gradient accumulation 1: retrying with batch size 4, gradient accumulation 2",
        "out of memory at batch size 4, gradient accumulation 2: retrying with batch size 2, gradient accumulation 4",
    ]
    assert result.steps == 2 and max(seen[-4:]) <= 2
    batch = json.loads((out / "training.json").read_text())["batch"]
    assert batch["batch_size"] == 2 and len(batch["out_of_memory_retries"]) == 2


def test_out_of_memory_at_batch_1_names_the_flags_and_writes_nothing(
    text_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _oom_above(None, "cpu", monkeypatch)
    out = tmp_path / "adapter"
    with pytest.raises(
        TrainError,
        match=r"out of memory even at batch size 1,.*--negatives .*--dpi .*--gradient-checkpointing",
    ):
        mmembed.train(text_index, None, out, pseudo_queries=2, **{**SHORT, "batch_size": 4, "negatives": 1})
    assert seen[:3] == [4, 2, 1]  # halved down to one pair (with its hard negative)
    assert not out.exists()


def test_halving_keeps_the_pairs_per_step() -> None:
    from mmembed.finetune.memory import BatchPlan, halved, is_out_of_memory, smallest_batch

    assert halved(BatchPlan(8, 1), 2) == BatchPlan(4, 2)
    assert halved(BatchPlan(7, 2), 1) == BatchPlan(3, 5)
    assert halved(BatchPlan(2, 4), 2) is None and halved(BatchPlan(3, 1), 2) == BatchPlan(2, 2)
    assert smallest_batch(0) == 2 and smallest_batch(2) == 1
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory.")) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(KeyboardInterrupt())


# -- GPU: the learning test on CUDA with bfloat16 (deselected without -m gpu) -------------


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["colqwen2_5", "biqwen2_5"])
def test_learns_on_cuda_in_bfloat16(family: str, colour_pages: ColourPages, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from mmembed_testing import make_tiny_checkpoint

    model = make_tiny_checkpoint(family, tmp_path / "model", seed=0)
    encoder = mmembed.load_encoder(model, device="cuda")
    assert encoder.dtype == torch.bfloat16
    index = mmembed.open_index(tmp_path / "index", encoder.info)
    try:
        mmembed.index_documents([colour_pages.docs], index, encoder, dpi=DPI)
    finally:
        index.close()
    result = mmembed.train(
        tmp_path / "index",
        colour_pages.pairs,
        tmp_path / "adapter",
        eval_pairs=colour_pages.held_out,
        device="cuda",
        max_steps=40,
        batch_size=8,
        learning_rate=2e-3,
        temperature=0.05,
        negatives=1,
        dpi=DPI,
        lora_dropout=0.0,
    )
    assert result.before is not None and result.after is not None
    assert result.after.metrics["R@1"] >= 3 / 8, result.table()
    reloaded = mmembed.load_encoder(result.out, device="cuda")
    assert reloaded.dtype == torch.bfloat16 and result.trained is not None
    mine, theirs = result.trained.encode_queries(["red"])[0], reloaded.encode_queries(["red"])[0]
    torch.testing.assert_close(mine, theirs, atol=2e-2, rtol=0)  # bfloat16 along two paths
