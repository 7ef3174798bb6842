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
