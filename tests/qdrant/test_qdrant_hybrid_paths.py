"""Text and hybrid modes on a Qdrant URI through every path that refused them before: the
Retriever, the CLI (search, info, eval, index --no-text / --backfill-text), serve, LlamaIndex,
LangChain and Haystack — each gives core's results on the same store."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network here
from page_index import build_page_index

import mmembed
from mmembed.cli import main
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.retrieve import Retriever

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

DPI = 18
QUERIES = ["quarterly revenue grew", "solar storage capacity", "lemon olive oil cake"]
K = 5


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sorted(write_sample_pdfs(tmp_path_factory.mktemp("qdrant_hybrid_pdfs")))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path, pdfs: list[Path]) -> Path:
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5), device="cpu", dtype="float32")
    return build_page_index(
        tmp_path_factory.mktemp("qdrant_hybrid") / "index", encoder, pdfs, dpi=DPI, pages=9
    )


# qdrant-edge here (the paths only call the backend); each engine's own text and hybrid
# search, local mode included, is tested in test_qdrant_hybrid.py.
@pytest.fixture(scope="module", params=["edge", pytest.param("server", marks=pytest.mark.qdrant_server)])
def uri(request: pytest.FixtureRequest, folder: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The embedded index migrated (page text included) into a Qdrant store."""
    root = tmp_path_factory.mktemp("qdrant_hybrid_store")
    if request.param == "server":
        target = str(request.getfixturevalue("server_collection")())
    else:
        target = (
            f"qdrant://{root}/store/pages" if request.param == "local-mode" else f"qdrant-edge://{root}/edge"
        )
    assert main(["migrate", "--from", str(folder), "--to", target]) == 0
    return target


@pytest.fixture(scope="module")
def core(uri: str, tiny_colqwen2_5: Path) -> Iterator[Retriever]:
    retriever = Retriever(mmembed.open_backend(uri, create=False), mmembed.load_encoder(str(tiny_colqwen2_5)))
    yield retriever
    retriever.index.close()


def _pairs(hits) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 6)) for h in hits]


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_retriever_text_and_hybrid_on_qdrant(core: Retriever, folder: Path, tiny_colqwen2_5: Path) -> None:
    local = Retriever(mmembed.open_index(folder, readonly=True), mmembed.load_encoder(str(tiny_colqwen2_5)))
    try:
        hits = core.search("quarterly revenue grew", k=K, mode="text")
        assert all("quarterly_financial_report" in h.source for h in hits[:3])
        assert all(h.found_by == ("text",) for h in hits)
        hybrid = core.search("quarterly revenue grew", k=9, mode="hybrid")
        assert len(hybrid) == 9  # pages the text side misses still come from the visual side
        # The embedded index finds the same best text page (scores differ: bm25 against IDF).
        assert hits[0].id == local.search("quarterly revenue grew", k=1, mode="text")[0].id
    finally:
        local.index.close()


def test_cli_search_info_and_eval_modes(
    uri: str, core: Retriever, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _json(capsys, ["search", "income statement", "--index", uri, "--mode", "text", "--json"])
    assert "quarterly_financial_report" in text[0]["source"] and text[0]["page"] == 2
    assert text[0]["matches"] == [{"side": "text", "rank": 1, "score": text[0]["score"]}]
    hybrid = _json(
        capsys, ["search", "income statement", "--index", uri, "--mode", "hybrid", "-k", "9", "--json"]
    )
    assert len(hybrid) == 9 and {m["side"] for h in hybrid for m in h["matches"]} == {"visual", "text"}
    weighted = _json(
        capsys,
        ["search", "income statement", "--index", uri, "--mode", "hybrid", "--alpha", "0", "--json"],
    )
    assert weighted[0]["page"] == 2 and weighted[0]["score"] == pytest.approx(1.0)
    info = _json(capsys, ["info", "--index", uri, "--json"])
    assert info["pages_with_text"] == 9 and info["text_tokenizer"] == "unicode61"

    (tmp_path / "queries.tsv").write_text(
        "q1\tcondensed income statement\nq2\tgrid integration and storage\n"
    )
    (tmp_path / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\tquarterly_financial_report.pdf#2\t1\n"
        "q2\tsolar_energy_report.pdf#3\t1\n"
    )
    argv = ["eval", "--index", uri, "--queries", str(tmp_path / "queries.tsv")]
    argv += [
        "--qrels",
        str(tmp_path / "qrels.tsv"),
        "--mode",
        "visual",
        "text",
        "hybrid",
        "-k",
        "9",
        "--json",
    ]
    by_mode = {r["name"].rsplit("[", 1)[1].rstrip("]"): r["metrics"] for r in _json(capsys, argv)}
    assert by_mode["text"]["RR@10"] == pytest.approx(1.0)  # both answers are in the text
    assert by_mode["hybrid"]["R@5"] >= max(by_mode["visual"]["R@5"], by_mode["text"]["R@5"]) - 1e-9


def test_serve_mode_selector_on_qdrant(uri: str, core: Retriever) -> None:
    pytest.importorskip("fastapi", reason="mmembed-core[serve] is not installed")
    from fastapi.testclient import TestClient

    from mmembed.serve import create_app, open_server

    expected = core.search("income statement", k=3, mode="hybrid")
    server = open_server(uri)
    try:
        client = TestClient(create_app(server), base_url="http://127.0.0.1:8000")  # a Host serve allows
        body = client.get("/search", params={"q": "income statement", "k": 3, "mode": "text"}).json()
        assert body["mode"] == "text" and body["hits"][0]["page"] == 2
        assert body["hits"][0]["matches"][0]["side"] == "text"
        hybrid = client.get("/search", params={"q": "income statement", "k": 3, "mode": "hybrid"}).json()
        assert [h["id"] for h in hybrid["hits"]] == [h.id for h in expected]
    finally:
        server.index.close()


def test_framework_adapters_give_cores_results_on_qdrant(
    uri: str, core: Retriever, tiny_colqwen2_5: Path
) -> None:
    from haystack_integrations.components.retrievers.mmembed import MMEmbedBM25Retriever, MMEmbedRetriever
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore
    from llama_index.core.vector_stores.types import VectorStoreQueryMode
    from llama_index.retrievers.mmembed import MMEmbedRetriever as LIRetriever

    from langchain_mmembed import MMEmbedRetriever as LCRetriever

    expected = {
        (q, mode, alpha): _pairs(core.search(q, k=K, mode=mode, alpha=alpha))
        for q in QUERIES
        for mode, alpha in (("text", None), ("hybrid", None), ("hybrid", 0.3))
    }
    for li_mode, mode, alpha in (
        (VectorStoreQueryMode.TEXT_SEARCH, "text", None),
        (VectorStoreQueryMode.HYBRID, "hybrid", None),
        (VectorStoreQueryMode.HYBRID, "hybrid", 0.3),
    ):
        li = LIRetriever(
            uri, similarity_top_k=K, image_mode="none", vector_store_query_mode=li_mode, alpha=alpha
        )
        for q in QUERIES:
            assert [(n.node.id_, round(n.score, 6)) for n in li.retrieve(q)] == expected[(q, mode, alpha)]
        li.close()
    for mode in ("text", "hybrid"):
        lc = LCRetriever(index=uri, image="none", k=K, search_mode=mode)
        for q in QUERIES:
            docs = lc.invoke(q)
            assert [(d.id, round(d.metadata["score"], 6)) for d in docs] == expected[(q, mode, None)]
        lc.close()
    store = MMEmbedDocumentStore(path=uri)
    bm25 = MMEmbedBM25Retriever(document_store=store, top_k=K)
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder

    embedder = MMEmbedTextEmbedder(model=str(tiny_colqwen2_5))
    embedder.warm_up()
    hybrid = MMEmbedRetriever(document_store=store, top_k=K, mode="hybrid")
    for q in QUERIES:
        docs = bm25.run(query=q)["documents"]
        assert [(d.id, round(d.score, 6)) for d in docs] == expected[(q, "text", None)]
        query = embedder.run(text=q)["multi_embedding"]
        docs = hybrid.run(query_multi_embedding=query, query=q)["documents"]
        assert [(d.id, round(d.score, 6)) for d in docs] == expected[(q, "hybrid", None)]
    store.close()


def test_index_no_text_then_backfill_text_reads_the_sources(
    tmp_path: Path, tiny_colqwen2_5: Path, pdfs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # (One engine: reading the sources is the same for both; each engine's own write of text
    # and vector is tested in test_qdrant_hybrid.py.)
    uri = f"qdrant://{tmp_path}/store/pages"
    copy = tmp_path / "docs"
    copy.mkdir()
    files = [Path(shutil.copy(p, copy)) for p in pdfs]
    argv = ["index", *map(str, files), "--index", uri, "--model", str(tiny_colqwen2_5)]
    assert main([*argv, "--dpi", str(DPI), "--quiet", "--no-text"]) == 0
    assert _json(capsys, ["info", "--index", uri, "--json"])["pages_with_text"] == 0
    assert _json(capsys, ["search", "income statement", "--index", uri, "--mode", "text", "--json"]) == []
    files[0].write_bytes(files[0].read_bytes() + b"\n% changed\n")  # no longer the indexed bytes
    capsys.readouterr()
    assert main(["index", "--backfill-text", "--index", uri]) == 0
    out = capsys.readouterr().out
    assert "6 page(s) got text" in out and f"skipped: {files[0].resolve()}" in out
    assert _json(capsys, ["info", "--index", uri, "--json"])["pages_with_text"] == 6
    with pytest.raises(SystemExit) as usage:
        main(["index", "--backfill-text", "--index", uri, "--text-tokenizer", "trigram"])
    assert usage.value.code == 2 and "'unicode61' only" in capsys.readouterr().err
