"""The text store (FTS5), safe query building, fusion, and text-layer extraction in the loaders."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from reportlab.pdfgen import canvas

from mmembed.index.errors import IndexDamagedError
from mmembed.index.filters import compile_filter
from mmembed.index.fusion import fuse, search_options
from mmembed.index.text import (
    MAX_TEXT_CHARS,
    check_fts,
    check_page_text,
    clean_text,
    count_with_text,
    create_tables,
    match_expression,
    rebuild_fts,
    search_rows,
    write_texts,
)
from mmembed.loaders import load_pages
from mmembed.loaders.page import Page
from mmembed.types import MMEmbedError, PageRecord, SearchHit

HOSTILE = [
    '"',
    '""',
    'part "X-200',
    "X-200*",
    "NEAR(part clause)",
    "part OR clause",
    "part AND NOT clause",
    "^part",
    "text:part",
    "'; DROP TABLE pages; --",
    "(((",
    "*",
    "{text}: part",
    "\x00part\x1b",
]


def _db(tokenizer: str = "unicode61") -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(
        "CREATE TABLE pages(row INTEGER PRIMARY KEY, id TEXT, source TEXT, page INTEGER, "
        "content_hash TEXT, metadata TEXT)"
    )
    conn.execute("BEGIN")
    create_tables(conn, tokenizer)
    conn.execute("COMMIT")
    texts = {
        1: "Clause 7.2 applies to part X-200 only.",
        2: "Le café est servi à 10 h. Résumé des comptes.",
        3: "Quarterly revenue table; see NEAR the end for OR-gates.",
        4: "東京タワーの価格表",
    }
    conn.execute("BEGIN")
    for row in texts:
        conn.execute(
            "INSERT INTO pages VALUES (?, ?, 'a.pdf', ?, 'h', ?)", (row, f"p{row}", row, f'{{"n": {row}}}')
        )
    write_texts(conn, list(texts.items()))
    conn.execute("COMMIT")
    return conn


def _rows(conn, query, k=10, where=None, tokenizer="unicode61"):
    return [
        m.row
        for m in search_rows(conn, query, k, compile_filter(where), tokenizer=tokenizer, folder=Path("/idx"))
    ]


def test_bm25_ranks_exact_words_and_folds_case_and_diacritics():
    conn = _db()
    assert _rows(conn, "x-200") == [1]
    assert _rows(conn, "CAFE resume") == [2]
    scores = search_rows(
        conn, "clause part", 10, compile_filter(None), tokenizer="unicode61", folder=Path("/")
    )
    assert scores[0].row == 1 and scores[0].score > 0


@pytest.mark.parametrize("query", HOSTILE)
def test_fts_syntax_in_queries_is_plain_words(query):
    conn = _db()
    rows = _rows(conn, query)  # never an SQL / FTS error
    assert set(rows) <= {1, 2, 3, 4}
    assert conn.execute("SELECT COUNT(*) FROM pages").fetchone()[0] == 4
    if "part" in query.lower():
        assert 1 in rows


def test_operator_words_are_searched_as_words():
    conn = _db()
    assert _rows(conn, "NEAR") == [3]
    assert _rows(conn, "OR") == [3]  # the word "OR" in "OR-gates", not an operator


def test_filters_apply_before_the_top_k():
    conn = _db()
    assert _rows(conn, "clause café revenue", k=1, where={"n": {"$gte": 2}}) in ([2], [3])
    assert _rows(conn, "clause", where={"source": "b.pdf"}) == []


def test_trigram_tokenizer_finds_cjk_and_substrings():
    conn = _db("trigram")
    assert _rows(conn, "タワー", tokenizer="trigram") == [4]
    assert _rows(conn, "X-200", tokenizer="trigram") == [1]
    assert match_expression("ab", "trigram") is None  # too short for trigrams: no words


def test_query_without_words_has_no_expression():
    assert match_expression("*** ()") is None
    assert match_expression("a " * 500).count("OR") == 0  # repeated word once


def test_deleting_a_page_deletes_its_text_in_the_same_transaction():
    conn = _db()
    conn.execute("BEGIN")
    conn.execute("DELETE FROM pages WHERE row = 1")
    conn.execute("ROLLBACK")
    assert _rows(conn, "clause") == [1]
    conn.execute("DELETE FROM pages WHERE row = 1")
    assert _rows(conn, "clause") == []
    assert count_with_text(conn) == 3
    check_fts(conn, Path("/idx"))


def test_damaged_fts_is_index_damaged_naming_the_repair_and_rebuild_repairs_it():
    conn = _db()
    conn.execute("DELETE FROM page_fts_data WHERE id > 10")
    with pytest.raises(IndexDamagedError, match="--backfill-text"):
        _rows(conn, "clause")
    conn.execute("BEGIN")
    rebuild_fts(conn, "unicode61")
    conn.execute("COMMIT")
    assert _rows(conn, "clause") == [1]
    check_fts(conn, Path("/idx"))


def test_clean_text_replaces_bad_bytes_and_control_characters_and_bounds_size(caplog):
    assert clean_text(b"ok \xff\xfe \x00\x07 end") == "ok \ufffd\ufffd    end"
    assert clean_text("a\ud800b\r\nc\td") == "a\ufffdb\nc\td"
    assert clean_text(" \x00 \n") == ""
    huge = "word " * (10 * 1024 * 1024 // 5)  # a 10 MB text layer
    cut = clean_text(huge, where="page 3 of big.pdf")
    assert len(cut) == MAX_TEXT_CHARS
    assert "page 3 of big.pdf" in caplog.text
    with pytest.raises(MMEmbedError, match=r"page 1 of 'x\.pdf'.*characters"):
        check_page_text(huge, "page 1 of 'x.pdf'")
    with pytest.raises(MMEmbedError, match="must be a string"):
        check_page_text(b"bytes", "page 1")
    assert check_page_text("  ", "p") is None


def _hit(i: str, s: float) -> SearchHit:
    return SearchHit(i, s, PageRecord(i, "a.pdf", 1, "h"))


def test_rrf_sums_reciprocal_ranks_and_records_each_side():
    visual = [_hit("a", 0.9), _hit("b", 0.8), _hit("c", 0.7)]
    text = [_hit("c", 12.0), _hit("d", 5.0)]
    fused = fuse(visual, text, k=10, rrf_k=60)
    assert [h.id for h in fused] == ["c", "a", "b", "d"]
    c = fused[0]
    assert c.score == pytest.approx(1 / 63 + 1 / 61)
    assert [(m.side, m.rank, m.score) for m in c.matches] == [("visual", 3, 0.7), ("text", 1, 12.0)]
    assert fused[3].found_by == ("text",)
    assert c.to_json()["matches"][1] == {"side": "text", "rank": 1, "score": 12.0}
    assert "matches" not in _hit("a", 1.0).to_json()  # visual output unchanged


def test_weighted_sum_of_normalised_scores():
    visual = [_hit("a", 0.9), _hit("b", 0.5)]
    text = [_hit("b", 10.0), _hit("c", 2.0)]
    only_visual = fuse(visual, text, k=3, alpha=1.0)
    assert [h.id for h in only_visual][:1] == ["a"]
    only_text = fuse(visual, text, k=3, alpha=0.0)
    assert only_text[0].id == "b" and only_text[0].score == pytest.approx(1.0)
    even = fuse(visual, text, k=3, alpha=0.5)
    # a: 0.5 * 1 + 0 ; b: 0.5 * 0 + 0.5 * 1 -> a tie, kept in the visual side's order
    assert [(h.id, round(h.score, 6)) for h in even] == [("a", 0.5), ("b", 0.5), ("c", 0.0)]


def test_a_hit_missing_from_one_side_is_kept_never_dropped():
    fused = fuse([_hit("a", 1.0)], [], k=5)
    assert [h.id for h in fused] == ["a"]
    assert fuse([], [_hit("t", 3.0)], k=5)[0].found_by == ("text",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "fuzzy"}, "mode must be one of"),
        ({"mode": "hybrid", "alpha": 1.5}, "alpha must be"),
        ({"mode": "hybrid", "alpha": 0.5, "rrf_k": 10}, "not both"),
        ({"mode": "hybrid", "rrf_k": 0}, "rrf_k must be"),
        ({"mode": "visual", "alpha": 0.5}, "tune mode='hybrid'"),
    ],
)
def test_search_options_are_checked(kwargs, message):
    with pytest.raises(MMEmbedError, match=message):
        search_options(**kwargs)


def test_pdf_pages_carry_their_text_layer_and_images_none(tmp_path):
    pdf = tmp_path / "doc.pdf"
    doc = canvas.Canvas(str(pdf), invariant=1)
    doc.drawString(72, 700, "Clause 7.2: part X-200\x07 café")
    doc.showPage()
    doc.showPage()  # a page without any text
    doc.save()
    pages = list(load_pages(pdf, dpi=36))
    assert "X-200" in pages[0].text and "café" in pages[0].text
    assert "\x07" not in pages[0].text
    assert pages[1].text == "" and pages[1].has_text_layer
    from PIL import Image

    Image.new("RGB", (40, 40), "white").save(tmp_path / "scan.png")
    (image,) = list(load_pages(tmp_path / "scan.png"))
    assert image.text == "" and not image.has_text_layer


def test_a_bad_text_layer_costs_the_page_nothing_but_its_text(caplog):
    def broken() -> str:
        raise RuntimeError("PDFium text error")

    def page(reader):
        return Page(
            source="x.pdf",
            page=2,
            page_count=2,
            content_hash="h",
            render={},
            metadata={},
            renderer=lambda: None,
            text_reader=reader,  # type: ignore[arg-type,return-value]
        )

    assert page(broken).text == ""
    assert "page 2 of x.pdf" in caplog.text
    assert page(lambda: "a\x00b\udcffc").text == "a b\ufffdc"


def test_terms_in_half_the_pages_or_more_do_not_fill_the_list():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE pages(row INTEGER PRIMARY KEY, id TEXT, metadata TEXT)")
    conn.execute("BEGIN")
    create_tables(conn, "unicode61")
    texts = ["the zebra stripes", "the lion", "the cat", "the dog", "the fish", "a bird"]
    conn.executemany("INSERT INTO pages VALUES (?, ?, '{}')", [(i, f"p{i}") for i in range(1, 7)])
    write_texts(conn, list(enumerate(texts, start=1)))
    conn.execute("COMMIT")

    def scores(query: str) -> list[tuple[int, float]]:
        return [
            (m.row, m.score)
            for m in search_rows(
                conn, query, 10, compile_filter(None), tokenizer="unicode61", folder=Path("/")
            )
        ]

    (only,) = scores("the zebra")  # not five pages that hold nothing but "the"
    assert only[0] == 1 and only[1] == pytest.approx(scores("zebra")[0][1], abs=1e-5)
    assert sorted(r for r, _ in scores("the")) == [1, 2, 3, 4, 5]  # all terms common: all kept
