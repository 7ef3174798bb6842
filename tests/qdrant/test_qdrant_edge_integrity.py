"""A crafted qdrant-edge folder never makes mmembed touch a file outside it (issue 30): a link
at the lock, in the shard or at the shard itself is refused before the engine opens it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("qdrant_edge")

from mmembed.cli import main
from mmembed.index import IndexDamagedError
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


def test_lost_segment_data_is_an_error_not_fewer_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, old = tmp_path / "edge", tmp_path / "old-shard"
    with QdrantEdgeIndex(path, MULTI) as index:
        index.add(make_pages(5))
    shutil.copytree(path / "shard", old)
    with QdrantEdgeIndex(path, MULTI) as index:
        index.add(make_pages(16, start=5))
    shutil.rmtree(path / "shard")  # the segments of 16 pages lost: an older shard put back
    shutil.copytree(old, path / "shard")
    assert main(["info", "--index", f"qdrant-edge://{path}"]) == 1
    err = capsys.readouterr().err
    assert "damaged: the shard holds 5 pages but mmembed committed 21" in err and "Traceback" not in err
    with pytest.raises(IndexDamagedError, match="committed 21"):
        QdrantEdgeIndex(path, MULTI, readonly=True)


@pytest.mark.parametrize(("key", "value"), [("dim", 32), ("kind", "single")])
def test_an_edited_manifest_is_refused_before_any_write(
    edge: Path, key: str, value: object, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((edge / "mmembed.json").read_text())
    manifest["encoder"][key] = value
    (edge / "mmembed.json").write_text(json.dumps(manifest))
    before = {p: p.read_bytes() for p in (edge / "shard").rglob("*") if p.is_file()}
    assert main(["delete", "--index", f"qdrant-edge://{edge}", "--source", "doc0.pdf"]) == 1
    err = capsys.readouterr().err
    assert "damaged: mmembed.json describes" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in (edge / "shard").rglob("*") if p.is_file()} == before


def test_a_read_only_folder_can_be_inspected(edge: Path) -> None:
    """The engine rewrites files of a shard it loads: a read-only folder is searched through a
    private copy instead of failing, and is never written."""
    script = [
        sys.executable,
        "-c",
        "import sys; from mmembed.cli import main; sys.exit(main(['info', '--index', 'qdrant-edge://' + sys.argv[1]]))",
        str(edge),
    ]
    if os.geteuid() == 0:  # root ignores permissions: a read-only bind mount
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: cannot make a read-only folder")
        command = [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --bind -o ro "$0" "$0" && exec "$@"',
            str(edge),
            *script,
        ]
    else:
        command = script
        for path in [edge, *edge.rglob("*")]:
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
    before = {p: p.read_bytes() for p in edge.rglob("*") if p.is_file()}
    try:
        done = subprocess.run(["timeout", "120", *command], capture_output=True, text=True, check=False)
    finally:
        for path in [edge, *edge.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    if "mount" in done.stderr and done.returncode != 0 and not done.stdout:
        pytest.skip(f"cannot bind-mount read-only here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert "pages: 5" in done.stdout or '"pages": 5' in done.stdout, done.stdout
    assert {p: p.read_bytes() for p in edge.rglob("*") if p.is_file()} == before
