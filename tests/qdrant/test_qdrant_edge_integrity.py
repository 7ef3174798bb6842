"""A crafted qdrant-edge folder never makes mmembed touch a file outside it (issue 30): a link
at the lock, in the shard or at the shard itself is refused before the engine opens it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("qdrant_edge")

from mmembed.cli import main
from mmembed.index.safe_files import UnsafeIndexFileError
from mmembed_qdrant import QdrantEdgeIndex
from mmembed_testing.backend_contract import MULTI, make_pages

VICTIM = b"precious bytes outside the index\n" * 3000


@pytest.fixture
def edge(tmp_path: Path) -> Path:
    path = tmp_path / "edge"
    with QdrantEdgeIndex(path, MULTI) as index:
        index.add(make_pages(5))
    return path


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "victim"
    path.parent.mkdir()
    path.write_bytes(VICTIM)
    return path


def test_a_symlinked_lock_is_refused_by_info(
    edge: Path, victim: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (edge / "mmembed-edge.lock").unlink(missing_ok=True)
    (edge / "mmembed-edge.lock").symlink_to(victim)
    assert main(["info", "--index", f"qdrant-edge://{edge}"]) == 1
    err = capsys.readouterr().err
    assert "mmembed-edge.lock is a symbolic link" in err and "Traceback" not in err
    assert victim.read_bytes() == VICTIM


def test_links_inside_or_at_the_shard_are_refused(edge: Path, victim: Path, tmp_path: Path) -> None:
    data = next(p for p in sorted((edge / "shard").rglob("*")) if p.is_file() and p.stat().st_size)
    saved = data.read_bytes()
    data.unlink()
    os.link(victim, data)  # a hard link: the engine would write the victim's inode
    with pytest.raises(UnsafeIndexFileError, match="hard link"):
        QdrantEdgeIndex(edge, MULTI)
    data.unlink()
    data.symlink_to(victim)
    with pytest.raises(UnsafeIndexFileError, match="symbolic link"):
        QdrantEdgeIndex(edge, MULTI)
    data.unlink()
    data.write_bytes(saved)
    (edge / "shard").rename(tmp_path / "outside" / "shard")
    (edge / "shard").symlink_to(tmp_path / "outside" / "shard")
    with pytest.raises(UnsafeIndexFileError, match="shard is a symbolic link"):
        QdrantEdgeIndex(edge, MULTI)
    assert victim.read_bytes() == VICTIM
