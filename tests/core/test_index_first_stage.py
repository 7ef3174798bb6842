"""Binary first stage (``search(..., candidates=C)``): the Hamming MaxSim kernel against a
sign-matmul reference, and shortlist-then-exact search on pages with real structure
(queries are noisy copies of a page's tokens, like paraphrases)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmembed.index import PageInput, open_index
from mmembed.index.first_stage import BinaryCodes, binary_codes, hamming_maxsim
from mmembed.index.search import Locations
from mmembed.types import EncoderInfo, MMEmbedError

DIM = 96  # not a multiple of 64: exercises the padded last word
ENC = EncoderInfo(name="test/fs", family="test", kind="multi", dim=DIM, similarity="maxsim")


def _pages(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(int(torch.randint(3, 40, (1,), generator=g)), DIM, generator=g) for _ in range(n)]


def test_hamming_maxsim_matches_sign_matmul_reference() -> None:
    pages = _pages(30)
    values = torch.cat(pages)  # (tokens, dim)
    n = np.array([p.shape[0] for p in pages])
    off = np.concatenate([[0], np.cumsum(n)[:-1]])
    keep = np.arange(30) % 3 != 1  # gaps between pages, as deletions leave them
    locs = Locations(np.arange(30)[keep], np.zeros(keep.sum(), np.int64), off[keep], n[keep])
    query = torch.randn(7, DIM)  # (q_tokens, dim)

    got = hamming_maxsim(binary_codes(query), locs, BinaryCodes(), lambda s, r: values[:r], DIM)

    qs, ds = torch.sign(query), torch.sign(values)
    qs[query <= 0], ds[values <= 0] = -1, -1
    agree = (DIM + qs @ ds.T) / 2  # (q_tokens, tokens): equal bits per pair
    want = [int(agree[:, o : o + k].max(dim=1).values.sum()) for o, k in zip(off[keep], n[keep], strict=True)]
    assert got.tolist() == want


def test_shortlist_then_exact_finds_the_paraphrased_page(tmp_path: Path) -> None:
    pages = _pages(300, seed=1)
    g = torch.Generator().manual_seed(2)
    with open_index(tmp_path / "ix", ENC) as ix:
        ids = ix.add(
            [
                PageInput(embedding=p, source="a.pdf", page=i + 1, content_hash="a" * 64)
                for i, p in enumerate(pages)
            ]
        )
        targets = [5, 77, 150, 299]
        queries = [pages[t][:3] + 0.3 * torch.randn(3, DIM, generator=g) for t in targets]
        exact = ix.search(queries, k=300)
        fast = ix.search(queries, k=10, candidates=30)  # 10% of the pages scored exactly
        for t, e, f in zip(targets, exact, fast, strict=True):
            assert e[0].id == f[0].id == ids[t]
            # Every hit carries its exact score, best first (beyond the target the random
            # pages are noise, so the shortlist need not hold the exact runners-up).
            exact_score = {h.id: h.score for h in e}
            np.testing.assert_allclose(
                [h.score for h in f], [exact_score[h.id] for h in f], rtol=1e-5, atol=1e-5
            )
            assert [h.score for h in f] == sorted((h.score for h in f), reverse=True)
        # exact=True ignores the shortlist; a tiny shortlist still returns exact scores.
        assert [h.id for h in ix.search(queries, k=10, candidates=1, exact=True)[0]] == [
            h.id for h in exact[0][:10]
        ]
        tiny = ix.search(queries[:1], k=3, candidates=1)[0]
        assert len(tiny) == 3 and tiny[0].id == ids[5]


def test_first_stage_sees_appended_and_compacted_pages(tmp_path: Path) -> None:
    pages = _pages(60, seed=3)
    with open_index(tmp_path / "ix", ENC) as ix:
        ids = ix.add(
            [
                PageInput(embedding=p, source="a.pdf", page=i + 1, content_hash="a" * 64)
                for i, p in enumerate(pages[:30])
            ]
        )
        assert ix.search([pages[3]], k=1, candidates=5)[0][0].id == ids[3]
        ids += ix.add(
            [
                PageInput(embedding=p, source="b.pdf", page=i + 1, content_hash="b" * 64)
                for i, p in enumerate(pages[30:])
            ]
        )
        assert ix.search([pages[45]], k=1, candidates=5)[0][0].id == ids[45]
        ix.delete(ids[:40])
        ix.compact()
        assert ix.search([pages[45]], k=1, candidates=5)[0][0].id == ids[45]


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_bad_candidates_are_refused(tmp_path: Path, bad: object) -> None:
    with open_index(tmp_path / "ix", ENC) as ix, pytest.raises(MMEmbedError, match="candidates"):
        ix.search([torch.randn(2, DIM)], candidates=bad)  # type: ignore[arg-type]
