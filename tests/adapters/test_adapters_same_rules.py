"""One index, every path (core, CLI, LangChain, LlamaIndex, Haystack): the same rules for
misuse (k below 1, an empty query), adapter-private keys kept private, and one behaviour
for rerankers built on a single-vector model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from page_index import build_page_index

import mmembed
from mmembed.cli import main
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.retrieve import InvalidQueryError, Retriever

DPI = 18


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sorted(write_sample_pdfs(tmp_path_factory.mktemp("rules_pdfs")))[0]


def _build(folder: Path, model: str, pdf: Path) -> Path:
    encoder = mmembed.load_encoder(model, device="cpu", dtype="float32")
    return build_page_index(folder, encoder, [pdf], dpi=DPI, pages=3)


@pytest.fixture(scope="module")
def multi_index(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path, pdf: Path) -> Path:
    """Three pages indexed by core, plus one page a Haystack pipeline wrote into the same folder."""
    from haystack import Document
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore
    from haystack_integrations.document_stores.mmembed.documents import attach_embedding

    folder = _build(tmp_path_factory.mktemp("rules_multi") / "index", str(tiny_colqwen2_5), pdf)
    store = MMEmbedDocumentStore(path=str(folder))
    encoder = store.index_for_reading().encoder
    vectors = torch.nn.functional.normalize(torch.randn(4, encoder.dim), dim=-1)  # (n_vectors, dim)
    meta = {"file_path": str(pdf), "page_number": 1, "topic": "from haystack"}
    store.write_documents(
        [attach_embedding(Document(id="hs-page", content="note", meta=meta), vectors, encoder)]
    )
    store.close()
    return folder


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from mmembed_testing import make_tiny_checkpoint

    return str(make_tiny_checkpoint("biqwen2_5", tmp_path_factory.mktemp("rules_dense") / "m", seed=0))


@pytest.fixture(scope="module")
def dense_index(tmp_path_factory: pytest.TempPathFactory, dense_model: str, pdf: Path) -> Path:
    return _build(tmp_path_factory.mktemp("rules_dense_index") / "index", dense_model, pdf)


def _core(index: Path, model: str) -> Retriever:
    return Retriever(mmembed.open_index(index, readonly=True), mmembed.load_encoder(model, device="cpu"))


def test_k_below_one_is_refused_everywhere(
    multi_index: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever as HaystackRetriever
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore
    from llama_index.retrievers.mmembed import MMEmbedRetriever as LlamaIndexRetriever

    from langchain_mmembed import MMEmbedRetriever as LangChainRetriever

    with pytest.raises(InvalidQueryError, match="k must be"):
        _core(multi_index, str(tiny_colqwen2_5)).search("solar", k=0)
    with pytest.raises(ValueError, match="k must be"):
        LangChainRetriever(index=str(multi_index), image="none").invoke("solar", k=0)
    with pytest.raises(ValueError, match="similarity_top_k must be"):
        LlamaIndexRetriever(index=str(multi_index), similarity_top_k=0)
    with pytest.raises(ValueError, match="top_k must be"):
        HaystackRetriever(document_store=MMEmbedDocumentStore(path=str(multi_index)), top_k=0)
    with pytest.raises(SystemExit):
        main(["search", "solar", "--index", str(multi_index), "-k", "0"])
    err = capsys.readouterr().err
    assert "-k must be at least 1" in err and "--batch-size" not in err


def test_an_empty_query_is_refused_everywhere(
    multi_index: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder
    from llama_index.retrievers.mmembed import MMEmbedRetriever as LlamaIndexRetriever

    from langchain_mmembed import MMEmbedRetriever as LangChainRetriever

    attempts: list[Any] = [
        lambda q: _core(multi_index, str(tiny_colqwen2_5)).search(q),
        lambda q: LangChainRetriever(index=str(multi_index), image="none").invoke(q),
        lambda q: LlamaIndexRetriever(index=str(multi_index)).retrieve(q),
        lambda q: MMEmbedTextEmbedder(model=str(tiny_colqwen2_5)).run(text=q),
    ]
    for query in ("", "   "):
        for attempt in attempts:
            with pytest.raises(ValueError, match="the query is empty"):
                attempt(query)
    with pytest.raises(SystemExit) as usage:  # the CLI's usage errors exit 2
        main(["search", "", "--index", str(multi_index)])
    assert usage.value.code == 2 and "the query is empty" in capsys.readouterr().err


def test_haystack_private_keys_stay_out_of_the_other_adapters(multi_index: Path) -> None:
    from llama_index.core.schema import MetadataMode
    from llama_index.retrievers.mmembed import MMEmbedRetriever as LlamaIndexRetriever

    from langchain_mmembed import MMEmbedRetriever as LangChainRetriever

    documents = LangChainRetriever(index=str(multi_index), k=4, image="none").invoke("solar")
    nodes = LlamaIndexRetriever(index=str(multi_index), similarity_top_k=4).retrieve("solar")
    assert {d.id for d in documents} == {n.node.node_id for n in nodes} and "hs-page" in {
        d.id for d in documents
    }
    for metadata in [d.metadata for d in documents] + [n.node.metadata for n in nodes]:
        assert not [k for k in metadata if k.startswith("haystack.")], metadata
    # Haystack's location keys are the record's own source / page: a Haystack page reads like a core one
    hs_doc, core_doc = (next(d for d in documents if (d.id == "hs-page") == hs) for hs in (True, False))
    assert set(hs_doc.metadata) - {"topic"} <= set(core_doc.metadata), hs_doc.metadata  # no extra keys
    assert "file_path" not in hs_doc.metadata and "page_number" not in hs_doc.metadata
    hs_node = next(n.node for n in nodes if n.node.node_id == "hs-page")
    assert hs_node.metadata["topic"] == "from haystack"  # the user's own meta is shared
    assert "haystack" not in hs_node.get_content(metadata_mode=MetadataMode.LLM).replace("from haystack", "")


def test_single_vector_rerank_is_one_behaviour_in_every_adapter(dense_index: Path, dense_model: str) -> None:
    """A dense model reranks by its own similarity with the stored vectors, in all three adapters."""
    from haystack_integrations.components.rankers.mmembed import MMEmbedMaxSimRanker
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore
    from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank
    from llama_index.retrievers.mmembed import MMEmbedRetriever as LlamaIndexRetriever

    from langchain_mmembed import MMEmbedMaxSimReranker
    from langchain_mmembed import MMEmbedRetriever as LangChainRetriever

    query = "olive oil"
    index = mmembed.open_index(dense_index, readonly=True)
    encoder = mmembed.load_encoder(dense_model, device="cpu")
    expected = {
        r.id: float(v[0] @ encoder.encode_queries([query])[0][0])  # one vector each: dot / cosine of units
        for r, v in zip(index.records(), index.get_embeddings([r.id for r in index.records()]), strict=True)
        if v is not None
    }
    index.close()

    lc = MMEmbedMaxSimReranker(index=str(dense_index), top_n=3)
    lc_docs = LangChainRetriever(index=str(dense_index), k=3, image="none").invoke(query)
    lc_ranked = {d.id: d.metadata["relevance_score"] for d in lc.compress_documents(lc_docs[::-1], query)}

    li = MMEmbedRerank(index=str(dense_index), top_n=3)
    li_nodes = LlamaIndexRetriever(index=str(dense_index), similarity_top_k=3).retrieve(query)
    li_ranked = {n.node.node_id: n.score for n in li.postprocess_nodes(li_nodes[::-1], query_str=query)}

    store = MMEmbedDocumentStore(path=str(dense_index))
    hs = MMEmbedMaxSimRanker(model=dense_model, document_store=store, top_k=3)
    hs.warm_up()
    hs_ranked = {
        d.id: d.score for d in hs.run(query=query, documents=store.filter_documents()[::-1])["documents"]
    }

    for ranked in (lc_ranked, li_ranked, hs_ranked):
        assert ranked == pytest.approx(expected, rel=1e-3, abs=1e-3)
    assert lc.pages_encoded == li.pages_encoded == hs.pages_encoded == 0  # stored vectors reused
    assert lc.pages_reused == li.pages_reused == hs.pages_reused == 3


def test_langchain_from_no_documents_creates_the_index(tmp_path: Path, tiny_colqwen2_5: Path) -> None:
    from langchain_mmembed import MMEmbedRetriever as LangChainRetriever

    retriever = LangChainRetriever.from_documents([], index=str(tmp_path / "new"), model=str(tiny_colqwen2_5))
    assert retriever.invoke("solar") == []
    assert mmembed.open_index(tmp_path / "new", readonly=True).encoder.name == retriever.encoder.info.name


def test_a_deleted_and_recreated_folder_is_reopened(tmp_path: Path) -> None:
    from haystack import Document
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

    from mmembed.types import EncoderInfo

    info = EncoderInfo(name="dense-4", family="external", kind="single", dim=4, similarity="dot")
    folder = tmp_path / "store"
    store = MMEmbedDocumentStore(path=str(folder), encoder=info, dtype="float32")
    store.write_documents([Document(id="a", content="a", embedding=[1.0, 0, 0, 0])])
    shutil.rmtree(folder)
    again = MMEmbedDocumentStore(path=str(folder), encoder=info, dtype="float32")
    assert again.count_documents() == 0
    assert again.write_documents([Document(id="a", content="a", embedding=[1.0, 0, 0, 0])]) == 1
    assert store.count_documents() == 1  # the first store follows the folder too


def test_search_help_names_the_model_search_really_uses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the model the index was built with" in text and "MMEMBED_MODEL" not in text


def test_a_search_on_an_index_created_empty_by_a_typo_says_so(
    tmp_path: Path, tiny_colqwen2_5: Path, pdf: Path
) -> None:
    from mmembed.index import IndexNotFoundError

    encoder = mmembed.load_encoder(str(tiny_colqwen2_5), device="cpu")
    typo = mmembed.open_index(tmp_path / "my_indx", encoder=encoder.info)
    with typo, pytest.raises(IndexNotFoundError, match="mistyped"):
        mmembed.Retriever(typo, encoder).search("solar")
    with pytest.raises(IndexNotFoundError, match="no mmembed index"):
        mmembed.open_index(tmp_path / "other", encoder=encoder.info, create=False)
    # the README's flow: create, fill, search in one open
    with mmembed.open_index(tmp_path / "fresh", encoder=encoder.info) as fresh:
        mmembed.index_documents([pdf], fresh, encoder, dpi=DPI)
        assert len(mmembed.Retriever(fresh, encoder).search("solar", k=2)) == 2


def test_langchain_and_llamaindex_follow_a_recreated_folder(
    tmp_path: Path, multi_index: Path, tiny_colqwen2_5: Path
) -> None:
    from llama_index.retrievers.mmembed import MMEmbedRetriever as LlamaIndexRetriever

    from langchain_mmembed import MMEmbedRetriever as LangChainRetriever

    folder = tmp_path / "index"
    shutil.copytree(multi_index, folder)
    lc = LangChainRetriever(index=str(folder), k=10, image="none")
    li = LlamaIndexRetriever(index=str(folder), similarity_top_k=10)
    assert len(lc.invoke("solar")) == len(li.retrieve("solar")) == 4
    shutil.rmtree(folder)
    LangChainRetriever.from_documents([], index=str(folder), model=str(tiny_colqwen2_5))  # recreated empty
    assert lc.invoke("solar") == [] and li.retrieve("solar") == []
