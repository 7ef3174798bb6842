"""Fuzz with links: plant a symbolic or hard link at every path the folder index (HNSW first
stage: segments, sign-bit codes, graph) and a qdrant-edge folder touch, run every command,
and check that no byte outside the index folder changed and no command shows a traceback
(issue 30). The tiny ColQwen2.5 at 24 dpi: the plumbing, not the model, is under test."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from mmembed.cli import main
from mmembed.index import open_index
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.types import MMEmbedError

pytest.importorskip("usearch")

Plant = Callable[[Path, Path], None]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("links_fuzz")
    docs = root / "docs"
    for pdf in write_sample_pdfs(root / "all"):
        if pdf.name == "solar_energy_report.pdf":  # one 3-page PDF is enough
            docs.mkdir()
            shutil.move(pdf, docs / pdf.name)
    Image.new("RGB", (96, 128), "white").save(root / "new.png")
    (root / "queries.tsv").write_text("q1\tsolar capacity\nq2\tolive oil\n")
    (root / "qrels.tsv").write_text("q1 0 solar_energy_report.pdf#1 1\nq2 0 solar_energy_report.pdf#2 1\n")
    common = ["--model", str(tiny_colqwen2_5), "-q", "--dpi", "24"]
    folder = root / "folder"
    assert main(["index", str(docs), "--index", str(folder), "--first-stage", "hnsw", *common]) == 0
    with open_index(folder) as index:
        index.extend_graph()
        index.delete(where={"page": 3})  # something for a compaction to reclaim
    assert list((folder / "segments").glob("*.bits")) and list((folder / "ann").glob("graph-*"))
    edge = root / "edge"
    if _has_edge():
        assert main(["index", str(docs), "--backend", "qdrant-edge", "--index", str(edge), *common]) == 0
    return {"root": root, "folder": folder, "edge": edge, "new": root / "new.png"}


def _has_edge() -> bool:
    try:
        import qdrant_edge  # noqa: F401
    except ImportError:
        return False
    return True


def _digest(folder: Path) -> dict[str, str]:
    """Every entry below ``folder`` (links not followed) and its bytes' hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                out[rel] = "link -> " + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


# -- plants: (index folder, sentinel folder) -> put something of the sentinel at a path of the index


def symlink_file(rel: str) -> Plant:
    def plant(index: Path, sentinel: Path) -> None:
        target = _resolve(index, rel)
        victim = sentinel / f"victim-{target.name}"
        if target.exists():
            shutil.copyfile(target, victim)  # the same bytes: the index would accept them
            target.unlink()
        else:
            victim.write_bytes(b"precious\n" * 1000)
        target.symlink_to(victim)

    plant.__name__ = f"symlink:{rel}"
    return plant


def hardlink_file(rel: str) -> Plant:
    def plant(index: Path, sentinel: Path) -> None:
        target = _resolve(index, rel)
        if not target.exists():
            target.write_bytes(b"")
        os.link(target, sentinel / f"other-name-{target.name}")

    plant.__name__ = f"hardlink:{rel}"
    return plant


def symlink_dir(rel: str) -> Plant:
    def plant(index: Path, sentinel: Path) -> None:
        target = index / rel
        moved = sentinel / f"moved-{target.name}"
        shutil.move(target, moved)
        (moved / "graph-000000000999.usearch").write_bytes(b"not ours to delete")
        (moved / "00000099.f16").write_bytes(b"not ours to delete either")
        target.symlink_to(moved)

    plant.__name__ = f"symlink-dir:{rel}"
    return plant


def _resolve(index: Path, rel: str) -> Path:
    """``rel`` with a glob in its last part (``segments/*.bits``) matched in ``index``."""
    if "*" not in rel:
        return index / rel
    return sorted(index.glob(rel))[0]


FOLDER_PLANTS = [
    *(
        symlink_file(r)
        for r in (
            "lock",
            "manifest.json",
            "index.sqlite",
            "index.sqlite-wal",
            "index.sqlite-shm",
            "segments/*.f16",
            "segments/*.bits",
            "ann/graph.json",
            "ann/graph-*",
        )
    ),
    *(
        hardlink_file(r)
        for r in (
            "lock",
            "index.sqlite",
            "segments/*.f16",
            "segments/*.bits",
            "ann/graph.json",
            "ann/graph-*",
        )
    ),
    symlink_dir("segments"),
    symlink_dir("ann"),
]

EDGE_PLANTS = [
    symlink_file("mmembed-edge.lock"),
    symlink_file("mmembed.json"),
    hardlink_file("mmembed-edge.lock"),
    hardlink_file("mmembed.json"),
    symlink_dir("shard"),
]


def _commands(corpus: dict[str, Path], index: str, out: Path) -> list[Callable[[], int]]:
    """Reads, then writes (a write that succeeds leaves the next command a changed folder)."""
    root = corpus["root"]
    folder = not index.startswith("qdrant-edge://")
    reads = [
        ["search", "solar capacity", "--index", index, "-k", "3"],
        *([["search", "solar capacity", "--index", index, "-k", "3", "--candidates", "2"]] if folder else []),
        ["info", "--index", index],
        [
            "eval",
            "--index",
            index,
            "--queries",
            str(root / "queries.tsv"),
            "--qrels",
            str(root / "qrels.tsv"),
        ],
        ["migrate", "--from", index, "--to", str(out / "migrated")],
    ]
    writes = [
        ["index", str(corpus["new"]), "--index", index, "-q"],
        ["delete", "--index", index, "--id", "nope"],
        ["delete", "--index", index, "--source", str(root / "docs" / "solar_energy_report.pdf")],
    ]
    commands: list[Callable[[], int]] = [lambda argv=argv: main(argv) for argv in reads]  # type: ignore[misc]
    if folder:
        commands.append(lambda: _serve(index))
    commands += [lambda argv=argv: main(argv) for argv in writes[:2]]  # type: ignore[misc]
    if folder:
        commands.append(lambda: _compact(index))
    commands.append(lambda: main(writes[2]))
    return commands


def _compact(index: str) -> int:
    try:
        with open_index(index, create=False) as ix:
            ix.compact()
    except MMEmbedError:
        return 1
    return 0


def _serve(index: str) -> int:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmembed.serve import create_app, open_server

    try:
        server = open_server(index)
    except MMEmbedError:
        return 1
    try:
        client = TestClient(create_app(server), base_url="http://127.0.0.1:8000")
        codes = {
            client.get("/search", params={"q": "solar", "k": 2}).status_code,
            client.get("/sources").status_code,
        }
    finally:
        server.index.close()
    assert codes <= {200, 400}, codes
    return 0


def _fuzz(
    corpus: dict[str, Path],
    base: Path,
    plants: list[Plant],
    uri: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Per plant: a fresh copy of ``base``, then every command in turn (reads first, then
    writes), the sentinel folder checked after each."""
    index, sentinel, out = tmp_path / "ix", tmp_path / "sentinel", tmp_path / "out"
    for plant in plants:
        for leftover in (index, sentinel, out):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.copytree(base, index, symlinks=True)
        sentinel.mkdir()
        out.mkdir()
        plant(index, sentinel)
        before = _digest(sentinel)
        for i, command in enumerate(_commands(corpus, uri.format(path=index), out)):
            shutil.rmtree(out / "migrated", ignore_errors=True)
            code = command()
            _, err = capsys.readouterr()
            where = f"{plant.__name__}, command {i}"
            assert code in (0, 1), f"{where}: exit {code}: {err}"
            assert "Traceback" not in err, f"{where}: {err}"
            assert _digest(sentinel) == before, f"{where} changed a file outside the index: {err}"


@pytest.mark.timeout(300)
def test_links_in_a_folder_index_never_change_a_byte_outside(
    corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fuzz(corpus, corpus["folder"], FOLDER_PLANTS, "{path}", tmp_path, capsys)


@pytest.mark.timeout(300)
def test_links_in_a_qdrant_edge_folder_never_change_a_byte_outside(
    corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not _has_edge():
        pytest.skip("qdrant-edge-py is not installed")
    _fuzz(corpus, corpus["edge"], EDGE_PLANTS, "qdrant-edge://{path}", tmp_path, capsys)
