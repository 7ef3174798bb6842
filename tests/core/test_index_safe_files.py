"""safe_files: an index folder's links (symbolic or hard) are refused, never written through
(issue 30). Plain files, no model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmembed.index import safe_files
from mmembed.index.errors import IndexDamagedError
from mmembed.index.safe_files import UnsafeIndexFileError


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "index", tmp_path / "outside"
    (root / "segments").mkdir(parents=True)
    outside.mkdir()
    (outside / "victim").write_bytes(b"v" * 1000)
    return root, outside


def test_plain_files_are_created_written_cut_renamed_and_removed(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    with safe_files.opened(root, "segments/a", write=True, create=True) as fd:
        safe_files.write_all(fd, 0, b"hello world")
    assert safe_files.size(root, "segments/a") == 11
    safe_files.truncate(root, "segments/a", 5)
    assert (root / "segments/a").read_bytes() == b"hello"
    safe_files.rename(root, "segments/a", "segments/b")
    assert safe_files.listdir(root, "segments") == ["b"]
    safe_files.mkdir(root, "ann")
    safe_files.mkdir(root, "ann")  # already there: fine
    assert safe_files.is_dir(root, "ann") and not safe_files.is_dir(root, "nope")
    safe_files.remove(root, "segments/b")
    safe_files.remove(root, "segments/b", missing_ok=True)
    with pytest.raises(FileNotFoundError):
        safe_files.remove(root, "segments/b")
    with pytest.raises(FileNotFoundError):
        safe_files.open_file(root, "segments/missing", write=True)
    assert safe_files.check_plain(root, "segments/missing") is False


def test_a_symlinked_file_is_refused_for_every_operation(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    victim = outside / "victim"
    os.symlink(victim, root / "lock")
    for op in (
        lambda: safe_files.open_file(root, "lock", write=True, create=True),
        lambda: safe_files.open_file(root, "lock"),
        lambda: safe_files.truncate(root, "lock", 0),
        lambda: safe_files.size(root, "lock"),
        lambda: safe_files.check_plain(root, "lock"),
    ):
        with pytest.raises(UnsafeIndexFileError, match=r"lock is a symbolic link.*nothing was changed"):
            op()
    assert isinstance(UnsafeIndexFileError("x"), IndexDamagedError)
    safe_files.remove(root, "lock")  # removes the link itself
    assert victim.read_bytes() == b"v" * 1000 and not os.path.lexists(root / "lock")


def test_create_new_replaces_a_planted_link_instead_of_following_it(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    os.symlink(outside / "victim", root / "segments/00000001.f16")
    fd = safe_files.create_new(root, "segments/00000001.f16")
    os.write(fd, b"new")
    os.close(fd)
    assert (outside / "victim").read_bytes() == b"v" * 1000
    assert not (root / "segments/00000001.f16").is_symlink()


def test_a_linked_folder_on_the_way_is_refused(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    os.symlink(outside, root / "ann")
    for op in (
        lambda: safe_files.remove(root, "ann/victim"),
        lambda: safe_files.listdir(root, "ann"),
        lambda: safe_files.mkdir(root, "ann"),
        lambda: safe_files.is_dir(root, "ann"),
        lambda: safe_files.open_file(root, "ann/new", write=True, create=True),
        lambda: safe_files.rename(root, "segments", "ann/x"),
    ):
        with pytest.raises(UnsafeIndexFileError, match="ann is a symbolic link"):
            op()
    assert sorted(os.listdir(outside)) == ["victim"]


def test_hard_links_and_special_files_are_refused_for_writes(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    os.link(outside / "victim", root / "segments/00000001.f16")
    with pytest.raises(UnsafeIndexFileError, match=r"hard link \(2 names"):
        safe_files.open_file(root, "segments/00000001.f16", write=True)
    with pytest.raises(UnsafeIndexFileError, match="hard link"):
        safe_files.check_plain(root, "segments/00000001.f16", single_name=True)
    assert safe_files.check_plain(root, "segments/00000001.f16")  # reading is fine
    os.mkfifo(root / "fifo")
    with pytest.raises(UnsafeIndexFileError, match="not a regular file"):
        safe_files.open_file(root, "fifo", write=True)  # and does not hang
    (root / "dir").mkdir()
    with pytest.raises(UnsafeIndexFileError, match="not a regular file"):
        safe_files.open_file(root, "dir")
    (root / "file").write_bytes(b"")
    with pytest.raises(UnsafeIndexFileError, match="file is not a folder"):
        safe_files.open_file(root, "file/x", write=True, create=True)
    assert (outside / "victim").read_bytes() == b"v" * 1000


def test_check_tree_finds_links_anywhere_below(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    (root / "shard/a/b").mkdir(parents=True)
    (root / "shard/a/b/data").write_bytes(b"x")
    safe_files.check_tree(root, "shard")
    os.link(outside / "victim", root / "shard/a/b/hard")
    with pytest.raises(UnsafeIndexFileError, match="shard/a/b/hard is a hard link"):
        safe_files.check_tree(root, "shard")
    os.unlink(root / "shard/a/b/hard")
    os.symlink(outside, root / "shard/a/out")
    with pytest.raises(UnsafeIndexFileError, match="shard/a/out is a symbolic link"):
        safe_files.check_tree(root, "shard")


def test_paths_must_stay_relative(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    for bad in ("../outside/victim", "/etc/passwd", "segments/../../x", ""):
        with pytest.raises(ValueError, match="not a plain relative path"):
            safe_files.open_file(root, bad)
