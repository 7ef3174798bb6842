"""docs/cli.md's reference is generated from the parser (tools/mkdocs_hooks.py): every
command and option appears, so a new command or flag reaches the site with no edit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_and_option_is_in_the_generated_page() -> None:
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "tools" / "mkdocs_hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    from mmembed.cli import COMMANDS, build_parser

    page = hooks.on_page_markdown((ROOT / "docs" / "cli.md").read_text(encoding="utf-8"))
    assert hooks.MARKER not in page
    commands = [c.__name__.rsplit(".", 1)[-1] for c in COMMANDS]
    assert all(f"### mmembed {name}\n" in page for name in commands)
    subparsers = build_parser()._subparsers
    assert subparsers is not None
    for name, parser in subparsers._group_actions[0].choices.items():  # type: ignore[attr-defined]
        for action in parser._actions:
            assert all(flag in page for flag in action.option_strings), (name, action.option_strings)
    assert "{float16,bfloat16,float32,int8}" in page
