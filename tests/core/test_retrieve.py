"""mmembed.retrieve: pooling, Retriever (encoder + index) and MaxSimReranker.

The tiny random ColQwen2.5 gives meaningless rankings, so these tests check plumbing that
can fail: which vectors are scored (reused from the index, cached, encoded from an image or
a rendered page), that scores are exactly MaxSim of those vectors, ordering, and errors.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

import mmembed
from mmembed.encoders.base import Encoder
from mmembed.index import LocalIndex, PageInput, open_index, page_id
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.retrieve import Candidate, MaxSimReranker, Retriever, as_single_vectors, pool
from mmembed.scoring import score
from mmembed.types import EncoderInfo, EncoderMismatchError, MMEmbedError, SearchHit

DPI = 48
QUERY = "quarterly revenue growth"


class CountingEncoder(Encoder):
    """The real tiny encoder, counting the page images it is asked to encode."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.info: EncoderInfo = inner.info
        self.device = inner.device
        self.dtype = inner.dtype
        self.images = 0

    def encode_queries(self, queries: Sequence[str], **kw: Any) -> list[torch.Tensor]:
        return self.inner.encode_queries(queries, **kw)

    def encode_images(self, images: Sequence[Image.Image], **kw: Any) -> list[torch.Tensor]:
        self.images += len(images)
        return self.inner.encode_images(images, **kw)


@dataclass
class Corpus:
    pdfs: list[Path]
    index: LocalIndex
    encoder: Encoder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path) -> Iterator[Corpus]:
    folder = tmp_path_factory.mktemp("retrieve")
    pdfs = write_sample_pdfs(folder / "docs")
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    index = open_index(folder / "index", encoder.info, dtype="float32")  # exact stored vectors
    mmembed.index_documents(folder / "docs", index, encoder, dpi=DPI, thumbnails=False)
    yield Corpus(pdfs, index, encoder)
    index.close()


@pytest.fixture
def counting(corpus: Corpus) -> CountingEncoder:
    return CountingEncoder(corpus.encoder)


def maxsim_of(encoder: Encoder, query: str, pages: Sequence[torch.Tensor]) -> list[float]:
    return score(encoder.encode_queries([query]), list(pages), "maxsim")[0].tolist()


# ---------------------------------------------------------------- pooling


def test_pool_is_the_normalised_mean_of_normalised_tokens() -> None:
    tokens = torch.tensor([[2.0, 0.0], [0.0, 5.0]])  # normalised: e1, e2 -> mean (0.5, 0.5)
    assert pool(tokens).tolist() == pytest.approx([2**-0.5, 2**-0.5])
    assert pool(tokens.half()).dtype == torch.float32
    assert pool(torch.tensor([[3.0, 4.0]])).tolist() == [3.0, 4.0]  # one vector: unchanged
    for bad in (torch.zeros(0, 2), torch.ones(2), torch.ones(1, 2, 2)):
        with pytest.raises(MMEmbedError, match="non-empty"):
            pool(bad)


def test_as_single_vectors_gives_float_lists() -> None:
    embeddings = [torch.randn(7, 16), torch.randn(1, 16)]
    vectors = as_single_vectors(embeddings)
    assert [len(v) for v in vectors] == [16, 16]
    assert all(isinstance(x, float) for v in vectors for x in v)
    assert vectors[0] == pytest.approx(pool(embeddings[0]).tolist())
    assert sum(x * x for x in vectors[0]) == pytest.approx(1.0, abs=1e-5)
    assert vectors[1] == pytest.approx(embeddings[1][0].tolist())
    assert as_single_vectors([]) == []


# ---------------------------------------------------------------- Retriever


def test_retriever_single_and_batched_queries(corpus: Corpus) -> None:
    retriever = Retriever(corpus.index, corpus.encoder)
    hits = retriever.search(QUERY, k=4)
    assert len(hits) == 4 and all(isinstance(h, SearchHit) for h in hits)
    direct = corpus.index.search(corpus.encoder.encode_queries([QUERY]), k=4)[0]
    assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in direct]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    queries = [QUERY, "olive oil and tomatoes"]
    batched = retriever.search(queries, k=3)
    assert len(batched) == 2 and [len(b) for b in batched] == [3, 3]
    expected = corpus.index.search(corpus.encoder.encode_queries(queries), k=3)
    assert [[h.id for h in b] for b in batched] == [[h.id for h in b] for b in expected]
    assert retriever.search([], k=3) == []
    assert len(retriever.search(QUERY, k=100)) == corpus.index.count()


def test_retriever_filters_before_scoring(corpus: Corpus, tmp_path: Path) -> None:
    retriever = Retriever(corpus.index, corpus.encoder)
    source = str(corpus.pdfs[1])
    hits = retriever.search(QUERY, k=10, where={"source": source})
    assert len(hits) == corpus.index.count({"source": source}) > 0
    assert {h.source for h in hits} == {source}
    first_pages = retriever.search([QUERY], k=10, where={"page": {"$in": [1]}})[0]
    assert sorted(h.source for h in first_pages) == sorted(str(p) for p in corpus.pdfs)
    assert retriever.search(QUERY, k=5, where={"source": "nowhere.pdf"}) == []
    # Any IndexBackend works, e.g. a shared handle on the same folder.
    with open_index(corpus.index.path, readonly=True, shared=True) as shared:
        via_shared = Retriever(shared, corpus.encoder).search(QUERY, k=3)
        assert [h.id for h in via_shared] == [h.id for h in retriever.search(QUERY, k=3)]


def test_retriever_refuses_an_index_of_another_encoder(corpus: Corpus, tmp_path: Path) -> None:
    other = EncoderInfo(name="another/model", family="colqwen2_5", kind="multi", dim=128, similarity="maxsim")
    with (
        open_index(tmp_path / "other", other) as index,
        pytest.raises(EncoderMismatchError, match=rf"{tmp_path / 'other'}.*another/model"),
    ):
        Retriever(index, corpus.encoder)


# ---------------------------------------------------------------- MaxSimReranker


def test_reranker_reuses_stored_vectors(corpus: Corpus, counting: CountingEncoder) -> None:
    reranker = MaxSimReranker(counting, index=corpus.index)
    assert reranker.reuses_index
    with pytest.raises(AttributeError):
        reranker.reuses_index = False  # type: ignore[misc]
    records = list(corpus.index.records())[:5]
    ranked = reranker.rerank(QUERY, [Candidate(id=r.id) for r in records])
    assert (reranker.pages_reused, reranker.pages_encoded, counting.images) == (5, 0, 0)
    stored = corpus.index.get_embeddings([r.id for r in records])
    expected = maxsim_of(corpus.encoder, QUERY, [e for e in stored if e is not None])
    assert sorted(position for position, _ in ranked) == list(range(5))
    assert [s for _, s in ranked] == pytest.approx([expected[p] for p, _ in ranked], rel=1e-6)
    assert [s for _, s in ranked] == sorted(expected, reverse=True)


def test_reranker_renders_from_source_and_caches(corpus: Corpus, counting: CountingEncoder) -> None:
    reranker = MaxSimReranker(counting, dpi=float(DPI))  # loaders take float dpi
    assert reranker.dpi == 48.0 and not reranker.reuses_index
    pdf = corpus.pdfs[0]
    candidates = [Candidate(source=str(pdf), page=2), Candidate(source=str(pdf), page=3)]
    ranked = reranker.rerank(QUERY, candidates)
    assert (reranker.pages_encoded, counting.images) == (2, 2)
    # The page rendered at the reranker's dpi is what was encoded: the same vectors the
    # index stored when it indexed that file at that dpi.
    content_hash = hashlib.sha256(pdf.read_bytes()).hexdigest()
    stored = corpus.index.get_embeddings([page_id(content_hash, 2), page_id(content_hash, 3)])
    assert all(e is not None for e in stored)
    expected = maxsim_of(corpus.encoder, QUERY, [e for e in stored if e is not None])
    assert dict(ranked) == pytest.approx(dict(enumerate(expected)), rel=1e-3, abs=1e-3)
    # A later query re-encodes nothing.
    reranker.rerank("another question", candidates)
    assert (reranker.pages_encoded, counting.images, reranker.pages_reused) == (2, 2, 0)


def test_reranker_encodes_an_image_once(corpus: Corpus, counting: CountingEncoder) -> None:
    image = mmembed.render_page(corpus.pdfs[2], 1, dpi=DPI)
    reranker = MaxSimReranker(counting)
    ((position, got),) = reranker.rerank(QUERY, [Candidate(image=image)])
    (expected,) = maxsim_of(corpus.encoder, QUERY, corpus.encoder.encode_images([image]))
    assert position == 0 and got == pytest.approx(expected, rel=1e-5)
    reranker.rerank(QUERY, [Candidate(image=image.copy())])  # same pixels: the cache knows it
    assert reranker.pages_encoded == counting.images == 1


def test_reranker_refuses_a_file_changed_since_indexing(
    corpus: Corpus, counting: CountingEncoder, tmp_path: Path
) -> None:
    pdf = tmp_path / "report.pdf"
    shutil.copy(corpus.pdfs[0], pdf)
    indexed_hash = hashlib.sha256(pdf.read_bytes()).hexdigest()
    # The hash the loaders record at indexing is the sha256 of the file's bytes.
    assert corpus.index.sources()[str(corpus.pdfs[0])] == indexed_hash
    reranker = MaxSimReranker(counting, dpi=DPI)
    reranker.rerank(QUERY, [Candidate(source=str(pdf), page=1, content_hash=indexed_hash)])
    assert reranker.pages_encoded == 1

    shutil.copy(corpus.pdfs[2], pdf)  # the file is replaced after indexing
    stale = Candidate(source=str(pdf), page=2, content_hash=indexed_hash)
    with pytest.raises(MMEmbedError, match=r"report\.pdf changed since it was indexed.*Re-index it"):
        reranker.rerank(QUERY, [stale])
    assert reranker.pages_encoded == counting.images == 1  # nothing of the new file was encoded
    # With the file's current hash (or without one) it renders what is there now.
    fresh = hashlib.sha256(pdf.read_bytes()).hexdigest()
    reranker.rerank(QUERY, [Candidate(source=str(pdf), page=2, content_hash=fresh)])
    assert reranker.pages_encoded == 2


def test_top_n_and_ties_keep_the_first_stage_order(corpus: Corpus, tmp_path: Path) -> None:
    encoder = corpus.encoder
    query = encoder.encode_queries([QUERY])[0]  # (tokens, dim)
    with open_index(tmp_path / "ties", encoder.info, dtype="float32") as index:
        same = PageInput(query.clone(), "same.pdf", 1, "aa" * 32)  # best possible page, twice
        index.add(
            [
                PageInput(-query, "worse.pdf", 1, "bb" * 32, id="worse"),
                PageInput(same.embedding, same.source, 1, same.content_hash, id="z-tie"),
                PageInput(same.embedding, same.source, 2, same.content_hash, id="a-tie"),
            ]
        )
        reranker = MaxSimReranker(encoder, index=index)
        candidates = [Candidate(id=i) for i in ("worse", "z-tie", "a-tie")]
        ranked = reranker.rerank(QUERY, candidates)
        assert [p for p, _ in ranked] == [1, 2, 0]
        assert ranked[0][1] == ranked[1][1] > ranked[2][1]
        flipped = reranker.rerank(QUERY, [candidates[2], candidates[1], candidates[0]])
        assert [p for p, _ in flipped] == [0, 1, 2]  # ties follow positions, not ids
        assert reranker.rerank(QUERY, candidates, top_n=2) == ranked[:2]
        assert reranker.rerank(QUERY, candidates, top_n=1) == ranked[:1]
        assert reranker.rerank(QUERY, [], top_n=3) == []
        assert reranker.pages_encoded == 0


def test_mismatched_index_and_vectorless_pages_are_not_reused(
    corpus: Corpus, counting: CountingEncoder, tmp_path: Path
) -> None:
    pdf = corpus.pdfs[1]
    content_hash = hashlib.sha256(pdf.read_bytes()).hexdigest()
    ids = [page_id(content_hash, 1), page_id(content_hash, 2)]
    dense = EncoderInfo(name="dense/first-stage", family="test", kind="single", dim=128, similarity="cosine")
    with open_index(tmp_path / "dense", dense) as index:  # a first stage holding the same ids
        index.add([PageInput(torch.randn(1, 128), str(pdf), p, content_hash) for p in (1, 2)])
        reranker = MaxSimReranker(counting, index=index, dpi=DPI)
        assert not reranker.reuses_index
        ranked = reranker.rerank(
            QUERY, [Candidate(id=i, source=str(pdf), page=p) for i, p in zip(ids, (1, 2), strict=True)]
        )
        assert len(ranked) == 2 and (reranker.pages_reused, reranker.pages_encoded) == (0, 2)
    with open_index(tmp_path / "empty", corpus.encoder.info) as index:  # same encoder, no vectors stored
        index.add([PageInput(torch.zeros(0, 128), str(pdf), 3, content_hash)])
        reranker = MaxSimReranker(counting, index=index, dpi=DPI)
        assert reranker.reuses_index
        reranker.rerank(QUERY, [Candidate(id=page_id(content_hash, 3), source=str(pdf), page=3)])
        assert (reranker.pages_reused, reranker.pages_encoded) == (0, 1)
        with pytest.raises(MMEmbedError, match="neither an image nor a source"):
            reranker.rerank(QUERY, [Candidate(id="unknown")])
