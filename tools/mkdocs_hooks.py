"""MkDocs hook (``hooks:`` in mkdocs.yml): writes the command-line reference into docs/cli.md
from ``mmembed.cli.build_parser()`` at build time, so the page cannot drift from the parser.

The marker ``<!-- mmembed-cli-reference -->`` is replaced by one section per command: its
summary and its ``--help`` text, wrapped at a fixed width so the build is reproducible.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

MARKER = "<!-- mmembed-cli-reference -->"
WIDTH = "100"


def cli_reference() -> str:
    """Markdown for every ``mmembed`` command, in the order ``mmembed --help`` lists them."""
    from mmembed.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps help at $COLUMNS
    try:
        parser = build_parser()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        summaries = {action.dest: action.help or "" for action in commands._choices_actions}
        parts = ["```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in commands.choices.items():
            parts += [f"### mmembed {name}", "", f"{_sentence(summaries.get(name, ''))}", ""]
            parts += ["```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "." if text else ""
