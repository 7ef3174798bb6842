"""Every file an index writes, truncates or deletes is reached through here, never by path.

An index folder is untrusted input (copied, unzipped, shared, mounted): a symbolic link
planted at ``lock``, ``segments/00000001.bits`` or ``ann/`` would otherwise make a writer
truncate, append to or delete a file outside the folder, and a hard link would let an
append grow another name's inode. So each operation walks from the folder's own descriptor
one component at a time with ``O_NOFOLLOW`` (``dir_fd``-relative opens), refuses any
component that is a link, and refuses to write to anything but a regular file with a
single name (``st_nlink == 1``). Reads of a file another name also points at are fine:
:func:`check_plain` is the check readers use before mapping a file by path.

The folder itself (the path the user gave) may be a link: it is the caller's choice.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from .errors import IndexDamagedError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeIndexFileError(IndexDamagedError):
    """A file or folder inside an index is a link (symbolic or hard) or not a regular file;
    mmembed refuses to write through it. Nothing was changed."""


def _unsafe(root: Path, rel: str, what: str) -> UnsafeIndexFileError:
    return UnsafeIndexFileError(
        f"the index at {root} is damaged or tampered with: {rel} {what}. mmembed never writes, "
        "truncates or deletes through links, so nothing was changed. Replace it with a plain file "
        f"(remove {root / rel} if it is not part of the index), or copy the index without links "
        "(e.g. `cp -rL`) and use the copy."
    )


def _parts(rel: str | os.PathLike[str]) -> list[str]:
    parts = list(PurePosixPath(os.fspath(rel)).parts)
    if not parts or any(p in ("", ".", "..", "/") for p in parts):
        raise ValueError(f"not a plain relative path inside an index: {os.fspath(rel)!r}")
    return parts


@contextlib.contextmanager
def _folder(root: Path, parts: list[str], rel: str) -> Iterator[int]:
    """A descriptor of ``root/parts...`` reached without following any link below ``root``."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walked: list[str] = []
        for part in parts:
            walked.append(part)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _unsafe(root, "/".join(walked), _kind(fd, part, "is not a folder")) from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _kind(dir_fd: int, name: str, default: str) -> str:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return default
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        return "is not a regular file (a device, pipe or socket)"
    return default


def _check_fd(root: Path, rel: str, fd: int, *, single_name: bool) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _unsafe(root, rel, "is not a regular file")
    if single_name and st.st_nlink > 1:
        raise _unsafe(root, rel, f"is a hard link ({st.st_nlink} names share its data)")
    return st


def open_file(
    root: Path,
    rel: str | os.PathLike[str],
    *,
    write: bool = False,
    create: bool = False,
    exclusive: bool = False,
    truncate: bool = False,
    mode: int = 0o644,
) -> int:
    """A descriptor of ``root/rel`` (read-only unless ``write``), opened without following a
    link at any component; writes need a regular file with one name. The caller closes it.
    A missing file raises :class:`FileNotFoundError` as ``os.open`` does."""
    parts = _parts(rel)
    name = "/".join(parts)
    flags = _NOFOLLOW | (os.O_RDWR if write else os.O_RDONLY)
    if create:
        flags |= os.O_CREAT | (os.O_EXCL if exclusive else 0)
    with _folder(root, parts[:-1], name) as dir_fd:
        try:
            # O_NONBLOCK: opening a planted FIFO must not hang; regular files ignore it.
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, mode, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _unsafe(root, name, "is a symbolic link") from None
            if exc.errno in (errno.ENXIO, errno.EISDIR):
                raise _unsafe(root, name, "is not a regular file") from None
            raise
    try:
        _check_fd(root, name, fd, single_name=write)
        os.set_blocking(fd, True)
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def opened(root: Path, rel: str | os.PathLike[str], **kwargs: bool | int) -> Iterator[int]:
    """:func:`open_file` as a context manager that closes the descriptor."""
    fd = open_file(root, rel, **kwargs)  # type: ignore[arg-type]
    try:
        yield fd
    finally:
        os.close(fd)


def create_new(root: Path, rel: str | os.PathLike[str], mode: int = 0o644) -> int:
    """An empty regular file at ``root/rel`` (whatever was there, link or file, is removed
    first; a folder there is refused), opened for writing."""
    remove(root, rel, missing_ok=True)
    return open_file(root, rel, write=True, create=True, exclusive=True, mode=mode)


def truncate(root: Path, rel: str | os.PathLike[str], size: int) -> None:
    """Cut (or extend) ``root/rel`` to ``size`` bytes and fsync it."""
    with opened(root, rel, write=True) as fd:
        os.ftruncate(fd, size)
        os.fsync(fd)


def size(root: Path, rel: str | os.PathLike[str]) -> int:
    """Bytes of the regular file ``root/rel`` (no link followed); FileNotFoundError if missing."""
    with opened(root, rel) as fd:
        return os.fstat(fd).st_size


def remove(root: Path, rel: str | os.PathLike[str], *, missing_ok: bool = False) -> None:
    """Unlink ``root/rel`` (a link there is removed itself, never its target); the folders
    on the way must be real folders inside ``root``."""
    parts = _parts(rel)
    with _folder(root, parts[:-1], "/".join(parts)) as dir_fd:
        try:
            os.unlink(parts[-1], dir_fd=dir_fd)
        except FileNotFoundError:
            if not missing_ok:
                raise


def rename(root: Path, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Atomically rename ``root/src`` over ``root/dst`` (both inside real folders of ``root``);
    whatever ``dst`` was (a link included) is replaced, not followed."""
    s, d = _parts(src), _parts(dst)
    with _folder(root, s[:-1], "/".join(s)) as src_fd, _folder(root, d[:-1], "/".join(d)) as dst_fd:
        os.rename(s[-1], d[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def mkdir(root: Path, rel: str | os.PathLike[str], mode: int = 0o755) -> None:
    """Create the folder ``root/rel`` if missing; an existing one must be a real folder."""
    parts = _parts(rel)
    name = "/".join(parts)
    with _folder(root, parts[:-1], name) as dir_fd, contextlib.suppress(FileExistsError):
        os.mkdir(parts[-1], mode, dir_fd=dir_fd)
    with _folder(root, parts, name):  # refuses a link or file in its place
        pass


def listdir(root: Path, rel: str | os.PathLike[str] | None = None) -> list[str]:
    """Names in ``root/rel`` (a real folder inside ``root``), or in ``root`` itself."""
    parts = _parts(rel) if rel is not None else []
    with _folder(root, parts, "/".join(parts)) as dir_fd:
        return os.listdir(dir_fd)


def is_dir(root: Path, rel: str | os.PathLike[str]) -> bool:
    """``root/rel`` exists and is a real folder (refuses a link in its place)."""
    parts = _parts(rel)
    try:
        with _folder(root, parts, "/".join(parts)):
            return True
    except FileNotFoundError:
        return False


def fsync_dir(root: Path, rel: str | os.PathLike[str] | None = None) -> None:
    """Make a create/rename/unlink inside ``root/rel`` (default: ``root``) durable."""
    parts = _parts(rel) if rel is not None else []
    with _folder(root, parts, "/".join(parts)) as dir_fd:
        os.fsync(dir_fd)


def write_all(fd: int, offset: int, data: memoryview | bytes) -> None:
    """``pwrite`` all of ``data`` at ``offset`` (loops over short writes)."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def check_plain(root: Path, rel: str | os.PathLike[str], *, single_name: bool = False) -> bool:
    """Before a file is opened by path (a memory map, a library that takes a path, SQLite):
    ``False`` when it is missing, ``True`` when it is a regular file reached through real
    folders; a link anywhere (or, with ``single_name``, a hard link) raises."""
    try:
        fd = open_file(root, rel)
    except FileNotFoundError:
        return False
    try:
        _check_fd(root, "/".join(_parts(rel)), fd, single_name=single_name)
    finally:
        os.close(fd)
    return True


def check_database_files(root: Path, database: str, *, writer: bool) -> None:
    """SQLite opens ``database`` and its ``-wal``, ``-shm`` and ``-journal`` files by path,
    following links, and writes the ``-shm`` even for a read-only connection: refuse a link
    at any of them (and a hard link at any a connection may write) before connecting."""
    check_plain(root, database, single_name=writer)
    for suffix in ("-wal", "-shm", "-journal"):
        check_plain(root, database + suffix, single_name=True)


def check_tree(root: Path, rel: str | os.PathLike[str]) -> None:
    """Refuse when anything under the folder ``root/rel`` is a link (symbolic, or a hard-linked
    file): for an engine that writes inside the folder by path (qdrant-edge's shard)."""
    parts = _parts(rel)
    with _folder(root, parts, "/".join(parts)) as top:
        _check_below(root, "/".join(parts), top)


def _check_below(root: Path, rel: str, dir_fd: int) -> None:
    for entry in os.scandir(dir_fd):
        name = f"{rel}/{entry.name}"
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise _unsafe(root, name, "is a symbolic link")
        if stat.S_ISDIR(st.st_mode):
            child = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                _check_below(root, name, child)
            finally:
                os.close(child)
        elif not stat.S_ISREG(st.st_mode):
            raise _unsafe(root, name, "is not a regular file")
        elif st.st_nlink > 1:
            raise _unsafe(root, name, f"is a hard link ({st.st_nlink} names share its data)")
