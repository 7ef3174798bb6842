"""Errors of the embedded index. Every message names the index folder and says what to do."""

from __future__ import annotations

from ..types import MMEmbedError


class IndexNotFoundError(MMEmbedError, FileNotFoundError):
    """No index at the given folder (and none may be created there)."""


class IndexFormatError(MMEmbedError):
    """The folder is not an mmembed index, is damaged, or uses an unknown format version."""


class IndexLockedError(MMEmbedError):
    """Another process holds the index's writer lock."""


class IndexReadOnlyError(MMEmbedError):
    """A write was attempted on an index opened with ``readonly=True``."""


class IndexClosedError(MMEmbedError):
    """The index was used after :meth:`LocalIndex.close`."""


class IndexWriteError(MMEmbedError):
    """A batch could not be written (e.g. disk full); the index kept its previous state."""


class InvalidPageError(MMEmbedError, ValueError):
    """A page given to ``add``/``upsert`` cannot be stored (wrong shape, bad metadata, ...)."""


class DuplicatePageError(MMEmbedError):
    """``add`` was given a page id that is already stored (use ``upsert`` to replace it)."""


class FilterError(MMEmbedError, ValueError):
    """A metadata filter is malformed."""


class IndexDamagedError(IndexFormatError):
    """The index folder holds inconsistent or hostile data (a path outside the folder, sizes
    that disagree, an unreadable database); nothing was changed. Rebuild or restore it."""


class IndexOptionError(MMEmbedError, ValueError):
    """An existing index was opened with a storage option (``storage``, ``pooling``) other than
    the one it was created with; options are fixed at creation."""


class IndexStaleWarning(UserWarning):
    """A read-only index folder holds committed changes (in SQLite's write-ahead log) that
    cannot be read without write access: searches see the index as it was before them."""


def check_writable(path: object, *, closed: bool, readonly: bool, held: bool, folder_readonly: bool) -> None:
    """Raise what a write on the index at ``path`` must fail with before it takes the writer
    lock: closed, opened ``readonly``, or (lock not held yet) a folder it cannot write."""
    if closed:
        raise IndexClosedError(f"the index at {path} was closed; open it again with open_index().")
    if readonly:
        raise IndexReadOnlyError(
            f"the index at {path} was opened with readonly=True; open it without "
            "readonly to add, delete or compact pages."
        )
    if not held and folder_readonly:
        raise IndexReadOnlyError(
            f"the index folder {path} is not writable (read-only mount or missing "
            "permission), so it can only be searched; to change it, copy it to a writable "
            "folder or fix its permissions."
        )
