"""What goes wrong while loading, said so that a person can act on it."""

from __future__ import annotations

from dataclasses import dataclass

from ..types import MMEmbedError


@dataclass(frozen=True)
class LoadIssue:
    """One file or page that could not be loaded, and what to do about it.

    ``str(issue)`` is a one-line message naming the file (and page) and the fix.
    """

    source: str
    """The file (absolute path or the name it was given under) or folder concerned."""
    page: int | None
    """1-based page number when only one page is affected, else ``None``."""
    reason: str
    """What is wrong, e.g. ``"is encrypted and no password was given"``."""
    hint: str
    """What to do about it."""
    code: str = "error"
    """Short machine-readable kind, e.g. ``"encrypted"``, ``"corrupt_pdf"``, ``"unsupported"``."""

    def __str__(self) -> str:
        where = self.source if self.page is None else f"{self.source}, page {self.page}"
        reason = self.reason.rstrip(". ")
        return f"{where}: {reason}. {self.hint}".rstrip()


NOTE_CODES = frozenset({"duplicate", "video_without_audio"})
"""Issue codes that lose nothing (the content is loaded anyway): ``strict`` does not raise on them."""


class LoadError(MMEmbedError):
    """A document or page could not be loaded (raised in strict mode and by ``render_page``)."""

    def __init__(self, issue: LoadIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


def issue_error(source: str, reason: str, hint: str, *, code: str, page: int | None = None) -> LoadError:
    """Shorthand for a :class:`LoadError` carrying a new :class:`LoadIssue`."""
    return LoadError(LoadIssue(source=source, page=page, reason=reason, hint=hint, code=code))


def unreadable_error(source: str, exc: OSError) -> LoadError:
    """The error for a file the OS refuses to read (missing, a directory, an I/O error)."""
    return issue_error(
        source,
        f"cannot be read ({exc.strerror or exc})",
        "Check that the file exists and is readable",
        code="unreadable",
    )
