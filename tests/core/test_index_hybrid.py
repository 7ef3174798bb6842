"""Text and hybrid search through the embedded index: storage in the vectors' commit, modes,
filters before both sides, bad input, damaged FTS, older indexes and ``backfill_text``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from reportlab.pdfgen import canvas

from mmembed.index import IndexDamagedError, InvalidPageError, LocalIndex, PageInput, open_index
from mmembed.index.text import MAX_TEXT_CHARS, check_fts
from mmembed.pipeline import backfill_text
from mmembed.types import EncoderInfo, MMEmbedError

DIM = 8
ENC = EncoderInfo(name="hybrid/test", family="test", kind="multi", dim=DIM, similarity="maxsim")
TEXTS = [
    "Clause 7.2 of the supply contract covers part X-200.",
    "Quarterly revenue grew in every region; see the table.",
    None,  # a scan: no text layer
    "Le café résumé: maintenance schedule for pumps.",
    "Safety data sheet for solvent BX-7, handling and storage.",
    "",
]


def _pages(texts=TEXTS, *, seed: int = 0, source: str = "doc.pdf", content_hash: str = "a" * 64):
    g = torch.Generator().manual_seed(seed)
    return [
        PageInput(
            embedding=torch.randn(3, DIM, generator=g),
            source=source,
            page=i + 1,
            content_hash=content_hash,
            metadata={"i": i, "lang": "fr" if i == 3 else "en"},
            text=t,
        )
        for i, t in enumerate(texts)
    ]


@pytest.fixture
def index(tmp_path: Path):
    ix = open_index(tmp_path / "ix", ENC)
    ix.add(_pages())
    yield ix
    ix.close()


def _q(seed: int = 7) -> list[torch.Tensor]:
    """One query of two token vectors."""
    return [torch.randn(2, DIM, generator=torch.Generator().manual_seed(seed))]


def test_new_index_records_the_tokenizer_and_counts_pages_with_text(index: LocalIndex):
    manifest = json.loads((index.path / "manifest.json").read_text())
    assert manifest["text"] == {"tokenizer": "unicode61"}
    info = index.info()
    assert info["pages_with_text"] == 4 and info["pages"] == 6 and info["text_tokenizer"] == "unicode61"


def test_text_mode_finds_exact_words_and_says_which_side(index: LocalIndex):
    (hits,) = index.search(None, k=3, mode="text", texts=["X-200"])
    assert [h.page for h in hits] == [1]
    assert hits[0].found_by == ("text",) and hits[0].matches[0].rank == 1
    (hits,) = index.search_text("cafe resume", k=3)  # case and diacritics folded
    assert [h.page for h in hits] == [4]


def test_filters_apply_before_both_sides(index: LocalIndex):
    (hits,) = index.search(_q(), k=10, where={"lang": "fr"}, mode="hybrid", texts=["clause X-200 cafe"])
    assert [h.page for h in hits] == [4]
    (hits,) = index.search(None, k=1, where={"i": {"$gte": 1}}, mode="text", texts=["clause revenue"])
    assert [h.page for h in hits] == [2]


def test_hybrid_keeps_pages_without_text_and_adds_text_only_answers(index: LocalIndex):
    (visual,) = index.search(_q(), k=6)
    (hybrid,) = index.search(_q(), k=6, mode="hybrid", texts=["solvent"])
    assert {h.page for h in hybrid} == {h.page for h in visual}  # nothing dropped
    assert hybrid[0].page == 5 and hybrid[0].found_by == ("visual", "text")
    scan = next(h for h in hybrid if h.page == 3)
    assert scan.found_by == ("visual",)
    (weighted,) = index.search(_q(), k=6, mode="hybrid", texts=["solvent"], alpha=0.0)
    assert weighted[0].page == 5 and weighted[0].score == pytest.approx(1.0)
    (only_visual,) = index.search(_q(), k=6, mode="hybrid", texts=["solvent"], alpha=1.0)
    assert next(h.page for h in only_visual) == visual[0].page


def test_default_mode_is_unchanged(index: LocalIndex):
    (hits,) = index.search(_q(), k=3)
    assert all(h.matches == () for h in hits)
    assert "matches" not in hits[0].to_json()


@pytest.mark.parametrize(
    "query", ['"', 'X-200"', "X-200*", "NEAR(part clause)", "clause OR", "'; DROP TABLE pages;--", "*"]
)
def test_fts_syntax_is_plain_words_through_the_index(index: LocalIndex, query: str):
    (hits,) = index.search(_q(), k=5, mode="hybrid", texts=[query])
    assert hits  # visual side always answers
    assert index.count() == 6


def test_mode_arguments_are_checked(index: LocalIndex):
    with pytest.raises(MMEmbedError, match="needs the query text"):
        index.search(_q(), k=3, mode="hybrid")
    with pytest.raises(MMEmbedError, match="one text per query"):
        index.search(_q() + _q(seed=2), k=3, mode="hybrid", texts=["a"])
    with pytest.raises(MMEmbedError, match="mode must be one of"):
        index.search(_q(), k=3, mode="bm25", texts=["a"])


def test_upsert_replaces_and_delete_removes_text_in_the_same_commit(index: LocalIndex):
    replaced = _pages(["brand new wording", *TEXTS[1:]])
    index.upsert(replaced[:1])
    assert index.search_text(["X-200"], k=3) == [[]]
    assert [h.page for h in index.search_text(["wording"], k=3)[0]] == [1]
    index.delete(where={"i": 0})
    assert index.search_text(["wording"], k=3) == [[]]
    assert index.info()["pages_with_text"] == 3
    with index._snapshots.read() as conn:
        check_fts(conn, index.path)
        orphans = conn.execute("SELECT COUNT(*) FROM page_texts WHERE row NOT IN (SELECT row FROM pages)")
        assert orphans.fetchone()[0] == 0


def test_oversized_and_bad_text_are_refused_naming_the_page(tmp_path: Path):
    ix = open_index(tmp_path / "ix", ENC)
    with pytest.raises(InvalidPageError, match=r"page 1 of 'doc\.pdf'.*characters"):
        ix.add(_pages(["x" * (MAX_TEXT_CHARS + 1)]))
    with pytest.raises(InvalidPageError, match="must be a string"):
        ix.add(_pages([b"bytes"]))  # type: ignore[list-item]
    assert ix.count() == 0  # nothing of the refused batches
    ix.add(_pages(["ok\x00\x07 \ud800 text"]))
    assert [h.page for h in ix.search_text(["ok"], k=1)[0]] == [1]
    ix.close()


def test_trigram_tokenizer_is_recorded_and_used(tmp_path: Path):
    ix = open_index(tmp_path / "ix", ENC, text_tokenizer="trigram")
    ix.add(_pages(["東京タワーの価格表", "part X-200"]))
    assert json.loads((ix.path / "manifest.json").read_text())["text"]["tokenizer"] == "trigram"
    assert [h.page for h in ix.search_text(["タワー"], k=3)[0]] == [1]
    assert [h.page for h in ix.search_text(["200"], k=3)[0]] == [2]
    ix.close()


def test_damaged_fts_is_an_error_naming_the_repair_and_backfill_repairs_it(index: LocalIndex):
    index._conn.execute("DELETE FROM page_fts_data WHERE id > 10")
    with pytest.raises(IndexDamagedError, match="--backfill-text"):
        index.search(_q(), k=3, mode="hybrid", texts=["clause"])
    (visual,) = index.search(_q(), k=3)  # the visual side is unaffected
    assert visual
    report = backfill_text(index)
    assert report.rebuilt_fts
    assert [h.page for h in index.search_text(["X-200"], k=3)[0]] == [1]


def _pdf(path: Path, lines: list[str]) -> Path:
    doc = canvas.Canvas(str(path), invariant=1)
    for line in lines:
        doc.drawString(72, 700, line)
        doc.showPage()
    doc.save()
    return path


def test_older_index_refuses_text_modes_and_backfill_fills_matching_sources(tmp_path: Path):
    from mmembed.loaders.sources import SourceItem, digest

    good = _pdf(tmp_path / "good.pdf", ["Invoice number 4711", "Terms of delivery"])
    changed = _pdf(tmp_path / "changed.pdf", ["Old wording"])
    gone = _pdf(tmp_path / "gone.pdf", ["Vanished text"])

    def sha(p: Path) -> str:
        return digest(SourceItem(name=str(p), path=p)).content_hash

    ix = open_index(tmp_path / "ix", ENC, text_tokenizer=None)  # as built before text search
    for pdf, n in ((good, 2), (changed, 1), (gone, 1)):
        ix.add(_pages([f"ignored {pdf.stem}"] * n, source=str(pdf), content_hash=sha(pdf)))
    assert "text" not in json.loads((ix.path / "manifest.json").read_text())
    with pytest.raises(MMEmbedError, match="--backfill-text"):
        ix.search(_q(), k=3, mode="hybrid", texts=["invoice"])
    assert ix.info()["pages_with_text"] == 0
    _pdf(changed, ["New wording"])
    gone.unlink()

    report = backfill_text(ix)
    assert report.created_text_store and report.pages_filled == 2
    assert report.sources_read == [str(good)]
    assert set(report.sources_skipped) == {str(changed), str(gone)}
    assert "changed since it was indexed" in report.sources_skipped[str(changed)]
    assert "gone" in report.sources_skipped[str(gone)]
    assert str(changed) in report.summary()
    assert [h.page for h in ix.search_text(["invoice 4711"], k=3)[0]] == [1]
    ix.close()
    reopened = LocalIndex(tmp_path / "ix")
    assert reopened.manifest.text_tokenizer == "unicode61"
    assert reopened.info()["pages_with_text"] == 2
    assert backfill_text(reopened).pages_filled == 0  # nothing left that can be filled
    reopened.close()


def test_older_readers_still_open_an_index_with_text(index: LocalIndex):
    # The text tables are extra tables: the base schema checks still pass, and the manifest's
    # "text" key is one an older reader ignores.
    conn = sqlite3.connect(index.path / "index.sqlite")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {"meta", "segments", "pages", "thumbnails", "page_texts", "page_fts"} <= tables
