"""What the caller gave → a flat stream of files: paths, folders (walked), bytes, streams.

Folder walks follow symlinks but never loop: a symlink back to one of its own parent
folders is reported (``symlink_loop``) and not followed. They never enter the kernel's
virtual file systems (``/proc``, ``/sys``, ``/dev``, ...: ``system_folder``), and an entry
that vanishes while the walk runs is reported, not fatal.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .errors import LoadIssue
from .media import MEDIA_EXTENSIONS
from .office import OFFICE_EXTENSIONS
from .options import LoaderOptions

PDF_EXTENSIONS = frozenset({".pdf"})
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff"}
)
SUPPORTED = (
    "PDF, PNG, JPEG, WebP, BMP, GIF, TIFF, Office documents (through LibreOffice), and audio / video "
    "(WAV, FLAC, MP3, Ogg, M4A, MP4, WebM, MKV, MOV; with load_documents)"
)
HEAD_BYTES = 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BytesSource:
    """In-memory file content with the name (used for its type and as ``Page.source``)."""

    name: str
    data: bytes


@dataclass(frozen=True)
class SourceItem:
    """One file to load, on disk (``path``) or in memory (``data``)."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    @property
    def extension(self) -> str:
        return Path(self.name).suffix.lower()


@dataclass(frozen=True)
class FileDigest:
    content_hash: str
    head: bytes
    size: int


def kind_of(extension: str, head: bytes = b"") -> str | None:
    """``"pdf"``, ``"image"``, ``"office"`` or ``"media"`` by extension, else by magic bytes (or ``None``)."""
    if extension in PDF_EXTENSIONS:
        return "pdf"
    if extension in IMAGE_EXTENSIONS:
        return "image"
    if extension in OFFICE_EXTENSIONS:
        return "office"
    if extension in MEDIA_EXTENSIONS:
        return "media"
    return sniff_kind(head)


def sniff_kind(head: bytes) -> str | None:
    if b"%PDF-" in head[:HEAD_BYTES]:
        return "pdf"
    magics = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
    if head.startswith(magics) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if _is_media(head):
        return "media"
    return None


def _is_media(head: bytes) -> bool:
    """WAV / AVI (RIFF), FLAC, Ogg, MP3 (ID3 tag or frame sync), MP4 / MOV / M4A (ftyp), Matroska / WebM (EBML)."""
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"AVI "):
        return True
    if head.startswith((b"fLaC", b"OggS", b"ID3", b"\x1a\x45\xdf\xa3")) or head[4:8] == b"ftyp":
        return True
    return len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def read_head(item: SourceItem) -> bytes:
    if item.data is not None:
        return item.data[:HEAD_BYTES]
    assert item.path is not None
    with open(item.path, "rb") as file:
        return file.read(HEAD_BYTES)


def digest(item: SourceItem) -> FileDigest:
    """sha256 of the file's bytes in one streaming pass (raises ``OSError`` if unreadable)."""
    if item.data is not None:
        return FileDigest(hashlib.sha256(item.data).hexdigest(), item.data[:HEAD_BYTES], len(item.data))
    assert item.path is not None
    hasher = hashlib.sha256()
    head, size = b"", 0
    with open(item.path, "rb") as file:
        while chunk := file.read(_CHUNK):
            if not head:
                head = chunk[:HEAD_BYTES]
            hasher.update(chunk)
            size += len(chunk)
    return FileDigest(hasher.hexdigest(), head, size)


def iter_sources(sources: Any, options: LoaderOptions) -> Iterator[SourceItem | LoadIssue]:
    """Flatten ``sources`` lazily into files to load, and issues for what cannot be."""
    yield from _expand(sources, options, itertools.count(1))


def _expand(obj: Any, options: LoaderOptions, counter: Iterator[int]) -> Iterator[SourceItem | LoadIssue]:
    if isinstance(obj, (str, os.PathLike)):
        yield from _from_path(Path(os.fspath(obj)), options)
    elif isinstance(obj, BytesSource):
        yield SourceItem(obj.name, data=bytes(obj.data))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        yield SourceItem(f"<bytes #{next(counter)}>", data=bytes(obj))
    elif (
        isinstance(obj, tuple)
        and len(obj) == 2
        and isinstance(obj[0], (str, os.PathLike))
        and isinstance(obj[1], (bytes, bytearray, memoryview))
    ):
        yield SourceItem(os.fspath(obj[0]), data=bytes(obj[1]))
    elif hasattr(obj, "read"):
        yield _from_stream(obj, counter)
    elif isinstance(obj, Iterable):
        for element in obj:
            yield from _expand(element, options, counter)
    else:
        raise TypeError(
            f"cannot load pages from a {type(obj).__name__}; give a path, a folder, bytes, "
            "(name, bytes), a binary file-like object, or an iterable of those"
        )


def _from_stream(stream: Any, counter: Iterator[int]) -> SourceItem | LoadIssue:
    raw_name = getattr(stream, "name", None)
    name = os.fspath(raw_name) if isinstance(raw_name, (str, os.PathLike)) else f"<stream #{next(counter)}>"
    try:
        data = stream.read()
    except OSError as exc:
        return LoadIssue(name, None, f"cannot be read ({exc})", "Check the stream is open", code="unreadable")
    if isinstance(data, str):
        raise TypeError(f"{name}: the file-like object returned text; open it in binary mode ('rb')")
    return SourceItem(name, data=bytes(data))


def _from_path(path: Path, options: LoaderOptions) -> Iterator[SourceItem | LoadIssue]:
    path = Path(os.path.abspath(path))
    name = str(path)
    try:
        is_dir = path.is_dir()
        path.stat()
    except OSError as exc:
        yield _stat_issue(path, exc)
        return
    if is_dir:
        yield from walk_folder(path, options)
    elif path.is_file():
        yield SourceItem(name, path=path)
    else:
        yield LoadIssue(name, None, "is not a regular file", "Give a file or a folder", code="not_a_file")


def _stat_issue(path: Path, exc: OSError) -> LoadIssue:
    name = str(path)
    if exc.errno == errno.ELOOP:
        return LoadIssue(
            name,
            None,
            "is a symlink loop (it resolves to itself)",
            "Fix or remove the link",
            code="symlink_loop",
        )
    if isinstance(exc, FileNotFoundError):
        if path.is_symlink():
            return LoadIssue(
                name,
                None,
                f"is a broken symlink (to {os.readlink(path)})",
                "Fix or remove the link",
                code="broken_symlink",
            )
        return LoadIssue(name, None, "does not exist", "Check the path", code="not_found")
    if isinstance(exc, PermissionError):
        return LoadIssue(
            name,
            None,
            "cannot be read (permission denied)",
            "Fix its permissions (e.g. `chmod +r`) or leave it out",
            code="unreadable",
        )
    return LoadIssue(
        name, None, f"cannot be read ({exc.strerror or exc})", "Check the path", code="unreadable"
    )


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    rel = rel.lower()
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        pattern = pattern.lower().replace(os.sep, "/")
        stripped = pattern[3:] if pattern.startswith("**/") else pattern
        if fnmatchcase(rel, pattern) or fnmatchcase(rel, stripped) or fnmatchcase(name, stripped):
            return True
    return False


# Kernel-provided trees: their "files" are process state and devices (reading some blocks forever).
_VIRTUAL_FILESYSTEMS = frozenset(
    {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "debugfs",
        "tracefs",
        "securityfs",
        "cgroup",
        "cgroup2",
        "pstore",
        "bpf",
        "configfs",
        "fusectl",
        "mqueue",
        "hugetlbfs",
        "binfmt_misc",
        "autofs",
        "efivarfs",
    }
)
_VIRTUAL_ROOTS = frozenset({"/proc", "/sys", "/dev"})


@functools.lru_cache(maxsize=1)
def virtual_mount_points() -> frozenset[str]:
    """Mount points of virtual file systems (from ``/proc/self/mounts`` where there is one)."""
    found = set(_VIRTUAL_ROOTS)
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) >= 3 and fields[2] in _VIRTUAL_FILESYSTEMS:
                    found.add(fields[1].replace("\\040", " "))
    except OSError:
        pass  # not Linux: the usual roots only
    return frozenset(found)


def walk_folder(root: Path, options: LoaderOptions) -> Iterator[SourceItem | LoadIssue]:
    """Every file under ``root`` (sorted, recursive) kept by ``include`` / ``exclude``.

    Patterns are case-insensitive globs matched against the path relative to ``root``
    (``drafts/*.pdf``) or the file name (``*.pdf``); ``exclude`` also prunes folders.
    Hidden files and folders (name starting with ``.``) are skipped unless
    ``include_hidden``. An empty result yields an ``empty_folder`` issue.
    """
    yielded = excluded = 0
    stack: list[tuple[Path, str, frozenset[str]]] = [(root, "", frozenset({os.path.realpath(root)}))]
    while stack:
        folder, prefix, ancestors = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            yield LoadIssue(
                str(folder),
                None,
                f"the folder cannot be listed ({exc.strerror or exc})",
                "Fix its permissions or leave it out",
                code="unreadable",
            )
            continue
        subfolders: list[tuple[Path, str, frozenset[str]]] = []
        for entry in entries:
            if entry.name.startswith(".") and not options.include_hidden:
                continue
            full, rel = Path(entry.path), prefix + entry.name
            try:
                is_dir = entry.is_dir()  # follows symlinks
                if entry.is_symlink():
                    os.stat(full)  # raises on a dangling link or a self-referencing loop
            except OSError as exc:
                yield _stat_issue(full, exc)
                continue
            if is_dir:
                real = os.path.realpath(full)
                if options.exclude_globs and _matches(rel, options.exclude_globs):
                    continue
                if real in virtual_mount_points():
                    yield LoadIssue(
                        str(full),
                        None,
                        f"is a system folder ({real}: kernel state and devices, not documents)",
                        "Not walked; point at a folder of documents",
                        code="system_folder",
                    )
                    continue
                if real in ancestors:
                    yield LoadIssue(
                        str(full),
                        None,
                        f"is a symlink loop: it points back to its parent folder {real}",
                        "Not followed; remove the link or exclude it",
                        code="symlink_loop",
                    )
                    continue
                subfolders.append((full, rel + "/", ancestors | {real}))
            elif _is_file(entry):
                if (options.include_globs and not _matches(rel, options.include_globs)) or (
                    options.exclude_globs and _matches(rel, options.exclude_globs)
                ):
                    excluded += 1
                    continue
                yielded += 1
                yield SourceItem(str(full), path=full)
        stack.extend(reversed(subfolders))  # depth-first, in name order
    if not yielded:
        detail = f" ({excluded} file(s) left out by include/exclude)" if excluded else ""
        yield LoadIssue(
            str(root),
            None,
            f"the folder contains no file to load{detail}",
            f"Point at a folder with {SUPPORTED}, or check include/exclude",
            code="empty_folder",
        )


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:  # vanished since the folder was listed: reported when it is read
        return True
