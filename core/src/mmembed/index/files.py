"""The file operations the index makes inside its folder, in one small set.

Every file the index creates, opens for writing, truncates, renames or removes goes
through these functions (segments, codes, compaction, recovery, creation, the writer lock,
the manifest and the graph), so how the index touches its folder can be changed, checked
or hardened in one place. Reading (memory maps, SQLite) does not go through here.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o644


def open_for_writing(path: Path, *, create: bool = False) -> int:
    """A read-write descriptor on ``path`` (created empty when missing and ``create``)."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    return os.open(path, flags, FILE_MODE)


def create_empty(path: Path) -> int:
    """A read-write descriptor on ``path``, created or emptied."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, FILE_MODE)


def truncate(path: Path, size: int) -> None:
    """Cut ``path`` to ``size`` bytes."""
    os.truncate(path, size)


def remove(path: Path, *, missing_ok: bool = False) -> None:
    """Delete the file ``path``."""
    if missing_ok:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        os.unlink(path)


def rename(source: Path, target: Path) -> None:
    """Atomically replace ``target`` with ``source`` (same folder)."""
    os.replace(source, target)


def make_dir(path: Path, *, parents: bool = False) -> None:
    """Create the folder ``path`` if missing."""
    path.mkdir(parents=parents, exist_ok=True)
