"""A crafted index folder never makes a writer touch a file outside it: links planted at the
lock, a segment, its ``.bits`` codes, the ``ann/`` graph folder or SQLite's side files are
refused, never followed (issue 30, items 1-4 and 9). Random vectors, no model."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from mmembed.cli import main
from mmembed.index import ann, open_index
from mmembed.index.errors import IndexDamagedError
from mmembed.index.integrity import IndexDamageWarning
from mmembed.index.safe_files import UnsafeIndexFileError
from mmembed_testing.backend_contract import DIM, MULTI, make_pages

VICTIM = b"precious bytes outside the index\n" * 3000  # ~100 kB


def build(folder: Path, n: int = 9, **kwargs: object) -> Path:
    with open_index(folder, MULTI, **kwargs) as ix:  # type: ignore[arg-type]
        ix.add(make_pages(n))
    return folder


def victim(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "victim"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(VICTIM)
    return path


def query() -> list[torch.Tensor]:
    return [torch.randn(3, DIM, generator=torch.Generator().manual_seed(7))]  # one query of (tokens, dim)


def test_a_symlinked_lock_file_is_refused_not_truncated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = build(tmp_path / "ix")
    v = victim(tmp_path)
    (ix / "lock").unlink(missing_ok=True)
    (ix / "lock").symlink_to(v)
    assert main(["delete", "--index", str(ix), "--id", "nope"]) == 1
    err = capsys.readouterr().err
    assert "lock is a symbolic link" in err and "nothing was changed" in err and "Traceback" not in err
    assert v.read_bytes() == VICTIM
    with open_index(ix, readonly=True) as index:  # reading needs no lock
        assert index.count() == 9


def test_a_symlinked_bits_file_is_neither_read_as_codes_nor_written(tmp_path: Path) -> None:
    ix = build(tmp_path / "ix", first_stage="binary")
    v = victim(tmp_path)
    (bits,) = (ix / "segments").glob("*.bits")
    bits.unlink()
    bits.symlink_to(v)
    with (
        open_index(ix, readonly=True) as index,
        pytest.raises(UnsafeIndexFileError, match="bits is a symbolic link"),
    ):
        index.search(query(), k=3, candidates=3)
    with open_index(ix, MULTI) as index, pytest.raises(UnsafeIndexFileError, match="symbolic link"):
        index.add(make_pages(1, start=20))
    assert v.read_bytes() == VICTIM


def test_a_symlinked_ann_folder_leads_to_no_deletion(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    ix = tmp_path / "ix"
    with open_index(ix, MULTI, first_stage="hnsw") as index:
        index.add(make_pages(9))
        index.extend_graph()
    elsewhere = tmp_path / "outside" / "ann"
    elsewhere.parent.mkdir()
    shutil.move(ix / "ann", elsewhere)
    (elsewhere / "graph-000000000099.usearch").write_bytes(VICTIM)
    (ix / "ann").symlink_to(elsewhere)
    before = sorted(os.listdir(elsewhere))
    with open_index(ix, MULTI) as index, pytest.raises(UnsafeIndexFileError, match="ann is a symbolic link"):
        index.add(make_pages(1, start=20))
    assert sorted(os.listdir(elsewhere)) == before
    assert (elsewhere / "graph-000000000099.usearch").read_bytes() == VICTIM


@pytest.mark.parametrize("name", ["segments/00000001.f16", "lock", "index.sqlite"])
def test_a_hard_linked_file_is_never_written(tmp_path: Path, name: str) -> None:
    ix = build(tmp_path / "ix")
    other = tmp_path / "outside" / "other-name"
    other.parent.mkdir()
    (ix / "lock").touch()
    os.link(ix / name, other)
    before = other.read_bytes()
    with pytest.raises(UnsafeIndexFileError, match="hard link"), open_index(ix, MULTI) as index:
        index.add(make_pages(1, start=20))
    assert other.read_bytes() == before


@pytest.mark.parametrize("name", ["index.sqlite-wal", "index.sqlite-shm", "index.sqlite-journal"])
def test_sqlite_side_files_linked_outside_are_refused(tmp_path: Path, name: str) -> None:
    ix = build(tmp_path / "ix")
    v = victim(tmp_path)
    (ix / name).unlink(missing_ok=True)
    (ix / name).symlink_to(v)
    for readonly in (True, False):
        with pytest.raises(IndexDamagedError, match=f"{name} is a symbolic link"):
            open_index(ix, readonly=readonly)
    assert v.read_bytes() == VICTIM


def test_the_manifest_temp_file_is_not_written_through(tmp_path: Path) -> None:
    """Creation writes ``.manifest.json.<pid>.tmp``: a link planted there is replaced."""
    v = victim(tmp_path)
    ix = tmp_path / "ix"
    ix.mkdir()
    (ix / f".manifest.json.{os.getpid()}.tmp").symlink_to(v)
    build(ix)
    assert v.read_bytes() == VICTIM


# ---------------------------------------------------------------- item 9: a damaged HNSW graph


@pytest.mark.parametrize("damage", ["garbage", "truncated", "deleted", "swapped", "covers_row"])
def test_a_damaged_graph_warns_scans_exactly_and_the_next_write_rebuilds_it(
    tmp_path: Path, damage: str
) -> None:
    pytest.importorskip("usearch")
    ix = tmp_path / "ix"
    with open_index(ix, MULTI, first_stage="hnsw") as index:
        index.add(make_pages(30))
        index.extend_graph()
    with open_index(ix, readonly=True) as index:
        exact = [(h.id, round(h.score, 4)) for h in index.search(query(), k=5, exact=True)[0]]
    graph = ix / "ann" / ann.read_state(ix).file  # type: ignore[operator]
    if damage == "swapped":  # another index's graph (same pages, other vectors) under this name
        other = tmp_path / "other"
        with open_index(other, MULTI, first_stage="hnsw") as index:
            index.add(make_pages(30, seed=5))
            index.extend_graph()
        graph.write_bytes((other / "ann" / ann.read_state(other).file).read_bytes())  # type: ignore[operator]
    elif damage == "covers_row":  # pages the graph never held would be left to it alone
        meta = json.loads((ix / "ann" / "graph.json").read_text())
        (ix / "ann" / "graph.json").write_text(json.dumps({**meta, "covers_row": meta["covers_row"] + 100}))
    elif damage == "garbage":
        graph.write_bytes(b"not a graph" * 100)
    elif damage == "truncated":
        graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    else:
        graph.unlink()
    with open_index(ix, readonly=True) as index:
        with pytest.warns(IndexDamageWarning, match="cannot be used, so every page is scanned exactly"):
            hits = index.search(query(), k=5)[0]
        assert [(h.id, round(h.score, 4)) for h in hits] == exact
    with open_index(ix, MULTI) as index:
        index.add(make_pages(1, start=40))  # one page: below the extension threshold, still rebuilt
    state = ann.read_state(ix)
    assert state.covers_row == 31
    with open_index(ix, readonly=True) as index, warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(index.search(query(), k=5)[0]) == 5


# ---------------------------------------------------------------- item 8: side data damaged in place


@pytest.mark.parametrize("damage", ["random", "zeros", "half-flipped", "other-index"])
def test_damaged_codes_warn_fall_back_to_the_vectors_and_repair_rewrites_them(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = build(tmp_path / "ix", n=40, first_stage="binary")
    (bits,) = (ix / "segments").glob("*.bits")
    good = bits.read_bytes()
    with open_index(ix, readonly=True) as index:
        expected = [
            [(h.id, round(h.score, 4)) for h in hits] for hits in index.search(query(), k=5, candidates=8)
        ]
    if damage == "random":
        bits.write_bytes(os.urandom(len(good)))
    elif damage == "zeros":
        bits.write_bytes(bytes(len(good)))
    elif damage == "half-flipped":
        bits.write_bytes(bytes(b ^ 0xFF for b in good[: len(good) // 2]) + good[len(good) // 2 :])
    else:
        other = tmp_path / "other"
        with open_index(other, MULTI, first_stage="binary") as index:
            index.add(make_pages(40, seed=3))  # other vectors, same page ids
        (other_bits,) = (other / "segments").glob("*.bits")
        bits.write_bytes(other_bits.read_bytes()[: len(good)].ljust(len(good), b"\0"))
    with (
        open_index(ix, readonly=True) as index,
        pytest.warns(IndexDamageWarning, match="do not match the checksum"),
    ):
        got = [[(h.id, round(h.score, 4)) for h in hits] for hits in index.search(query(), k=5, candidates=8)]
    assert got == expected  # the codes were recomputed from the vectors: the same shortlist
    assert main(["index", "--repair", "--index", str(ix)]) == 0
    assert f"rewrote the codes {bits.name}" in capsys.readouterr().out
    assert bits.read_bytes() == good
    with open_index(ix, readonly=True) as index, warnings.catch_warnings():
        warnings.simplefilter("error")
        index.search(query(), k=5, candidates=8)


def test_repair_rebuilds_a_damaged_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("usearch")
    ix = tmp_path / "ix"
    with open_index(ix, MULTI, first_stage="hnsw") as index:
        index.add(make_pages(30))
        index.extend_graph()
    graph = ix / "ann" / ann.read_state(ix).file  # type: ignore[operator]
    graph.write_bytes(b"\0" * 64)
    assert main(["index", "--repair", "--index", str(ix)]) == 0
    assert "rebuilt the HNSW graph" in capsys.readouterr().out
    with open_index(ix, readonly=True) as index, warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(index.search(query(), k=5)[0]) == 5
    assert main(["index", "--repair", "--index", str(ix)]) == 0  # nothing left to do
    assert "codes match their checksums" in capsys.readouterr().out
