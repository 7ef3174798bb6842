"""mmembed.evaluate and `mmembed eval`: metrics are ir-measures', files are read as BEIR writes them,
and an end-to-end run over a real text model scores what it must."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mmembed.cli import main
from mmembed.evaluate import EvalError, load_qrels, load_queries, measure, measure_per_query

ir_measures = pytest.importorskip("ir_measures")


def test_measure_is_ir_measures_on_a_known_run() -> None:
    qrels = {"q1": {"a": 2, "b": 1, "c": 0}, "q2": {"d": 1}}
    run = {"q1": {"b": 0.9, "x": 0.8, "a": 0.7}, "q2": {"y": 0.5, "z": 0.4, "d": 0.3}}
    means, per_query = measure_per_query(run, qrels, ["nDCG@10", "RR@10", "R@1", "R@5"])
    # By hand, with trec_eval's linear gains: q1 ranks b (gain 1) at 1 and a (gain 2) at 3,
    # against the ideal order a, b.
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert per_query["q1"]["nDCG@10"] == pytest.approx(dcg / ideal)
    assert per_query["q1"]["RR@10"] == 1.0 and per_query["q2"]["RR@10"] == pytest.approx(1 / 3)
    assert per_query["q2"]["R@1"] == 0.0 and per_query["q2"]["R@5"] == 1.0
    library = ir_measures.calc_aggregate(
        [ir_measures.parse_measure(m) for m in ("nDCG@10", "RR@10")], qrels, run
    )
    assert means["nDCG@10"] == pytest.approx(library[ir_measures.parse_measure("nDCG@10")])
    assert means["RR@10"] == pytest.approx((1 + 1 / 3) / 2)


def test_a_judged_query_without_results_counts_as_zero_and_unjudged_ones_are_left_out() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    assert measure({"q1": {"a": 1.0}}, qrels, ["nDCG@10"])["nDCG@10"] == pytest.approx(0.5)


def test_unknown_metric_is_named() -> None:
    with pytest.raises(EvalError, match="unknown metric"):
        measure({"q": {"a": 1.0}}, {"q": {"a": 1}}, ["nDCG@@10"])


def test_beir_trec_and_jsonl_files(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "solar"}\n\n{"_id": "q2", "text": "soup"}\n')
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta.pdf#1\t1\nq2\tb.pdf#2\t2\n")
    (tmp_path / "qrels.trec").write_text("q1 0 a.pdf#1 1\nq2 0 b.pdf#2 2\n")
    (tmp_path / "qrels.jsonl").write_text(
        '{"query-id": "q1", "corpus-id": "a.pdf#1", "score": 1}\n{"query-id": "q2", "corpus-id": "b.pdf#2", "score": 2}\n'
    )
    assert load_queries(tmp_path / "q.jsonl") == {"q1": "solar", "q2": "soup"}
    expected = {"q1": {"a.pdf#1": 1}, "q2": {"b.pdf#2": 2}}
    for name in ("qrels.tsv", "qrels.trec", "qrels.jsonl"):
        assert load_qrels(tmp_path / name) == expected, name


def test_bad_files_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "ok"}\n{"_id": "q2"\n')
    with pytest.raises(EvalError, match=r"q\.jsonl:2: not JSON"):
        load_queries(tmp_path / "q.jsonl")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta\thigh\n")
    with pytest.raises(EvalError, match=r"qrels\.tsv:2: relevance 'high'"):
        load_qrels(tmp_path / "qrels.tsv")
    with pytest.raises(EvalError, match="no file at"):
        load_qrels(tmp_path / "missing.tsv")


TOPICS = {
    "solar.txt": "Solar panels convert sunlight into electricity with photovoltaic cells.",
    "soup.txt": "Simmer tomatoes, onions and garlic for twenty minutes to make a tomato soup.",
    "bank.txt": "Quarterly revenue grew by twelve percent while operating costs fell.",
    "rail.txt": "The high-speed train connects the two cities in under two hours.",
}


@pytest.fixture(scope="module")
def text_index(minilm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 'page' per topic, embedded with MiniLM from its text."""
    import mmembed

    encoder = mmembed.load_encoder(minilm)
    path = tmp_path_factory.mktemp("eval") / "index"
    with mmembed.open_index(path, encoder=encoder.info) as index:
        index.add(
            [
                mmembed.PageInput(
                    embedding=v, source=f"/corpus/{name}", page=1, content_hash=f"{i + 1:x}" * 64
                )
                for i, (name, v) in enumerate(
                    zip(TOPICS, encoder.encode_queries(list(TOPICS.values())), strict=True)
                )
            ]
        )
    return path


def write_eval_files(folder: Path, qrels: dict[str, str]) -> tuple[Path, Path]:
    questions = {
        "q-solar": "How do photovoltaic modules make power from the sun?",
        "q-soup": "How do I cook tomato soup?",
        "q-bank": "How much did the company's revenue grow this quarter?",
    }
    queries = folder / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in questions.items()))
    judged = folder / "qrels.tsv"
    judged.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels.items()))
    return queries, judged


def test_eval_end_to_end_perfect_and_zero(
    text_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    right = {"q-solar": "solar.txt#1", "q-soup": "soup.txt#1", "q-bank": "bank.txt#1"}
    queries, qrels = write_eval_files(tmp_path, right)
    assert (
        main(["eval", "--index", str(text_index), "--queries", str(queries), "--qrels", str(qrels), "--json"])
        == 0
    )
    [report] = json.loads(capsys.readouterr().out)
    assert report["queries"] == 3
    assert report["metrics"]["nDCG@1"] == 1.0 and report["metrics"]["RR@10"] == 1.0

    # Judgements that name the page the model ranks last: nothing at rank 1, recall only at depth.
    wrong_dir = tmp_path / "wrong"
    wrong_dir.mkdir()
    wrong = {"q-solar": "soup.txt#1", "q-soup": "bank.txt#1", "q-bank": "rail.txt#1"}
    queries, qrels = write_eval_files(wrong_dir, wrong)
    args = ["eval", "--index", str(text_index), "--queries", str(queries), "--qrels", str(qrels), "-k", "1"]
    assert main([*args, "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["metrics"]["nDCG@10"] == 0.0 and report["metrics"]["R@100"] == 0.0

    # The table compares two runs side by side (here the same index twice: Δ is zero).
    assert main([*args, "--compare", str(text_index)]) == 0
    table = capsys.readouterr().out
    assert "nDCG@10" in table and "+0.0000" in table and "(3 judged queries)" in table


def test_eval_refuses_qrels_that_name_no_page(
    text_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries, qrels = write_eval_files(tmp_path, {"q-solar": "elsewhere.pdf#9"})
    assert main(["eval", "--index", str(text_index), "--queries", str(queries), "--qrels", str(qrels)]) == 1
    err = capsys.readouterr().err
    assert "none of the qrels' documents" in err and "solar.txt#1" in err


@pytest.mark.parametrize("first", ["a", "b"])
def test_tied_scores_keep_the_runs_own_order(first: str) -> None:
    """Two pages with the same score: the metrics measure the order the run lists them in
    (mmembed's ranking), for every provider (pytrec_eval breaks ties by doc id, MS MARCO's RR
    by its own rule)."""
    second = "b" if first == "a" else "a"
    run = {"q": {first: 0.5, second: 0.5, "c": 0.1}}
    means = measure(run, {"q": {first: 1}}, ["nDCG@1", "R@1", "RR@10", "P@1"])
    assert means == {"nDCG@1": 1.0, "R@1": 1.0, "RR@10": 1.0, "P@1": 1.0}
    means = measure(run, {"q": {second: 1}}, ["nDCG@1", "RR@10"])
    assert means == {"nDCG@1": 0.0, "RR@10": 0.5}


def test_eval_of_tied_pages_does_not_depend_on_k(
    minilm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two identical pages score exactly the same: whichever `mmembed search` ranks first is
    judged relevant, and `eval` reports it at rank 1 whatever -k, with one tie rule for every
    metric."""
    import mmembed

    encoder = mmembed.load_encoder(minilm)
    text = TOPICS["solar.txt"]
    [vector, other] = encoder.encode_queries([text, TOPICS["rail.txt"]])
    path = tmp_path / "index"
    names = ["a-copy.txt", "z-copy.txt", "rail.txt"]
    with mmembed.open_index(path, encoder=encoder.info) as index:
        index.add(
            [
                mmembed.PageInput(embedding=v, source=f"/corpus/{n}", page=1, content_hash=f"{i + 1:x}" * 64)
                for i, (n, v) in enumerate(zip(names, [vector, vector, other], strict=True))
            ]
        )
    assert main(["search", "--index", str(path), "--json", "-k", "3", "solar power"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["score"] == hits[1]["score"]
    for top in (hits[0], hits[1]):  # the tie as search ranks it, and the other way round
        relevant = Path(top["source"]).name + "#1"
        folder = tmp_path / relevant
        folder.mkdir()
        (folder / "q.jsonl").write_text(json.dumps({"_id": "q", "text": "solar power"}) + "\n")
        (folder / "qrels.tsv").write_text(f"query-id\tcorpus-id\tscore\nq\t{relevant}\t1\n")
        expected = 1.0 if top is hits[0] else 0.0
        for k in ("1", "2", "100"):
            args = ["eval", "--index", str(path), "--queries", str(folder / "q.jsonl")]
            assert main([*args, "--qrels", str(folder / "qrels.tsv"), "-k", k, "--json"]) == 0
            metrics = json.loads(capsys.readouterr().out)[0]["metrics"]
            assert metrics["nDCG@1"] == expected, (relevant, k)
            assert metrics["RR@10"] == (1.0 if expected else (0.0 if k == "1" else 0.5)), (relevant, k)
