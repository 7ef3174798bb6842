"""Reads on Qdrant locations never write: a mistyped ``qdrant:///`` local path (even one
inside an embedded index's folder) is refused before Qdrant's local mode creates its files."""

from __future__ import annotations

from pathlib import Path

import pytest

import mmembed
from mmembed.cli import main
from mmembed.index import IndexNotFoundError, open_backend
from mmembed_qdrant import QdrantIndex
from mmembed_testing.backend_contract import MULTI, make_pages


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_a_read_on_a_missing_local_store_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"qdrant://{tmp_path}/typo/pages"
    for argv in (["info", "--index", uri], ["search", "x", "--index", uri, "--model", "m"]):
        assert main(argv) == 1
        assert "no Qdrant local store" in capsys.readouterr().err
    with pytest.raises(IndexNotFoundError, match="Nothing was written"):
        open_backend(uri, create=False)
    with pytest.raises(IndexNotFoundError):
        QdrantIndex.connect("pages", MULTI, path=tmp_path / "typo", readonly=True)
    assert not (tmp_path / "typo").exists()


def test_a_read_inside_an_embedded_index_names_it_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "embedded"
    with mmembed.open_index(folder, MULTI) as index:
        index.add(make_pages(2))
    before = tree(folder)
    assert main(["info", "--index", f"qdrant://{folder}/pages"]) == 1
    err = capsys.readouterr().err
    assert f"{folder} is an embedded mmembed index" in err and f"--index {folder}" in err
    assert tree(folder) == before  # no .lock, no meta.json


def test_writing_still_creates_a_local_store(tmp_path: Path) -> None:
    with open_backend(f"qdrant://{tmp_path}/store/pages", MULTI) as index:
        index.add(make_pages(2))
    with open_backend(f"qdrant://{tmp_path}/store/pages", readonly=True, create=False) as index:
        assert index.count() == 2


def test_info_on_qdrant_says_what_runs_and_local_mode_opens_quietly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import warnings

    uri = f"qdrant://{tmp_path}/store/pages"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "payload indexes have no effect" warning per open
        with open_backend(uri, MULTI) as index:
            index.add(make_pages(4))
    assert main(["info", "--index", uri, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sources"] == 3 and info["storage"] == "float32"
    assert info["first_stage"].startswith("pooled-vector prefetch of 1000 candidates")
    assert main(["info", "--index", f"{uri}?exact=true", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["first_stage"].startswith("none (exact MaxSim")


def test_another_backends_folder_without_its_scheme_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_backend(f"qdrant://{tmp_path}/store/pages", MULTI) as index:
        index.add(make_pages(1))
    assert main(["info", "--index", str(tmp_path / "store")]) == 1
    assert f"it is a Qdrant local store: open one of its collections as qdrant://{tmp_path}/store/" in (
        capsys.readouterr().err
    )
    pytest.importorskip("qdrant_edge")
    with open_backend(f"qdrant-edge://{tmp_path}/edge", MULTI) as index:
        index.add(make_pages(1))
    assert main(["info", "--index", str(tmp_path / "edge")]) == 1
    assert f"open it as qdrant-edge://{tmp_path}/edge" in capsys.readouterr().err


def test_a_read_of_a_qdrant_edge_index_leaves_mmembeds_files_and_the_pages(tmp_path: Path) -> None:
    """Pinned, not fixed: qdrant-edge 0.9 has no read-only load; every load rewrites
    ``shard/edge_config.json`` (the same settings, keys reordered, defaults filled in) and
    touches files of its mutable segments. What a read leaves as it was: mmembed's own
    ``mmembed.json`` and the pages (records and vectors)."""
    import hashlib

    pytest.importorskip("qdrant_edge")
    uri = f"qdrant-edge://{tmp_path}/edge"
    with open_backend(uri, MULTI) as index:
        index.add(make_pages(3))
    manifest = tmp_path / "edge" / "mmembed.json"

    def state() -> tuple[str, list[object], list[object]]:
        with open_backend(uri, readonly=True, create=False) as index:
            records = sorted(index.records(), key=lambda r: r.id)
            vectors = [v.tolist() for v in index.get_embeddings([r.id for r in records]) if v is not None]
        return hashlib.sha256(manifest.read_bytes()).hexdigest(), records, vectors

    assert state() == state()
