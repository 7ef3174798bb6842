"""Exit codes and the one error type a command raises to stop with a message."""

from __future__ import annotations

from ..types import MMEmbedError

EXIT_OK = 0
EXIT_ERROR = 1
"""Any error that is not a usage error: one line on stderr names the file / page and what to do."""
EXIT_USAGE = 2
"""A command line that cannot mean anything: argparse's own errors, ``-k 0``, ``--batch-size 0``,
an empty query, a ``--where`` that is not a JSON object filter, options that do not go together
(:class:`UsageError`). Everything else (files, indexes, models) is :data:`EXIT_ERROR`."""
EXIT_INTERRUPTED = 130
"""Ctrl+C: every batch committed so far is kept."""


class CLIError(MMEmbedError):
    """A problem to report on one line, exit code 1."""


class UsageError(CLIError):
    """The command line itself is wrong (a value no command could take, options that do not go
    together): reported like argparse's errors, exit code 2."""
