"""The CLI on a Qdrant-backed index (Qdrant's local mode, the server code path): index,
search, re-index, delete, migrate from a folder; and the bad-input behaviour (unreachable
server, refused API key, another model's collection): a clear error, nothing written."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mmembed.cli import main
from mmembed.index import IndexFormatError, open_backend
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.types import EncoderMismatchError
from mmembed_qdrant import QdrantAuthError, QdrantIndex, QdrantUnavailableError
from mmembed_testing.backend_contract import MULTI, brute_force, make_pages


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    write_sample_pdfs(folder)
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def search(capsys: pytest.CaptureFixture[str], index: str, query: str) -> list[dict]:
    code, out, err = run(capsys, "search", query, "--index", index, "-k", "4", "--json")
    assert code == 0, err
    return json.loads(out)


def test_index_search_reindex_delete_and_migrate_match_the_embedded_index(
    tmp_path: Path, docs: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, uri = str(tmp_path / "local"), f"qdrant://{tmp_path}/store/pages"
    for index in (folder, uri):
        argv = ("index", str(docs), "--index", index, "--model", str(tiny_colqwen2_5), "-q", "--dpi", "48")
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert f"index {index} now holds" in out
    expected, got = search(capsys, folder, "revenue table"), search(capsys, uri, "revenue table")
    assert [h["id"] for h in got] == [h["id"] for h in expected]
    assert [h["score"] for h in got] == pytest.approx([h["score"] for h in expected], rel=1e-2, abs=1e-2)

    code, out, _ = run(capsys, "info", "--index", uri, "--json")
    pages = json.loads(out)["pages"]
    assert code == 0 and pages >= 6
    # re-indexing unchanged files writes nothing new
    argv = ("index", str(docs), "--index", uri, "--model", str(tiny_colqwen2_5), "-q", "--dpi", "48")
    assert run(capsys, *argv)[0] == 0
    assert json.loads(run(capsys, "info", "--index", uri, "--json")[1])["pages"] == pages
    # delete by source
    source = expected[0]["source"]
    code, out, _ = run(capsys, "delete", "--index", uri, "--source", source)
    assert code == 0 and not out.startswith("deleted 0")
    assert source not in {h["source"] for h in search(capsys, uri, "revenue table")}

    # migrate the folder into a fresh collection: no re-encoding, same answers
    target = f"qdrant://{tmp_path}/store/migrated"
    code, out, err = run(capsys, "migrate", "--from", folder, "--to", target, "--batch-size", "4")
    assert code == 0, err and f"copied {pages} page(s)" in out
    assert [h["id"] for h in search(capsys, target, "revenue table")] == [h["id"] for h in expected]
    with (
        open_backend(folder, create=False) as local,
        QdrantIndex.connect("migrated", path=tmp_path / "store") as copied,
    ):
        ids = [r.id for r in local.records()]
        assert {r.id for r in copied.records()} == set(ids)
        for a, b in zip(local.get_embeddings(ids), copied.get_embeddings(ids), strict=True):
            assert a is not None and b is not None
            torch.testing.assert_close(a, b)
        assert local.get(ids[:1])[0] == copied.get(ids[:1])[0]  # record and thumbnail


def test_an_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "info", "--backend", "qdrant", "--url", "http://127.0.0.1:9", "--index", "pages"
    )
    assert code == 1 and "cannot reach Qdrant at http://127.0.0.1:9" in err
    with pytest.raises(QdrantUnavailableError, match="server is running"):
        open_backend("qdrant://127.0.0.1:9/pages", MULTI)
    with pytest.raises(SystemExit) as usage:  # a usage error, like every other one (exit 2)
        main(["search", "q", "--backend", "qdrant", "--index", "pages"])
    assert usage.value.code == 2 and "--backend qdrant needs --url" in capsys.readouterr().err


class _RefusesKeys(http.server.BaseHTTPRequestHandler):
    """Answers like a Qdrant server given a wrong API key."""

    def _refuse(self) -> None:
        body = b'{"status": {"error": "Invalid api-key"}}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def refusing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusesKeys)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_refused_api_key_is_a_clear_error(refusing_server: str) -> None:
    with pytest.raises(QdrantAuthError, match="API key is wrong or missing"):
        QdrantIndex.connect("pages", MULTI, url=refusing_server, api_key="wrong")


def test_another_models_collection_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with QdrantIndex.connect("pages", MULTI, path=tmp_path) as index:
        index.add(make_pages(3))
    other = MULTI.__class__(**{**MULTI.to_dict(), "name": "other/model"})
    with pytest.raises(EncoderMismatchError, match="other/model"):
        QdrantIndex.connect("pages", other, path=tmp_path)
    with QdrantIndex.connect("pages", path=tmp_path) as reopened:  # the stored encoder
        assert reopened.encoder == MULTI and reopened.count() == 3
        client = reopened._client
        client.create_collection("foreign", vectors_config={})
    with pytest.raises(IndexFormatError, match="not created by mmembed"):
        QdrantIndex.connect("foreign", MULTI, path=tmp_path)


def test_the_default_search_reranks_the_pooled_prefetch(tmp_path: Path) -> None:
    pages = make_pages(40, seed=3)
    query = torch.randn(3, 16)  # (query_tokens, dim)
    with QdrantIndex.connect("pages", MULTI, candidates=5) as index:
        index.add(pages)
        hits = index.search([query], k=5)[0]
        # the prefetch keeps the 5 pages whose mean vector is closest (cosine) to the query's
        pooled = torch.stack([p.embedding.mean(0) for p in pages])  # (pages, dim)
        cosine = torch.nn.functional.cosine_similarity(pooled, query.mean(0, keepdim=True))
        prefetched = {pages[i].resolved_id() for i in cosine.topk(5).indices.tolist()}
        assert {h.id for h in hits} == prefetched
        index.exact = True
        exact = index.search([query], k=5)[0]
        assert [h.id for h in exact] == [i for i, _ in brute_force(index, query)[:5]]
