"""The fused float16 MaxSim kernel (issue 27, part 5) against a float64 loop and against the
general scorer, on clustered pages and on the shapes its blocking has to get right: pages
without rows, one-row pages, one-token queries, token counts and page lengths that are not
multiples of the kernel's blocks, odd dims, masked padding, NaN / inf pages, chunk borders.

Floats along different summation orders: compared within a tolerance, never bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmembed import half_maxsim, scoring
from mmembed.scoring import Ragged, maxsim

pytestmark = pytest.mark.skipif(half_maxsim.kernel() is None, reason="numba is not installed")


def reference(queries: list[torch.Tensor], pages: list[torch.Tensor]) -> torch.Tensor:
    """float64 on the stored (rounded) float16 values; a page or query without rows scores 0."""
    out = torch.zeros(len(queries), len(pages), dtype=torch.float64)
    for i, q in enumerate(queries):
        for j, p in enumerate(pages):
            if q.shape[0] and p.shape[0]:
                out[i, j] = (q.double() @ p.double().T).max(dim=1).values.sum()
    return out


def fused(queries: list[torch.Tensor], pages: list[torch.Tensor]) -> torch.Tensor:
    q, d = Ragged.from_list(queries), Ragged.from_list(pages)
    assert half_maxsim.usable(d.values)
    return half_maxsim.score(q.values.float(), q.offsets, d.values, d.offsets, scoring._run_on_workers, 2)


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> bool:
    return bool(torch.allclose(actual.double(), expected.double(), rtol=tol, atol=tol))


def clustered(gen: torch.Generator, lengths: list[int], dim: int, centroids: int = 12) -> list[torch.Tensor]:
    """Unit page rows near a few shared directions (a page's tokens resemble each other and
    other pages' tokens, as encoder states do): many near-ties for every max."""
    centres = torch.nn.functional.normalize(torch.randn(centroids, dim, generator=gen), dim=-1)
    pages = []
    for n in lengths:
        pick = torch.randint(0, centroids, (n,), generator=gen)
        rows = centres[pick] + 0.15 * torch.randn(n, dim, generator=gen)
        pages.append(torch.nn.functional.normalize(rows, dim=-1).half())
    return pages


def test_clustered_pages_match_the_float64_loop_and_the_general_scorer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 300, (120,), generator=gen).tolist()
    pages = clustered(gen, lengths, 128)
    # Queries: noisy copies of some page tokens (half of them), and fresh directions.
    queries = [
        torch.nn.functional.normalize(pages[i][:n].float() + 0.3 * torch.randn(n, 128, generator=gen), dim=-1)
        for i, n in ((3, 32), (50, 20), (7, 1))
    ] + [torch.nn.functional.normalize(torch.randn(25, 128, generator=gen), dim=-1)]
    ours = fused(queries, pages)
    assert close(ours, reference(queries, pages))
    monkeypatch.setattr(half_maxsim, "enabled", False)
    assert close(ours, maxsim(queries, pages))  # the general scorer, same scores within rounding
    monkeypatch.setattr(half_maxsim, "enabled", True)
    one = [queries[0]]  # 32 tokens: what an index search sends, through maxsim to the kernel
    assert half_maxsim.usable(pages[0], 32)
    assert close(maxsim(one, pages), reference(one, pages))


@pytest.mark.parametrize("dim", [1, 7, 33, 128, 129])
def test_edge_shapes(dim: int) -> None:
    gen = torch.Generator().manual_seed(dim)
    # no rows, one row, BLOCK_ROWS - 1 .. BLOCK_ROWS + 1 rows, odd and even lengths
    from mmembed._half_maxsim_numba import BLOCK_ROWS as block

    lengths = [0, 1, 2, 3, block - 1, block, block + 1, 2 * block + 3, 0, 5]
    pages = [torch.randn(n, dim, generator=gen).half() for n in lengths]
    queries = [torch.randn(n, dim, generator=gen) for n in (1, 2, 3, 4, 5, 0, 7, 32)]  # tokens vs blocks of 4
    scores = fused(queries, pages)
    assert scores.shape == (len(queries), len(pages)) and scores.dtype == torch.float32
    assert close(scores, reference(queries, pages), 1e-4)
    assert bool((scores[:, 0] == 0).all() and (scores[:, 8] == 0).all())  # pages without rows: 0
    assert bool((scores[5] == 0).all())  # a query without tokens: 0


def test_masked_padding_never_changes_a_score() -> None:
    gen = torch.Generator().manual_seed(3)
    pages = [torch.randn(n, 16, generator=gen).half() for n in (4, 0, 9, 1)]
    padded = torch.full((len(pages), 9, 16), 6e4, dtype=torch.float16)  # huge rows would win every max
    padded[:, :, 0] = float("nan")
    mask = torch.zeros(len(pages), 9, dtype=torch.bool)
    for i, p in enumerate(pages):
        padded[i, : p.shape[0]] = p
        mask[i, : p.shape[0]] = True
    queries = [torch.randn(5, 16, generator=gen)]
    scores = maxsim(queries, Ragged.from_padded(padded, mask))
    assert not torch.isnan(scores).any()
    assert close(scores, reference(queries, pages))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_damaged_rows_give_a_non_finite_page_score(bad: float) -> None:
    """What the index relies on to rank damaged pages last: the running max keeps a NaN."""
    gen = torch.Generator().manual_seed(4)
    pages = [torch.randn(n, 16, generator=gen).half() for n in (6, 6, 6)]
    pages[1][2, 5] = bad
    if bad == float("-inf"):
        pages[1][:, 5] = bad  # every row: no finite row can win the max
    scores = fused([torch.randn(9, 16, generator=gen)], pages)
    assert bool(torch.isfinite(scores[0, [0, 2]]).all())
    assert not bool(torch.isfinite(scores[0, 1]))


def test_chunks_and_threads_never_change_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(5)
    pages = clustered(gen, torch.randint(0, 70, (60,), generator=gen).tolist(), 24)
    queries = [torch.randn(n, 24, generator=gen) for n in (6, 3)]
    whole = fused(queries, pages)
    monkeypatch.setattr(half_maxsim, "CHUNK_ROWS", 50)  # many chunks, some a single long page
    q, d = Ragged.from_list(queries), Ragged.from_list(pages)
    for threads in (1, 2, 3):
        split = half_maxsim.score(q.values, q.offsets, d.values, d.offsets, scoring._run_on_workers, threads)
        assert torch.equal(split, whole)  # the same kernel on the same pages: chunking is only scheduling


def test_read_only_memory_map(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(6)
    pages = [torch.randn(n, 16, generator=gen).half() for n in (3, 8, 1)]
    path = tmp_path / "rows.f16"
    flat = torch.cat(pages).numpy()
    flat.tofile(path)
    mapped = torch.from_numpy(np.memmap(path, dtype=np.float16, mode="r", shape=flat.shape))
    queries = [torch.randn(4, 16, generator=gen)]
    scores = maxsim(queries, Ragged(mapped, torch.tensor([0, 3, 11, 12])))
    assert close(scores, reference(queries, pages))


def test_without_numba_the_general_scorer_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMEMBED_NO_NUMBA", "1")
    assert half_maxsim._build() is None
    monkeypatch.setattr(half_maxsim, "enabled", False)
    assert not half_maxsim.usable(torch.zeros(2, 4, dtype=torch.float16))
    assert not half_maxsim.usable(torch.zeros(2, 4))  # float32 pages never take the kernel
    monkeypatch.setattr(half_maxsim, "enabled", True)
    fp16 = torch.zeros(2, 4, dtype=torch.float16)
    assert half_maxsim.usable(fp16, half_maxsim.MAX_QUERY_TOKENS)
    assert not half_maxsim.usable(fp16, half_maxsim.MAX_QUERY_TOKENS + 1)  # many tokens: the GEMMs
