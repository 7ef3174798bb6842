"""Qdrant's embedded engine (qdrant-edge) as an index: the CLI (``--backend qdrant-edge``) and
an adapter answer as on the embedded index; bad input (another model, a foreign or damaged
folder) is a clear error that writes nothing; while a writer holds the folder another
process is refused, and a writer killed by SIGKILL mid-batch leaves every batch whole or
absent."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("qdrant_edge")

from langchain_mmembed import MMEmbedRetriever
from mmembed.cli import main
from mmembed.index import (
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    open_backend,
    open_index,
)
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.types import EncoderMismatchError, MMEmbedError
from mmembed_qdrant import QdrantEdgeIndex
from mmembed_testing.backend_contract import MULTI, brute_force, make_pages


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def hits(capsys: pytest.CaptureFixture[str], *index: str) -> list[dict]:
    code, out, err = run(capsys, "search", "revenue table", *index, "-k", "4", "--json")
    assert code == 0, err
    return json.loads(out)


def test_cli_and_an_adapter_on_qdrant_edge_match_the_embedded_index(
    tmp_path: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = write_sample_pdfs(tmp_path / "docs")
    folder, edge = str(tmp_path / "local"), str(tmp_path / "edge")
    common = ("--model", str(tiny_colqwen2_5), "-q", "--dpi", "24")
    assert run(capsys, "index", str(tmp_path / "docs"), "--index", folder, *common)[0] == 0
    code, out, err = run(
        capsys, "index", str(tmp_path / "docs"), "--backend", "qdrant-edge", "--index", edge, *common
    )
    assert code == 0 and f"index qdrant-edge://{edge} now holds" in out, err
    expected = hits(capsys, "--index", folder)
    got = hits(capsys, "--backend", "qdrant-edge", "--index", edge)
    assert [h["id"] for h in got] == [h["id"] for h in expected]
    assert [h["score"] for h in got] == pytest.approx([h["score"] for h in expected], rel=1e-2, abs=1e-2)
    uri = f"qdrant-edge://{edge}"
    pages = json.loads(run(capsys, "info", "--index", uri, "--json")[1])["pages"]
    assert pages == 3 * len(docs)  # three pages each
    # re-indexing unchanged files writes nothing; delete by source
    assert run(capsys, "index", str(tmp_path / "docs"), "--index", uri, *common)[0] == 0
    assert json.loads(run(capsys, "info", "--index", uri, "--json")[1])["pages"] == pages
    source = expected[0]["source"]
    assert run(capsys, "delete", "--index", uri, "--source", source)[0] == 0
    assert source not in {h["source"] for h in hits(capsys, "--index", uri)}

    # an adapter takes the URI like a folder: migrate without re-encoding, same answers
    copy = f"qdrant-edge://{tmp_path / 'migrated'}"
    code, _, err = run(capsys, "migrate", "--from", folder, "--to", copy)
    assert code == 0, err
    local = MMEmbedRetriever(index=folder, k=3, image="none").invoke("quarterly revenue table")
    on_edge = MMEmbedRetriever(index=copy, k=3, image="none")  # model read from the index
    got_docs = on_edge.invoke("quarterly revenue table")
    on_edge.close()
    assert [d.id for d in got_docs] == [d.id for d in local]
    assert [d.metadata["score"] for d in got_docs] == pytest.approx(
        [d.metadata["score"] for d in local], rel=1e-3, abs=1e-3
    )
    with open_index(folder, create=False, readonly=True) as a, open_backend(copy, create=False) as b:
        ids = [r.id for r in a.records()]
        assert b.get(ids) == a.get(ids)  # records and thumbnails
        for x, y in zip(a.get_embeddings(ids), b.get_embeddings(ids), strict=True):
            assert x is not None and y is not None
            torch.testing.assert_close(x, y)


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_bad_input_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "edge"
    with QdrantEdgeIndex(path, MULTI) as index:
        index.add(make_pages(3))
    before = _snapshot(path)
    other = MULTI.__class__(**{**MULTI.to_dict(), "name": "other/model"})
    with pytest.raises(EncoderMismatchError, match="other/model"):
        open_backend(f"qdrant-edge://{path}", other)
    assert _snapshot(path) == before
    with open_backend(f"qdrant-edge://{path}", create=False) as reopened:  # the stored encoder
        assert reopened.encoder == MULTI and reopened.count() == 3

    # a folder the engine did not make for mmembed: the embedded index's, or a stray file
    embedded = tmp_path / "embedded"
    with open_index(embedded, MULTI) as local:
        local.add(make_pages(2))
    foreign = _snapshot(embedded)
    with pytest.raises(IndexFormatError, match="not an mmembed qdrant-edge index"):
        QdrantEdgeIndex(embedded, MULTI)
    assert _snapshot(embedded) == foreign
    (tmp_path / "file").write_text("x")
    with pytest.raises(IndexFormatError, match="is a file"):
        QdrantEdgeIndex(tmp_path / "file", MULTI)

    # missing: found nowhere, created only when asked (CLI: a clear exit, no traceback)
    with pytest.raises(IndexNotFoundError, match="missing or empty"):
        open_backend(f"qdrant-edge://{tmp_path / 'missing'}", create=False)
    code, _, err = run(
        capsys, "search", "q", "--backend", "qdrant-edge", "--index", str(tmp_path / "missing")
    )
    assert code == 1 and "no mmembed index at qdrant-edge://" in err
    assert not (tmp_path / "missing").exists()

    # damaged: an unreadable manifest, a lost shard folder
    (path / "mmembed.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match=r"damaged.*mmembed\.json"):
        QdrantEdgeIndex(path, MULTI)
    (path / "mmembed.json").write_text(json.dumps({"format": 1, "encoder": MULTI.to_dict()}))
    (path / "shard").rename(tmp_path / "lost")
    with pytest.raises(IndexFormatError, match=r"damaged.*shard/ folder is missing"):
        QdrantEdgeIndex(path, MULTI)
    assert not (path / "shard").exists()


def test_without_qdrant_edge_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "qdrant_edge", None)  # import qdrant_edge -> ImportError
    with pytest.raises(MMEmbedError, match=r"pip install 'mmembed-qdrant\[edge\]'"):
        open_backend(f"qdrant-edge://{tmp_path / 'edge'}", MULTI)
    assert not (tmp_path / "edge").exists()


def test_exact_search_and_the_pooled_prefetch(tmp_path: Path) -> None:
    pages = make_pages(40, seed=3)
    query = torch.randn(3, 16)  # (query_tokens, dim)
    with QdrantEdgeIndex(tmp_path / "edge", MULTI, candidates=5) as index:
        index.add(pages)
        found = index.search([query], k=5)[0]
        # the prefetch keeps the 5 pages whose mean vector is closest (cosine) to the query's
        pooled = torch.stack([p.embedding.mean(0) for p in pages])  # (pages, dim)
        cosine = torch.nn.functional.cosine_similarity(pooled, query.mean(0, keepdim=True))
        assert {h.id for h in found} == {pages[i].resolved_id() for i in cosine.topk(5).indices.tolist()}
        index.exact = True
        exact = index.search([query], k=5, where={"lang": "en"})[0]
        reference = [i for i, _ in brute_force(index, query, where={"lang": "en"})[:5]]
        assert [h.id for h in exact] == reference
        assert [h.score for h in exact] == pytest.approx(
            [s for _, s in brute_force(index, query, where={"lang": "en"})[:5]], rel=1e-4, abs=1e-4
        )


WRITER = textwrap.dedent(
    """
    import sys, torch
    from mmembed.index import PageInput
    from mmembed_qdrant import QdrantEdgeIndex
    from mmembed_testing.backend_contract import MULTI

    index = QdrantEdgeIndex(sys.argv[1], MULTI)
    batch = int(sys.argv[2])
    while True:
        g = torch.Generator().manual_seed(batch)
        index.upsert([
            PageInput(embedding=torch.randn(24, 16, generator=g), source=f"b{batch}.pdf", page=j + 1,
                      content_hash=f"{batch:064x}", metadata={"batch": batch}, id=f"b{batch}-{j}")
            for j in range(PAGES)
        ])
        print(f"ACK {batch}", flush=True)
        batch += 1
    """
)
PAGES = 400  # a batch large enough that a kill often lands inside its write


@pytest.mark.slow
def test_a_writer_killed_mid_batch_leaves_whole_batches(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.replace("PAGES", str(PAGES)))
    path = tmp_path / "edge"
    rng = random.Random(0)
    acked: set[int] = set()
    next_batch = 0
    for _ in range(2):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(next_batch)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for _ in range(rng.randint(1, 3)):
            line = proc.stdout.readline()
            assert line.startswith("ACK"), f"the writer stopped: {line!r}"
            acked.add(int(line.split()[1]))
        # one process per folder: this one is refused while the writer holds it
        with pytest.raises(IndexLockedError, match="one process per folder"):
            QdrantEdgeIndex(path, create=False)
        time.sleep(rng.uniform(0, 0.05))  # somewhere inside the next batch's write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        acked.update(
            int(line.split()[1]) for line in proc.stdout.read().splitlines() if line.startswith("ACK")
        )
        proc.stdout.close()
        with QdrantEdgeIndex(path, create=False) as index:  # reopens: the WAL is replayed
            stored: dict[int, int] = {}
            for record in index.records():
                stored[record.metadata["batch"]] = stored.get(record.metadata["batch"], 0) + 1
            assert acked <= set(stored), "an acknowledged batch was lost"
            assert all(n == PAGES for n in stored.values()), f"a half-written batch: {stored}"
            assert index.count() == PAGES * len(stored), "a page stored twice"
            ids = [f"b{max(stored)}-{j}" for j in (0, PAGES - 1)]
            g = torch.Generator().manual_seed(max(stored))
            expected = torch.randn(24, 16, generator=g)  # (n_vectors, dim) of page 0
            got = index.get_embeddings(ids)[0]
            assert got is not None
            torch.testing.assert_close(got, expected)
            next_batch = max(stored) + 1
