"""Functional tests of the embedded index (random vectors, hand-made EncoderInfo, no model)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from mmembed.index import (
    FORMAT_VERSION,
    DuplicatePageError,
    FilterError,
    IndexBackend,
    IndexClosedError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexWriteError,
    InvalidPageError,
    LocalIndex,
    PageInput,
    open_index,
    page_id,
)
from mmembed.scoring import score
from mmembed.types import EncoderInfo, EncoderMismatchError, MMEmbedError
from mmembed_testing.backend_contract import (
    DIM,
    HASHES,
    INVALID_FILTERS,
    MULTI,
    SINGLE,
    brute_force,
    make_pages,
)


@pytest.fixture
def index(tmp_path: Path) -> LocalIndex:
    ix = open_index(tmp_path / "ix", MULTI)
    yield ix
    ix.close()


# ---------------------------------------------------------------- create / open


def test_open_missing_without_encoder_or_create(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="pass the EncoderInfo"):
        open_index(tmp_path / "new")
    with pytest.raises(IndexNotFoundError, match=str(tmp_path / "new")):
        open_index(tmp_path / "new", MULTI, create=False)
    with pytest.raises(IndexNotFoundError):
        open_index(tmp_path / "new", MULTI, readonly=True)
    assert not (tmp_path / "new").exists()


def test_protocol_and_layout(tmp_path: Path) -> None:
    with open_index(tmp_path / "ix", MULTI) as ix:
        assert isinstance(ix, IndexBackend)
        ix.add(make_pages(3))
    names = sorted(p.name for p in (tmp_path / "ix").iterdir())
    assert {"manifest.json", "index.sqlite", "segments"} <= set(names)
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["format"] == "mmembed-index"
    assert manifest["format_version"] == 1  # no int8 / pooling: still readable by version-1 readers
    assert manifest["encoder"] == MULTI.to_dict()
    assert manifest["dtype"] == "float16"
    segs = list((tmp_path / "ix" / "segments").iterdir())
    assert len(segs) == 1 and segs[0].suffix == ".f16"
    n_vectors = sum(p.embedding.shape[0] for p in make_pages(3))
    assert segs[0].stat().st_size == n_vectors * DIM * 2
    # nothing on disk is a pickle (protocol 2+ starts with 0x80)
    for f in (tmp_path / "ix").rglob("*"):
        if f.is_file() and f.suffix in (".json", ".sqlite"):
            assert not f.read_bytes().startswith(b"\x80")


def test_refuses_foreign_folder_and_files(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.docx").write_text("x")
    with pytest.raises(IndexFormatError, match=r"thesis\.docx"):
        open_index(tmp_path / "busy", MULTI)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(IndexFormatError, match="is a file"):
        open_index(tmp_path / "afile", MULTI)


def test_interrupted_creation_is_redone(tmp_path: Path) -> None:
    folder = tmp_path / "ix"
    folder.mkdir()
    (folder / "index.sqlite").write_bytes(b"half-written garbage")
    (folder / "segments").mkdir()
    (folder / "segments" / "00000001.f16").write_bytes(b"\0" * 10)
    with open_index(folder, MULTI) as ix:
        ix.add(make_pages(2))
        assert ix.count() == 2


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    open_index(tmp_path / "ix", MULTI).close()
    path = tmp_path / "ix" / "manifest.json"
    data = json.loads(path.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match=r"Upgrade mmembed-core"):
        open_index(tmp_path / "ix")
    path.write_text("{not json")
    with pytest.raises(IndexFormatError, match="manifest"):
        open_index(tmp_path / "ix")


def test_encoder_mismatch_and_stored_encoder(tmp_path: Path) -> None:
    open_index(tmp_path / "ix", MULTI).close()
    other = EncoderInfo(
        name="test/multi", family="test", kind="multi", dim=DIM, similarity="maxsim", revision="r2"
    )
    with pytest.raises(EncoderMismatchError, match="revision"):
        open_index(tmp_path / "ix", other)
    with pytest.raises(EncoderMismatchError):
        open_index(tmp_path / "ix", SINGLE)
    with open_index(tmp_path / "ix") as ix:  # reader: takes the stored encoder
        assert ix.encoder == MULTI


def test_bad_encoder_for_creation(tmp_path: Path) -> None:
    bad = EncoderInfo(name="x", family="x", kind="multi", dim=DIM, similarity="dot")
    with pytest.raises(MMEmbedError, match="maxsim"):
        open_index(tmp_path / "ix", bad)
    with pytest.raises(MMEmbedError, match="storage 'int4'"):
        open_index(tmp_path / "ix2", MULTI, dtype="int4")


# ---------------------------------------------------------------- add / search


def test_search_known_winner_and_brute_force(index: LocalIndex) -> None:
    pages = make_pages(30)
    ids = index.add(pages)
    assert ids == [p.resolved_id() for p in pages] and ids[0] == page_id(pages[0].content_hash, 1)
    target = pages[11]
    query = target.embedding[:2] * 5 + 0.01 * torch.randn(2, DIM)
    hits = index.search([query], k=5)[0]
    assert hits[0].id == target.resolved_id()
    assert hits[0].record.page == 12 and hits[0].source == "doc2.pdf"
    assert hits[0].record.n_vectors == target.embedding.shape[0]
    expected = brute_force(index, query)[:5]
    assert [h.id for h in hits] == [i for i, _ in expected]
    assert [h.score for h in hits] == pytest.approx([s for _, s in expected], rel=1e-4, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_several_queries_and_k(index: LocalIndex) -> None:
    index.add(make_pages(10))
    queries = [torch.randn(3, DIM), torch.randn(1, DIM), torch.randn(7, DIM)]
    results = index.search(queries, k=4)
    assert len(results) == 3 and all(len(r) == 4 for r in results)
    for q, hits in zip(queries, results, strict=True):
        assert [h.id for h in hits] == [i for i, _ in brute_force(index, q)[:4]]
    assert index.search(queries, k=100)[0].__len__() == 10
    assert index.search(queries, k=0) == [[], [], []]
    with pytest.raises(MMEmbedError, match="k must be"):
        index.search(queries, k=-1)
    with pytest.raises(MMEmbedError, match="dim 8"):
        index.search([torch.randn(2, 8)], k=1)


def test_search_empty_index_and_empty_filter(index: LocalIndex) -> None:
    assert index.search([torch.randn(2, DIM)], k=3) == [[]]
    index.add(make_pages(4))
    assert index.search([torch.randn(2, DIM)], k=3, where={"lang": "xx"}) == [[]]


def test_ties_are_broken_by_storage_order(index: LocalIndex) -> None:
    same = torch.ones(2, DIM)
    pages = [PageInput(same, "a.pdf", p, "ab" * 32, {}) for p in range(1, 8)]
    index.add(pages[4:])
    index.add(pages[:4])
    hits = index.search([torch.ones(1, DIM)], k=5)[0]
    assert len({h.score for h in hits}) == 1
    order = [h.page for h in hits]
    assert order == [5, 6, 7, 1, 2]
    assert [h.page for h in index.search([torch.ones(1, DIM)], k=5)[0]] == order


def test_single_vector_index(tmp_path: Path) -> None:
    with open_index(tmp_path / "ix", SINGLE) as ix:
        pages = make_pages(20, single=True)
        ix.add(pages)
        q = pages[3].embedding[0] * 3  # cosine ignores the scale
        hits = ix.search(q.reshape(1, DIM), k=3)[0]
        assert hits[0].id == pages[3].resolved_id()
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        ix.delete(where={"i": {"$lt": 10}})
        hits = ix.search(q.reshape(1, DIM), k=3)[0]
        assert pages[3].resolved_id() not in [h.id for h in hits]
        assert [h.id for h in hits] == [i for i, _ in brute_force(ix, q.reshape(1, DIM))[:3]]
        with pytest.raises(InvalidPageError, match="single-vector") as err:
            ix.add([PageInput(torch.randn(3, DIM), "multi.pdf", 2, "cd" * 32)])
        assert "page 2 of 'multi.pdf'" in str(err.value)
        ix.add([PageInput(torch.randn(DIM), "flat.pdf", 1, "ef" * 32)])  # (dim,) is one vector


# ---------------------------------------------------------------- pages without vectors


def empty_page(page: int, **metadata: Any) -> PageInput:
    return PageInput(torch.zeros(0, DIM), "plain.pdf", page, "ee" * 32, dict(metadata))


def test_pages_without_vectors_are_stored_but_never_hits(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    pages = make_pages(6)
    with open_index(path, MULTI) as ix:
        # Interleaved with pages that have vectors, so that an empty page sits between two
        # contiguous pages of a segment (where a zero-length document could take a neighbour's score).
        ix.add([pages[0], empty_page(1, lang="en"), pages[1], pages[2]])
        ix.add([empty_page(2, lang="fr"), empty_page(3)])  # a batch with no vectors at all
        ix.add([pages[3], empty_page(4, lang="en"), pages[4], pages[5]])
        assert ix.count() == 10
        assert ix.count({"source": "plain.pdf"}) == 4
        assert ix.count({"lang": "en"}) == 4  # 2 empty + pages 0 and 3
        empty_ids = [page_id("ee" * 32, p) for p in (1, 2, 3, 4)]
        records = ix.get(empty_ids)
        assert [r.n_vectors if r else None for r in records] == [0, 0, 0, 0]
        assert {r.id for r in ix.records({"source": "plain.pdf"})} == set(empty_ids)
        assert "plain.pdf" in ix.sources()
        embeddings = ix.get_embeddings([empty_ids[0], pages[1].resolved_id(), "nope"])
        assert embeddings[0] is not None and embeddings[0].shape == (0, DIM)
        assert embeddings[0].dtype == torch.float32
        assert embeddings[1] is not None and embeddings[1].shape == pages[1].embedding.shape
        assert embeddings[2] is None
        # Only the 6 pages with vectors score, and with exactly their own scores.
        queries = [torch.randn(3, DIM) for _ in range(3)]
        for q, hits in zip(queries, ix.search(queries, k=20), strict=True):
            assert len(hits) == 6 and not set(empty_ids) & {h.id for h in hits}
            reference = brute_force(ix, q)
            assert [h.id for h in hits] == [i for i, _ in reference]
            # Relative and absolute: a score near 0 (random queries) differs by float rounding.
            assert [h.score for h in hits] == pytest.approx([s for _, s in reference], rel=1e-5, abs=1e-5)
        assert ix.search([queries[0]], k=5, where={"source": "plain.pdf"}) == [[]]
        en_hits = ix.search([queries[0]], k=5, where={"lang": "en"})[0]
        assert {h.id for h in en_hits} == {pages[0].resolved_id(), pages[3].resolved_id()}
        # An upsert can take a page's vectors away (or give them back).
        ix.upsert([PageInput(torch.zeros(0, DIM), p.source, p.page, p.content_hash) for p in pages[:2]])
        assert len(ix.search([queries[0]], k=20)[0]) == 4
        ix.upsert([pages[0]])
        assert len(ix.search([queries[0]], k=20)[0]) == 5
        before = ix.search(queries, k=20)
        assert ix.compact() > 0  # reclaims page 1's vectors; empty pages keep pointing nowhere
        after = ix.search(queries, k=20)
        assert [[h.id for h in r] for r in after] == [[h.id for h in r] for r in before]
    with open_index(path, readonly=True) as ix:  # persisted as such
        assert ix.count() == 10
        e = ix.get_embeddings([empty_ids[3], pages[1].resolved_id()])
        assert all(t is not None and t.shape == (0, DIM) for t in e)
        assert ix.info()["vectors"] == sum(int(p.embedding.shape[0]) for p in pages if p is not pages[1])


def test_batch_without_vectors_writes_no_segment(index: LocalIndex) -> None:
    index.add([empty_page(1), empty_page(2)])
    assert list((index.path / "segments").iterdir()) == []
    assert index.count() == 2 and index.search([torch.randn(2, DIM)], k=3) == [[]]
    index.delete(where={})
    assert index.compact() == 0 and index.count() == 0


def test_single_vector_index_takes_zero_or_one_vector(tmp_path: Path) -> None:
    with open_index(tmp_path / "ix", SINGLE) as ix:
        pages = make_pages(4, single=True)
        ix.add([pages[0], PageInput(torch.zeros(0, DIM), "plain.pdf", 1, "ee" * 32), *pages[1:]])
        q = torch.randn(1, DIM)
        hits = ix.search(q, k=10)[0]
        assert [h.id for h in hits] == [i for i, _ in brute_force(ix, q)] and len(hits) == 4
        with pytest.raises(InvalidPageError, match=r"or none, shape \(0, 16\)"):
            ix.add([PageInput(torch.randn(2, DIM), "two.pdf", 1, "cd" * 32)])


def test_wrong_dim_names_the_page(index: LocalIndex) -> None:
    index.add(make_pages(2))
    bad = [*make_pages(2, start=5), PageInput(torch.randn(3, DIM + 1), "scan.pdf", 7, "aa" * 32)]
    with pytest.raises(InvalidPageError, match=r"page 7 of 'scan\.pdf'.*dim 17.*dim 16"):
        index.add(bad)
    assert index.count() == 2  # nothing of the failed batch


@pytest.mark.parametrize(
    ("page", "match"),
    [
        (PageInput(torch.randn(2, DIM), "", 1, "aa"), "source"),
        (PageInput(torch.randn(2, DIM), "a.pdf", 0, "aa"), "1-based"),
        (PageInput(torch.randn(2, DIM), "a.pdf", 1, ""), "content_hash"),
        (PageInput(torch.full((2, DIM), float("nan")), "a.pdf", 1, "aa"), "NaN"),
        (PageInput(torch.full((2, DIM), 1e6), "a.pdf", 1, "aa"), "float32"),
        (PageInput(torch.randn(2, DIM), "a.pdf", 1, "aa", {"x": object()}), "JSON"),
        (PageInput(torch.randn(2, DIM), "a.pdf", 1, "aa", thumbnail="png"), "bytes"),  # type: ignore[arg-type]
        (PageInput(torch.randn(2, DIM, dtype=torch.float64).long(), "a.pdf", 1, "aa"), "float"),
    ],
)
def test_invalid_pages(index: LocalIndex, page: PageInput, match: str) -> None:
    with pytest.raises(InvalidPageError, match=match):
        index.add([page])
    assert index.count() == 0


def test_duplicates(index: LocalIndex) -> None:
    pages = make_pages(3)
    index.add(pages)
    with pytest.raises(DuplicatePageError, match="upsert"):
        index.add([*make_pages(2, start=10), pages[1]])
    assert index.count() == 3
    with pytest.raises(InvalidPageError, match="twice"):
        index.add([make_pages(1, start=20)[0], make_pages(1, start=20)[0]])
    assert index.count() == 3


def test_upsert_replaces(index: LocalIndex) -> None:
    pages = make_pages(5)
    index.add(pages)
    new = PageInput(
        torch.randn(4, DIM), pages[2].source, pages[2].page, pages[2].content_hash, {"v": 2}, b"thumb"
    )
    assert index.upsert([new, *make_pages(1, start=9)]) == [
        pages[2].resolved_id(),
        make_pages(1, start=9)[0].resolved_id(),
    ]
    assert index.count() == 6
    rec = index.get([pages[2].resolved_id()])[0]
    assert rec is not None and rec.metadata == {"v": 2} and rec.n_vectors == 4 and rec.thumbnail == b"thumb"
    emb = index.get_embeddings([pages[2].resolved_id()])[0]
    assert emb is not None and torch.equal(emb, new.embedding.half().float())
    hits = index.search([new.embedding * 3], k=1)[0]
    assert hits[0].id == pages[2].resolved_id() and hits[0].metadata == {"v": 2}


def test_get_records_sources(index: LocalIndex) -> None:
    pages = make_pages(300)  # > one 256-record page of records()
    index.add(pages[:150])
    index.add(pages[150:])
    got = index.get([pages[5].resolved_id(), "missing", pages[0].resolved_id()])
    assert got[1] is None and got[0] is not None and got[0].page == 6 and got[2] is not None
    assert got[0].metadata == pages[5].metadata and got[0].content_hash == pages[5].content_hash
    assert [r.id for r in index.records()] == [p.resolved_id() for p in pages]
    assert len(list(index.records({"lang": "fr"}))) == 100
    assert index.sources() == {f"doc{i}.pdf": HASHES[i] for i in range(3)}
    embs = index.get_embeddings([pages[299].resolved_id(), "missing"])
    assert embs[1] is None
    assert embs[0] is not None and embs[0].dtype == torch.float32
    assert torch.equal(embs[0], pages[299].embedding.half().float())


def test_thumbnails_round_trip(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
    with open_index(tmp_path / "a", MULTI) as ix:
        ix.add([PageInput(torch.randn(2, DIM), "a.pdf", 1, "ff" * 32, thumbnail=png), *make_pages(2)])
        recs = ix.get([page_id("ff" * 32, 1)])
        assert recs[0] is not None and recs[0].thumbnail == png
        assert ix.search([torch.randn(1, DIM)], k=3)[0][0].record is not None
        assert {r.thumbnail for r in ix.records()} == {png, None}
        ix.delete([page_id("ff" * 32, 1)])
    with open_index(tmp_path / "a") as ix:
        assert {r.thumbnail for r in ix.records()} == {None}
    with open_index(tmp_path / "b", MULTI, keep_thumbnails=False) as ix:
        ix.add([PageInput(torch.randn(2, DIM), "a.pdf", 1, "ff" * 32, thumbnail=png)])
        assert ix.get([page_id("ff" * 32, 1)])[0].thumbnail is None  # type: ignore[union-attr]
    with open_index(tmp_path / "c", MULTI) as ix, pytest.raises(InvalidPageError, match="smaller image"):
        ix.add([PageInput(torch.randn(2, DIM), "a.pdf", 2, "ff" * 32, thumbnail=b"x" * (2 << 20))])


# ---------------------------------------------------------------- delete / filters


def test_delete_by_id_filter_and_both(index: LocalIndex) -> None:
    pages = make_pages(12)
    index.add(pages)
    assert index.delete([pages[0].resolved_id(), "unknown"]) == 1
    assert index.count() == 11
    assert index.delete(where={"lang": "fr"}) == 4
    assert index.count() == 7 and index.count({"lang": "fr"}) == 0
    # ids AND filter: only the ids that also match
    assert index.delete([pages[3].resolved_id(), pages[2].resolved_id()], where={"lang": "en"}) == 1
    assert index.get([pages[2].resolved_id()])[0] is not None
    with pytest.raises(MMEmbedError, match="ids and/or where"):
        index.delete()
    with pytest.raises(MMEmbedError, match="list of ids"):
        index.delete("abc")  # type: ignore[arg-type]
    assert index.delete(where={}) == 6 and index.count() == 0
    hits = index.search([torch.randn(2, DIM)], k=3)
    assert hits == [[]]


@pytest.mark.parametrize(
    "flt",
    # The contract's invalid filters, plus what only SQLite cannot take.
    [*INVALID_FILTERS, {"a": 2**70}, {'bad"key': 1}],
)
def test_filter_errors(index: LocalIndex, flt: Any) -> None:
    with pytest.raises(FilterError, match="invalid filter"):
        index.count(flt)


# ---------------------------------------------------------------- persistence, dtypes, compact


def test_reopen_persists(tmp_path: Path) -> None:
    pages = make_pages(20)
    q = torch.randn(3, DIM)
    with open_index(tmp_path / "ix", MULTI) as ix:
        ix.add(pages[:10])
        ix.add(pages[10:])
        ix.delete(where={"i": 4})
        before = [(h.id, h.score) for h in ix.search([q], k=7)[0]]
        info_before = ix.info()
    with open_index(tmp_path / "ix", readonly=True) as ix:
        assert [(h.id, h.score) for h in ix.search([q], k=7)[0]] == before
        info = ix.info()
        assert info["pages"] == 19 and info["dim"] == DIM and info["dtype"] == "float16"
        assert info["encoder"] == MULTI.to_dict() and info["encoder_name"] == MULTI.name
        assert info["format_version"] == 1 and info["bytes"] > 0
        assert info["pages"] == info_before["pages"]
        assert ix.sources() == {f"doc{i}.pdf": HASHES[i] for i in range(3)}


@pytest.mark.parametrize(
    ("dtype", "torch_dtype", "suffix"),
    [
        ("float16", torch.float16, ".f16"),
        ("bfloat16", torch.bfloat16, ".bf16"),
        ("float32", torch.float32, ".f32"),
    ],
)
def test_dtypes(tmp_path: Path, dtype: str, torch_dtype: torch.dtype, suffix: str) -> None:
    pages = make_pages(8)
    with open_index(tmp_path / "ix", MULTI, dtype=dtype) as ix:
        ix.add(pages)
        assert ix.info()["dtype"] == dtype
    with open_index(tmp_path / "ix", MULTI, dtype="float32") as ix:  # creation-only setting
        assert ix.dtype == dtype
        embs = ix.get_embeddings([p.resolved_id() for p in pages])
        for p, e in zip(pages, embs, strict=True):
            assert e is not None and torch.equal(e, p.embedding.to(torch_dtype).float())
        q = pages[6].embedding * 4
        hits = ix.search([q], k=3)[0]
        assert hits[0].id == pages[6].resolved_id()
        assert hits[0].score == pytest.approx(
            float(score([q], [pages[6].embedding.to(torch_dtype).float()], "maxsim")[0, 0]), rel=1e-3
        )
    (seg,) = (tmp_path / "ix" / "segments").iterdir()
    assert seg.suffix == suffix
    assert seg.stat().st_size == sum(p.embedding.shape[0] for p in pages) * DIM * (
        4 if dtype == "float32" else 2
    )


def test_compact_reclaims_and_keeps_results(tmp_path: Path) -> None:
    pages = make_pages(60)
    queries = [torch.randn(3, DIM) for _ in range(4)]
    with LocalIndex(tmp_path / "ix", MULTI, segment_bytes=1024) as ix:  # many small segments
        for a in range(0, 60, 6):
            ix.add(pages[a : a + 6])
        assert len(list((tmp_path / "ix" / "segments").iterdir())) > 3
        ix.delete(where={"lang": "fr"})
        ix.upsert(
            [
                PageInput(torch.randn(2, DIM), p.source, p.page, p.content_hash, {"new": True})
                for p in pages[:5]
            ]
        )
        before = ix.search(queries, k=10)
        filtered_before = ix.search(queries, k=10, where={"even": True})
        seg_bytes = sum(f.stat().st_size for f in (tmp_path / "ix" / "segments").iterdir())
        assert ix.info()["reclaimable_vectors"] > 0
        reclaimed = ix.compact()
        assert reclaimed > 0
        after_bytes = sum(f.stat().st_size for f in (tmp_path / "ix" / "segments").iterdir())
        assert after_bytes == seg_bytes - reclaimed
        assert ix.info()["reclaimable_vectors"] == 0
        assert ix.compact() == 0  # nothing left to reclaim
        after = ix.search(queries, k=10)
        assert [[h.id for h in r] for r in after] == [[h.id for h in r] for r in before]
        # same values at new places: BLAS may round differently by an ulp
        for r_after, r_before in zip(after, before, strict=True):
            assert [h.score for h in r_after] == pytest.approx([h.score for h in r_before], rel=1e-6)
        filtered_after = ix.search(queries, k=10, where={"even": True})
        assert [[h.id for h in r] for r in filtered_after] == [[h.id for h in r] for r in filtered_before]
        ix.add(make_pages(3, start=100))  # appends after compaction
        assert ix.count() == 60 - 20 + 2 + 3  # fr deleted, 2 of them upserted back, 3 new
    with open_index(tmp_path / "ix") as ix:
        assert ix.count() == 45
        p = pages[8]
        e = ix.get_embeddings([p.resolved_id()])[0]
        assert e is not None and torch.equal(e, p.embedding.half().float())


def test_compact_everything_deleted(index: LocalIndex) -> None:
    index.add(make_pages(5))
    index.delete(where={})
    assert index.compact() > 0
    assert list((index.path / "segments").iterdir()) == []
    index.add(make_pages(2))
    assert len(index.search([torch.randn(1, DIM)], k=5)[0]) == 2


def test_search_many_deletes_gathers_rows(index: LocalIndex) -> None:
    pages = make_pages(40)
    index.add(pages)
    index.delete(where={"i": {"$nin": [3, 17, 38]}})  # sparse survivors: gathered, not sliced
    q = torch.randn(2, DIM)
    hits = index.search([q], k=5)[0]
    assert [h.id for h in hits] == [i for i, _ in brute_force(index, q)]


# ---------------------------------------------------------------- modes, locks, failures


def test_readonly_and_closed(tmp_path: Path) -> None:
    open_index(tmp_path / "ix", MULTI).close()
    ro = open_index(tmp_path / "ix", readonly=True)
    with pytest.raises(IndexReadOnlyError, match="readonly=True"):
        ro.add(make_pages(1))
    with pytest.raises(IndexReadOnlyError):
        ro.delete(where={})
    ro.close()
    ro.close()  # idempotent
    with pytest.raises(IndexClosedError, match="closed"):
        ro.count()


def test_second_writer_in_process_and_reader_sees_commits(tmp_path: Path) -> None:
    writer = open_index(tmp_path / "ix", MULTI)
    reader = open_index(tmp_path / "ix", MULTI)  # no write intent: takes no lock
    try:
        writer.add(make_pages(3))
        assert reader.count() == 3
        q = torch.randn(2, DIM)
        assert len(reader.search([q], k=10)[0]) == 3  # caches the page catalog
        writer.add(make_pages(2, start=3))
        assert len(reader.search([q], k=10)[0]) == 5  # sees the new batch on its next search
        writer.delete(where={"i": 0})
        assert len(reader.search([q], k=10)[0]) == 4
        with pytest.raises(IndexLockedError, match=rf"process {os.getpid()}.*{tmp_path / 'ix'}"):
            reader.add(make_pages(1, start=9))
    finally:
        writer.close()
    reader.add(make_pages(1, start=9))  # the lock is free again
    assert reader.count() == 5
    reader.close()


def test_threads_share_one_index(index: LocalIndex) -> None:
    """Frameworks call from worker threads: one object serialises its own use."""
    import threading

    index.add(make_pages(5))
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(20):
                hits = index.search([torch.randn(2, DIM)], k=3)[0]
                assert len(hits) == 3
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for t in threads:
        t.start()
    for a in range(5, 25, 5):
        index.add(make_pages(5, start=a))
    for t in threads:
        t.join()
    assert not errors and index.count() == 25


def test_uncommitted_tail_is_ignored_then_cut(tmp_path: Path) -> None:
    with open_index(tmp_path / "ix", MULTI) as ix:
        ix.add(make_pages(4))
    (seg,) = (tmp_path / "ix" / "segments").iterdir()
    size = seg.stat().st_size
    with open(seg, "ab") as fh:  # what a writer killed between fsync and commit leaves
        fh.write(os.urandom(DIM * 2 * 3 + 5))
    (tmp_path / "ix" / "segments" / "00000099.f16").write_bytes(b"orphan")
    with open_index(tmp_path / "ix", readonly=True) as ro:
        assert ro.count() == 4 and len(ro.search([torch.randn(1, DIM)], k=9)[0]) == 4
        assert seg.stat().st_size > size  # readers never repair
    with open_index(tmp_path / "ix", MULTI) as ix:
        ix.lock_for_writing()
        assert seg.stat().st_size == size
        assert not (tmp_path / "ix" / "segments" / "00000099.f16").exists()
        ix.add(make_pages(2, start=10))
        assert ix.count() == 6


def test_truncated_segment_is_a_clear_error(tmp_path: Path) -> None:
    with open_index(tmp_path / "ix", MULTI) as ix:
        ix.add(make_pages(4))
    (seg,) = (tmp_path / "ix" / "segments").iterdir()
    os.truncate(seg, 10)
    with open_index(tmp_path / "ix") as ix:
        with pytest.raises(IndexFormatError, match="Rebuild"):
            ix.search([torch.randn(1, DIM)], k=2)
        with pytest.raises(IndexFormatError, match="Rebuild"):
            ix.lock_for_writing()


def test_missing_segment_is_a_clear_error(tmp_path: Path) -> None:
    with open_index(tmp_path / "ix", MULTI) as ix:
        pages = make_pages(4)
        ix.add(pages)
    for seg in (tmp_path / "ix" / "segments").iterdir():
        seg.unlink()
    with open_index(tmp_path / "ix") as ix:
        assert ix.count() == 4  # records are intact
        with pytest.raises(IndexFormatError, match=r"missing.*Rebuild"):
            ix.search([torch.randn(1, DIM)], k=2)
        with pytest.raises(IndexFormatError, match=r"missing.*Rebuild"):
            ix.get_embeddings([pages[0].resolved_id()])


def test_disk_full_leaves_previous_state(index: LocalIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmembed.index.compact as compact_mod
    import mmembed.index.segments as segments_mod

    pages = make_pages(10)
    index.add(pages[:5])
    seg_dir = index.path / "segments"
    sizes = {f.name: f.stat().st_size for f in seg_dir.iterdir()}
    q = torch.randn(2, DIM)
    before = [(h.id, h.score) for h in index.search([q], k=5)[0]]

    def full(fd: int, offset: int, data: memoryview) -> None:
        os.pwrite(fd, bytes(data[: len(data) // 2]), offset)  # part of the batch reached the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segments_mod, "write_at", full)
    with pytest.raises(IndexWriteError, match=r"disk is full.*|Disk is full") as err:
        index.add(pages[5:])
    assert str(index.path) in str(err.value) and "last committed state" in str(err.value)
    with pytest.raises(IndexWriteError, match="full"):
        index.upsert(
            [
                PageInput(
                    torch.randn(2, DIM), pages[0].source, pages[0].page, pages[0].content_hash, {"new": 1}
                )
            ]
        )
    assert index.count() == 5
    assert index.get([pages[0].resolved_id()])[0].metadata == pages[0].metadata  # type: ignore[union-attr]
    assert {f.name: f.stat().st_size for f in seg_dir.iterdir()} == sizes
    assert [(h.id, h.score) for h in index.search([q], k=5)[0]] == before
    monkeypatch.undo()

    index.delete(where={"i": 0})
    monkeypatch.setattr(compact_mod, "write_at", full)
    with pytest.raises(IndexWriteError, match="full"):
        index.compact()
    assert sorted(f.name for f in seg_dir.iterdir()) == sorted(sizes)
    monkeypatch.undo()

    index.add(pages[5:])  # space is back: the same batch now goes in whole
    assert index.count() == 9
    assert index.compact() > 0
    with open_index(index.path) as again:
        assert again.count() == 9
