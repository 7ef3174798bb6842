"""`mmembed eval` inputs are untrusted files: every malformed one is a one-line error naming
the file and line, and relevance grades are bounded (issue 30, item 11). No model."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmembed.evaluate import EvalError, load_qrels, load_queries, measure

pytest.importorskip("ir_measures")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "queries.jsonl",
            b'{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "caf\xe9"}\n',
            r":2: not UTF-8",
        ),
        ("queries.tsv", b"q1\tok\nq2\t\xff\xfe\n", r":2: not UTF-8"),
        (
            "queries.jsonl",
            b'{"_id": "q1", "text": "ok"}\n["q2", "text"]\n',
            r":2: expected a JSON object, got a list",
        ),
        ("queries.jsonl", b'"just a string"\n', r":1: expected a JSON object, got a str"),
        ("queries.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", r":1: JSON nested too deeply"),
        ("queries.tsv", b"q1\tok\nq2\t" + b"x" * 200_000 + b"\n", r":2: cannot be read as tab-separated"),
    ],
)
def test_bad_queries_files_are_one_line_errors(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(EvalError, match=message) as caught:
        load_queries(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"query-id": "q1", "corpus-id": "d1", "score": 1e30}', r"relevance 1e\+30 is outside"),
        ('{"query-id": "q1", "corpus-id": "d1", "score": 1e308}', "is outside"),
        ('{"query-id": "q1", "corpus-id": "d1", "score": Infinity}', "relevance inf is not an integer"),
        ('{"query-id": "q1", "corpus-id": "d1", "score": NaN}', "relevance nan is not an integer"),
        ('{"query-id": "q1", "corpus-id": "d1", "score": -1e30}', "is outside"),
        ('{"query-id": "q1", "corpus-id": "d1", "score": 1.5}', "relevance 1.5 is not an integer"),
        ('{"query-id": "q1", "corpus-id": "d1", "score": "9999999999999999999999"}', "is outside"),
    ],
)
def test_relevance_grades_are_bounded(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "qrels.jsonl"
    path.write_text('{"query-id": "q0", "corpus-id": "d0", "score": 2}\n' + content + "\n")
    with pytest.raises(EvalError, match=f":2: .*{message}"):
        load_qrels(path)


def test_good_files_still_read(tmp_path: Path) -> None:
    (tmp_path / "q.tsv").write_text("q1\tsolar panels\nq2\twind\n")
    assert load_queries(tmp_path / "q.tsv") == {"q1": "solar panels", "q2": "wind"}
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\n\nq2\td2\t-1\n")
    qrels = load_qrels(tmp_path / "qrels.tsv")
    assert qrels == {"q1": {"d1": 2}, "q2": {"d2": -1}}
    assert measure({"q1": {"d1": 1.0}}, qrels)["nDCG@10"] == 1.0
    (tmp_path / "bad.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\n\nq2\td2\tx\n")
    with pytest.raises(EvalError, match=r"bad.tsv:4: relevance 'x'"):  # the file's own line number
        load_qrels(tmp_path / "bad.tsv")
