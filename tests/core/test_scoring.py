"""The exact scorer: MaxSim over ragged pages and dense dot / cosine.

Every result is checked against a plain float64 loop (``reference_maxsim``), whatever the
input form, storage dtype or chunk size.
"""

from __future__ import annotations

import itertools
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mmembed import scoring
from mmembed.scoring import Ragged, as_ragged, dense, maxsim, score
from mmembed.types import MMEmbedError

DIM = 16


def reference_maxsim(queries: list[torch.Tensor], docs: list[torch.Tensor]) -> torch.Tensor:
    """float64, page by page: best page row for each query token, summed per query; a page
    (or query) with no vectors scores 0."""
    out = torch.zeros(len(queries), len(docs), dtype=torch.float64)
    if not queries:
        return out
    tokens = torch.cat([q.reshape(-1, q.shape[-1]) for q in queries]).double()  # (query_tokens, dim)
    owner = torch.repeat_interleave(torch.arange(len(queries)), torch.tensor([len(q) for q in queries]))
    for j, d in enumerate(docs):
        if d.shape[0] and tokens.shape[0]:
            best = (tokens @ d.double().T).max(dim=1).values  # (query_tokens,)
            out[:, j].index_add_(0, owner, best)
    return out


def random_ragged(gen: torch.Generator, n: int, low: int, high: int, dim: int = DIM) -> list[torch.Tensor]:
    lengths = torch.randint(low, high + 1, (n,), generator=gen)
    return [torch.randn(int(k), dim, generator=gen) for k in lengths]


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> bool:
    return bool(torch.allclose(actual.double(), expected.double(), rtol=tol, atol=tol))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def test_hand_built_known_winner() -> None:
    e = torch.eye(4)
    queries = [e[[0, 1]], e[[2]]]  # query 0 asks for directions 0 and 1, query 1 for 2
    docs = [
        torch.stack([e[0], e[3]]),  # half of query 0
        torch.stack([0.5 * e[0], e[1], e[0], e[2]]),  # all of query 0, and query 1
        torch.stack([2 * e[2]]),  # query 1, twice as strongly
        -e,  # everything opposite
    ]
    scores = maxsim(queries, docs)
    expected = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 1.0, 2.0, 0.0]])
    # page 3's best match for query 0's tokens: -e[0].e[0] = -1 vs 0 (other rows) -> 0 each
    assert scores.dtype == torch.float32 and scores.shape == (2, 4)
    assert torch.equal(scores, expected)
    assert scores[0].argmax() == 1 and scores[1].argmax() == 2


def test_random_ragged_batches_match_float64_loop(gen: torch.Generator) -> None:
    queries = random_ragged(gen, 7, 1, 12)
    docs = random_ragged(gen, 53, 1, 40)
    assert close(maxsim(queries, docs), reference_maxsim(queries, docs))


def test_empty_pages_and_queries_score_zero(gen: torch.Generator) -> None:
    docs = random_ragged(gen, 9, 1, 6)
    docs[0] = docs[4] = docs[5] = torch.empty(0, DIM)
    queries = [*random_ragged(gen, 2, 1, 5), torch.empty(0, DIM)]
    scores = maxsim(queries, docs)
    assert not torch.isnan(scores).any()
    assert torch.equal(scores[:, [0, 4, 5]], torch.zeros(3, 3))
    assert torch.equal(scores[2], torch.zeros(9))
    assert close(scores, reference_maxsim(queries, docs))


def test_no_documents_gives_empty_matrix(gen: torch.Generator) -> None:
    docs = Ragged(torch.empty(0, DIM), torch.zeros(1, dtype=torch.int64))
    assert maxsim(random_ragged(gen, 3, 1, 4), docs).shape == (3, 0)


def test_list_padded_and_ragged_inputs_agree(gen: torch.Generator) -> None:
    queries = random_ragged(gen, 4, 2, 9)
    docs = random_ragged(gen, 12, 1, 30)
    from_list = maxsim(queries, docs)
    padded_q = torch.nn.utils.rnn.pad_sequence(queries, batch_first=True)
    padded_d = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True)
    from_padded = maxsim(padded_q, padded_d)  # zero rows are padding
    from_ragged = maxsim(Ragged.from_list(queries), Ragged.from_list(docs))
    assert close(from_padded, from_list, 1e-6)
    assert close(from_ragged, from_list, 1e-6)


def test_masked_padding_never_changes_a_score(gen: torch.Generator) -> None:
    docs = random_ragged(gen, 6, 0, 10)
    queries = random_ragged(gen, 3, 1, 5)
    max_len = max(d.shape[0] for d in docs)
    # Padding rows hold huge values and NaN: they would win every max (or poison it).
    padded = torch.full((len(docs), max_len, DIM), 1e6)
    padded[:, :, 0] = float("nan")
    mask = torch.zeros(len(docs), max_len, dtype=torch.bool)
    for i, d in enumerate(docs):
        padded[i, : d.shape[0]] = d
        mask[i, : d.shape[0]] = True
    scores = maxsim(queries, Ragged.from_padded(padded, mask))
    assert not torch.isnan(scores).any()
    assert close(scores, reference_maxsim(queries, docs))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_storage_matches_float32(gen: torch.Generator, dtype: torch.dtype) -> None:
    queries = random_ragged(gen, 5, 1, 8)
    docs = random_ragged(gen, 40, 1, 25)
    stored = [d.to(dtype) for d in docs]
    scores = maxsim(queries, stored)
    # Exact on the stored (rounded) values: compute is float32, never the storage dtype.
    assert close(scores, reference_maxsim(queries, stored))
    # And within the storage precision of the float32 originals.
    rel = 1e-2 if dtype == torch.float16 else 4e-2
    assert close(scores, reference_maxsim(queries, docs), rel)
    # Half-precision queries work too.
    assert close(
        maxsim([q.to(dtype) for q in queries], stored),
        reference_maxsim([q.to(dtype) for q in queries], stored),
    )


def test_many_queries_of_different_lengths(gen: torch.Generator) -> None:
    queries = [torch.randn(k, DIM, generator=gen) for k in [1, 40, 3, 17, 0, 8, *range(1, 30)]]
    docs = random_ragged(gen, 25, 1, 20)
    scores = maxsim(queries, docs)
    assert scores.shape == (len(queries), 25)
    assert close(scores, reference_maxsim(queries, docs))
    # Each query scored alone gives the same row: queries do not interact.
    for i in (0, 1, 4, 20):
        assert close(maxsim([queries[i]], docs)[0], scores[i], 1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("max_chunk_bytes", [500, 1_000, 5_000, 40_000, 10**9])
def test_chunk_size_never_changes_scores(
    gen: torch.Generator, dtype: torch.dtype, max_chunk_bytes: int
) -> None:
    """Tiny caps split query groups mid-query, put one page per chunk and split long pages
    into row pieces; scores stay those of the float64 loop."""
    queries = random_ragged(gen, 6, 1, 30)
    docs = [d.to(dtype) for d in random_ragged(gen, 30, 0, 60)]
    docs[3] = torch.randn(500, DIM, generator=gen).to(dtype)  # one long page
    docs[10:14] = [torch.randn(7, DIM, generator=gen).to(dtype) for _ in range(4)]  # a run
    scores = maxsim(queries, docs, max_chunk_bytes=max_chunk_bytes)
    assert close(scores, reference_maxsim(queries, docs))
    assert close(scores, maxsim(queries, docs), 1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_conversion_slices_never_change_scores(
    gen: torch.Generator, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half-precision pages are converted a few rows at a time (here 3, so most slices end
    mid-page and the last one of a chunk is short); scores stay those of the float64 loop."""
    monkeypatch.setattr(scoring, "_CONVERT_BYTES", 3 * 4 * DIM)
    queries = random_ragged(gen, 4, 1, 12)
    docs = [d.to(dtype) for d in random_ragged(gen, 25, 0, 20)]
    for max_chunk_bytes in (2_000, 10**9):
        assert close(maxsim(queries, docs, max_chunk_bytes=max_chunk_bytes), reference_maxsim(queries, docs))


def test_equal_length_pages_take_the_reshape_path(gen: torch.Generator) -> None:
    queries = random_ragged(gen, 3, 4, 4)
    docs = [torch.randn(12, DIM, generator=gen) for _ in range(20)]
    assert close(maxsim(queries, docs), reference_maxsim(queries, docs))
    assert close(maxsim(queries, docs, max_chunk_bytes=2_000), reference_maxsim(queries, docs))


def test_read_only_memory_map_storage(tmp_path: Path, gen: torch.Generator) -> None:
    """What the index passes: float16 rows of a read-only memmap, scored in place."""
    docs = random_ragged(gen, 20, 1, 30)
    flat = torch.cat(docs).to(torch.float16).numpy()
    path = tmp_path / "vectors.f16"
    flat.tofile(path)
    mapped = np.memmap(path, dtype=np.float16, mode="r", shape=flat.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that the array is read-only
        values = torch.from_numpy(mapped)
    offsets = torch.tensor([0, *np.cumsum([d.shape[0] for d in docs])], dtype=torch.int64)
    queries = random_ragged(gen, 4, 1, 9)
    scores = maxsim(queries, Ragged(values, offsets), max_chunk_bytes=4_000)
    assert close(
        scores,
        reference_maxsim(
            queries,
            [torch.from_numpy(flat[a:b].copy()) for a, b in itertools.pairwise(offsets.tolist())],
        ),
    )
    assert path.read_bytes() == flat.tobytes()


def test_dimension_mismatch_is_a_clear_error(gen: torch.Generator) -> None:
    with pytest.raises(MMEmbedError, match=r"query dim 16 does not match document dim 8"):
        maxsim(random_ragged(gen, 2, 1, 3), random_ragged(gen, 2, 1, 3, dim=8))
    with pytest.raises(MMEmbedError, match="dim"):
        dense(torch.randn(2, 16), torch.randn(3, 8))


def test_bad_inputs_are_clear_errors(gen: torch.Generator) -> None:
    docs = random_ragged(gen, 3, 1, 3)
    with pytest.raises(MMEmbedError, match="NaN"):
        maxsim([torch.full((2, DIM), float("nan"))], docs)
    with pytest.raises(MMEmbedError, match="dtype"):
        maxsim([torch.ones(2, DIM, dtype=torch.int32)], docs)
    with pytest.raises(MMEmbedError, match="too small"):
        maxsim(random_ragged(gen, 1, 1, 3), docs, max_chunk_bytes=8)
    with pytest.raises(MMEmbedError, match="start at 0"):
        Ragged(torch.zeros(4, DIM), torch.tensor([1, 4]))
    with pytest.raises(MMEmbedError, match="never decrease"):
        Ragged(torch.zeros(4, DIM), torch.tensor([0, 3, 2, 4]))
    with pytest.raises(MMEmbedError, match="end at"):
        Ragged(torch.zeros(4, DIM), torch.tensor([0, 3]))
    with pytest.raises(MMEmbedError, match="mask"):
        Ragged.from_padded(torch.zeros(2, 3, DIM), torch.ones(2, 4, dtype=torch.bool))


def test_ragged_offsets_are_normalised_to_int64() -> None:
    r = Ragged(torch.zeros(5, DIM), torch.tensor([0, 2, 5], dtype=torch.int32))
    assert r.offsets.dtype == torch.int64 and r.lengths.tolist() == [2, 3]
    assert len(as_ragged(torch.zeros(3, DIM))) == 3  # a 2-D tensor is one vector per item


def test_dense_dot_and_cosine(gen: torch.Generator) -> None:
    q = torch.randn(5, DIM, generator=gen)
    d = torch.randn(300, DIM, generator=gen)
    d[7] = 0.0  # a zero vector has cosine 0 with everything
    dot = q.double() @ d.double().T
    cos = torch.nn.functional.cosine_similarity(q.double()[:, None], d.double()[None], dim=-1)
    cos[:, 7] = 0.0
    for max_chunk_bytes in (100, 10**9):
        assert close(dense(q, d, "dot", max_chunk_bytes=max_chunk_bytes), dot)
        assert close(dense(q, d, "cosine", max_chunk_bytes=max_chunk_bytes), cos)
    stored = d.to(torch.float16)
    assert close(dense(q, stored, "dot", max_chunk_bytes=500), q.double() @ stored.double().T)
    assert close(dense(q, stored, "cosine"), cos, 2e-3)
    assert dense(q, d).dtype == torch.float32


def test_score_dispatches_on_similarity(gen: torch.Generator) -> None:
    queries = random_ragged(gen, 2, 1, 4)
    docs = random_ragged(gen, 5, 1, 6)
    assert close(score(queries, docs, "maxsim"), reference_maxsim(queries, docs))
    single_q = [torch.randn(1, DIM, generator=gen) for _ in range(3)]
    single_d = [torch.randn(1, DIM, generator=gen) for _ in range(4)]
    expected = torch.cat(single_q).double() @ torch.cat(single_d).double().T
    assert close(score(single_q, single_d, "dot"), expected)
    assert close(score(single_q, single_d, "maxsim"), expected)  # MaxSim of one vector is a dot
    with pytest.raises(MMEmbedError, match="one vector per item"):
        score(queries, docs, "dot")
    with pytest.raises(MMEmbedError, match="supports"):
        dense(torch.randn(1, DIM), torch.randn(2, DIM), "maxsim")


def test_document_order_only_permutes_columns(gen: torch.Generator) -> None:
    queries = random_ragged(gen, 3, 1, 6)
    docs = random_ragged(gen, 30, 1, 12)
    perm = torch.randperm(30, generator=gen)
    scores = maxsim(queries, docs, max_chunk_bytes=3_000)
    permuted = maxsim(queries, [docs[i] for i in perm], max_chunk_bytes=3_000)
    assert close(permuted, scores[:, perm], 1e-6)


def test_threads_agree_and_leave_torch_settings_alone(
    gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring, "_pool_pid", -1)  # start a new pool in this test
    queries = random_ragged(gen, 5, 1, 20)
    docs = random_ragged(gen, 80, 0, 50)
    threads = torch.get_num_threads()
    pooled = maxsim(queries, docs, max_chunk_bytes=20_000)  # many chunks, shared by the threads
    assert torch.get_num_threads() == threads
    seen: list[int] = []
    fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    fresh.start()
    fresh.join()
    assert seen == [threads]  # threads started later still get the process default
    torch.set_num_threads(1)
    try:
        inline = maxsim(queries, docs, max_chunk_bytes=20_000)  # one thread: runs in the caller
    finally:
        torch.set_num_threads(threads)
    assert close(pooled, inline, 1e-6)
    assert close(pooled, reference_maxsim(queries, docs))


def test_concurrent_calls_from_several_threads(gen: torch.Generator) -> None:
    queries = random_ragged(gen, 3, 1, 9)
    batches = [random_ragged(gen, 40, 1, 30) for _ in range(4)]
    results: dict[int, torch.Tensor] = {}

    def search(i: int) -> None:
        results[i] = maxsim(queries, batches[i], max_chunk_bytes=10_000)

    callers = [threading.Thread(target=search, args=(i,)) for i in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    for i, docs in enumerate(batches):
        assert close(results[i], reference_maxsim(queries, docs))


def test_an_error_in_a_thread_reaches_the_caller(
    gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(scoring, "_max_per_document", broken)
    with pytest.raises(RuntimeError, match="boom"):
        maxsim(random_ragged(gen, 2, 1, 5), random_ragged(gen, 50, 1, 30), max_chunk_bytes=5_000)


def test_builds_without_per_thread_counts_score_in_the_caller(
    gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pool(n: int) -> None:
        raise AssertionError("the worker pool must not start")

    monkeypatch.setattr(scoring, "_thread_local_counts", lambda: False)
    monkeypatch.setattr(scoring, "_ensure_pool", no_pool)
    queries = random_ragged(gen, 3, 1, 9)
    docs = random_ragged(gen, 40, 1, 30)
    assert close(maxsim(queries, docs, max_chunk_bytes=5_000), reference_maxsim(queries, docs))
