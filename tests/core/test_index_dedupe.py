"""``search(..., dedupe=...)``: copies of a page collapse to one hit (issue 27)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmembed.index import PageInput, open_index
from mmembed.index.dedupe import check_dedupe, page_similarity
from mmembed.types import EncoderInfo, MMEmbedError

DIM = 32
ENC = EncoderInfo(name="test/dedupe", family="test", kind="multi", dim=DIM, similarity="maxsim")


def _unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)


@pytest.fixture(scope="module")
def index_with_copies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 distinct pages; page 0 also stored 5 more times: 2 byte-identical files (same hash,
    other paths, ids of their own, as frameworks give) and 3 re-renders (other hash, vectors
    within a little noise)."""
    pages = [_unit(12, DIM, seed=i) for i in range(40)]
    g = torch.Generator().manual_seed(99)
    inputs = [
        PageInput(embedding=p, source="a.pdf", page=i + 1, content_hash="a" * 64) for i, p in enumerate(pages)
    ]
    inputs += [
        PageInput(embedding=pages[0], source=f"copy{j}/a.pdf", page=1, content_hash="a" * 64, id=f"copy{j}")
        for j in range(2)
    ]
    inputs += [
        PageInput(
            embedding=torch.nn.functional.normalize(
                pages[0] + 0.02 * torch.randn(12, DIM, generator=g), dim=-1
            ),
            source=f"render{j}.pdf",
            page=1,
            content_hash=f"{j}" * 64,
        )
        for j in range(3)
    ]
    path = tmp_path_factory.mktemp("dedupe") / "ix"
    with open_index(path, ENC) as ix:
        ix.add(inputs)
    return path


def test_copies_fill_the_plain_top_k(index_with_copies: Path) -> None:
    query = _unit(12, DIM, seed=0)[:6]  # tokens of page 0
    with open_index(index_with_copies, readonly=True) as ix:
        top = ix.search([query], k=6)[0]
    assert {(h.source, h.page) for h in top} >= {("a.pdf", 1), ("copy0/a.pdf", 1), ("render0.pdf", 1)}


def test_dedupe_content_keeps_one_of_byte_identical_copies(index_with_copies: Path) -> None:
    query = _unit(12, DIM, seed=0)[:6]
    with open_index(index_with_copies, readonly=True) as ix:
        plain = ix.search([query], k=10)[0]
        hits = ix.search([query], k=10, dedupe="content")[0]
    keys = [(h.record.content_hash, h.page) for h in hits]
    assert len(hits) == 10 and len(set(keys)) == 10
    assert hits[0].id == plain[0].id and hits[0].score == plain[0].score  # best copy kept, exact score
    # the re-renders have other hashes: content dedupe keeps them
    assert sum(h.source.startswith("render") for h in hits) == 3


def test_dedupe_by_similarity_collapses_re_renders_too(index_with_copies: Path) -> None:
    query = _unit(12, DIM, seed=0)[:6]
    with open_index(index_with_copies, readonly=True) as ix:
        hits = ix.search([query], k=10, dedupe=0.95)[0]
        exact = ix.search([query], k=45)[0]
    first_pages = [h for h in hits if h.page == 1]
    assert len(hits) == 10 and len(first_pages) == 1  # one of the six copies of page 0
    # the other nine are the next distinct pages in exact order
    distinct_rest = [h.id for h in exact if h.page != 1][:9]
    assert [h.id for h in hits if h.page != 1] == distinct_rest


def test_dedupe_returns_every_distinct_page_when_k_exceeds_them(index_with_copies: Path) -> None:
    query = _unit(12, DIM, seed=3)[:4]
    with open_index(index_with_copies, readonly=True) as ix:
        hits = ix.search([query, query], k=100, dedupe=0.99)
    assert [len(h) for h in hits] == [40, 40]


def test_dedupe_with_a_first_stage(index_with_copies: Path) -> None:
    query = _unit(12, DIM, seed=0)[:6]
    with open_index(index_with_copies, readonly=True) as ix:
        hits = ix.search([query], k=5, candidates=20, dedupe="content")[0]
    assert len({(h.record.content_hash, h.page) for h in hits}) == 5


def test_page_similarity() -> None:
    a = _unit(10, DIM, seed=1)
    assert page_similarity(a, a) == pytest.approx(1.0)
    assert page_similarity(a, a[:5]) < 0.9  # a page is not a copy of its half
    assert page_similarity(a, _unit(10, DIM, seed=2)) < 0.6


@pytest.mark.parametrize("bad", ["hash", 0, 0.0, 1.5, -0.1, True, [0.9]])
def test_bad_dedupe_is_a_clear_error_before_searching(bad: object, index_with_copies: Path) -> None:
    with pytest.raises(MMEmbedError, match="dedupe must be"):
        check_dedupe(bad)
    with (
        open_index(index_with_copies, readonly=True) as ix,
        pytest.raises(MMEmbedError, match="dedupe must be"),
    ):
        ix.search([_unit(3, DIM, seed=0)], k=3, dedupe=bad)  # type: ignore[arg-type]


def test_dedupe_is_visual_only(index_with_copies: Path) -> None:
    with (
        open_index(index_with_copies, readonly=True) as ix,
        pytest.raises(MMEmbedError, match="mode='visual'"),
    ):
        ix.search(None, k=3, mode="text", texts="x", dedupe="content")
