"""The file operations the index makes inside its folder, in one small set.

Every file the index creates, opens for writing, truncates, renames or removes goes
through these functions (segments, codes, compaction, recovery, creation, the writer lock,
the manifest and the graph). They are :mod:`.safe_files`' operations: relative to the index
folder, never following a link, refusing non-regular files and hard links (issue 30).
Reading by path (memory maps, SQLite) checks the same with :func:`check_plain` first.
"""

from __future__ import annotations

from .safe_files import (
    UnsafeIndexFileError,
    check_database_files,
    check_plain,
    check_tree,
    create_new,
    fsync_dir,
    is_dir,
    listdir,
    mkdir,
    open_file,
    opened,
    remove,
    rename,
    size,
    truncate,
    write_all,
)

__all__ = [
    "UnsafeIndexFileError",
    "check_database_files",
    "check_plain",
    "check_tree",
    "create_new",
    "fsync_dir",
    "in_segments",
    "is_dir",
    "listdir",
    "mkdir",
    "open_file",
    "opened",
    "remove",
    "rename",
    "size",
    "truncate",
    "write_all",
]


def in_segments(name: str) -> str:
    """``segments/<name>``: a segment or codes file's path relative to the index folder."""
    return f"segments/{name}"
