"""Exit codes and the one error type a command raises to stop with a message."""

from __future__ import annotations

from ..types import MMEmbedError

EXIT_OK = 0
EXIT_ERROR = 1
"""Any error that is not a usage error: one line on stderr names the file / page and what to do."""
EXIT_USAGE = 2
"""argparse's code for a command line it cannot read (also ``-k 0``, ``--batch-size 0``)."""
EXIT_INTERRUPTED = 130
"""Ctrl+C: every batch committed so far is kept."""


class CLIError(MMEmbedError):
    """A problem to report on one line, exit code 1."""
