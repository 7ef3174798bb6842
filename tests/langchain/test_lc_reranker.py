"""MMEmbedMaxSimReranker: exact MaxSim rerank, stored vectors reused, unknown pages encoded once."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document

from langchain_mmembed import MMEmbedMaxSimReranker, MMEmbedRetriever, PDFPageImageLoader

DPI = 24
QUERY = "quarterly revenue table"


def test_reuses_stored_vectors_and_scores_exactly(built_index: Path, tiny_model: str) -> None:
    import mmembed

    first_stage = MMEmbedRetriever(index=built_index, k=6, image="none").invoke("anything")
    # Strip everything but identity: the reranker must find the vectors by id alone.
    docs = [Document(id=d.id, page_content="", metadata={"note": i}) for i, d in enumerate(first_stage)]
    reranker = MMEmbedMaxSimReranker(model=tiny_model, index=built_index, top_n=4)
    ranked = reranker.compress_documents(docs, QUERY)

    assert reranker.pages_encoded == 0 and reranker.pages_reused == len(docs)
    assert len(ranked) == 4
    encoder = mmembed.load_encoder(tiny_model)
    with mmembed.open_index(built_index, readonly=True) as index:
        stored = index.get_embeddings([d.id for d in docs])
    exact = mmembed.score(encoder.encode_queries([QUERY]), stored, "maxsim")[0].tolist()
    expected_order = sorted(range(len(docs)), key=lambda i: -exact[i])[:4]
    assert [d.metadata["note"] for d in ranked] == expected_order
    for doc in ranked:
        assert doc.metadata["relevance_score"] == pytest.approx(
            exact[doc.metadata["note"]], rel=1e-4, abs=1e-4
        )
        assert doc.id == docs[doc.metadata["note"]].id


def test_unknown_pages_are_encoded_once(tmp_path: Path, sample_pdfs: list[Path], tiny_model: str) -> None:
    docs = PDFPageImageLoader(sample_pdfs[2], dpi=DPI).load()
    reranker = MMEmbedMaxSimReranker(model=tiny_model, top_n=None)  # no index at all
    first = reranker.compress_documents(docs, QUERY)
    assert len(first) == len(docs) and reranker.pages_encoded == len(docs)
    second = reranker.compress_documents(docs, "another question")
    assert reranker.pages_encoded == len(docs)  # served from the reranker's cache
    assert {d.id for d in second} == {d.id for d in docs}
    scores = [d.metadata["relevance_score"] for d in first]
    assert scores == sorted(scores, reverse=True)


def test_pages_rendered_from_source_and_zero_based_numbering(
    sample_pdfs: list[Path], tiny_model: str
) -> None:
    from mmembed import MMEmbedError

    source = str(sample_pdfs[0])
    one_based = Document(page_content="", metadata={"source": source, "page": 2})
    zero_based = Document(page_content="", metadata={"source": source, "page": 1})  # PyPDFLoader style
    a = MMEmbedMaxSimReranker(model=tiny_model, dpi=DPI).compress_documents([one_based], QUERY)[0]
    b = MMEmbedMaxSimReranker(model=tiny_model, dpi=DPI, zero_based_pages=True).compress_documents(
        [zero_based], QUERY
    )[0]
    assert a.metadata["relevance_score"] == pytest.approx(b.metadata["relevance_score"], rel=1e-5)
    assert b.metadata["page"] == 1  # the document itself is left as it was

    with pytest.raises(MMEmbedError, match="source file"):
        MMEmbedMaxSimReranker(model=tiny_model).compress_documents(
            [Document(page_content="text only")], QUERY
        )
    with pytest.raises(ValueError, match="model"):
        MMEmbedMaxSimReranker()


async def test_inside_contextual_compression_retriever(built_index: Path, tiny_model: str) -> None:
    reranker = MMEmbedMaxSimReranker(index=built_index, top_n=2)  # model read from the index
    pipeline = ContextualCompressionRetriever(
        base_compressor=reranker, base_retriever=MMEmbedRetriever(index=built_index, k=5)
    )
    docs = pipeline.invoke(QUERY)
    assert len(docs) == 2 and all("relevance_score" in d.metadata and "score" in d.metadata for d in docs)
    assert reranker.pages_encoded == 0 and reranker.pages_reused == 5
    async_docs = await pipeline.ainvoke(QUERY)
    assert [d.id for d in async_docs] == [d.id for d in docs]
