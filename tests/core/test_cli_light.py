"""The command line answers `--help`, `models` and `info` on an index folder without
importing torch (issue 29 item 11): building the parser, printing help and reading an index's
manifest and database load no model stack. Checked on the modules a fresh process has
imported, not on time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("torch", "transformers", "numpy", "PIL", "mmembed.index", "mmembed.encoders")


def imported_after(code: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has imported after running ``code``."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_building_the_parser_imports_no_model_stack() -> None:
    assert imported_after("from mmembed.cli import build_parser\nbuild_parser()") == []


def test_help_of_every_command_imports_no_model_stack() -> None:
    code = """
        import contextlib, io
        from mmembed.cli import COMMANDS, main
        for argv in [["--help"], *([c.__name__.rsplit(".", 1)[-1], "--help"] for c in COMMANDS)]:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                main(argv)
        """
    assert imported_after(code) == []


def test_storage_choices_are_the_codecs() -> None:
    from mmembed.cli import build_parser
    from mmembed.index import codecs
    from mmembed.types import STORAGE_NAMES

    assert tuple(codecs.CODECS) == STORAGE_NAMES
    assert sorted(c.name for c in codecs._ALL) == sorted(STORAGE_NAMES)
    index = build_parser().parse_args(["index", "f.pdf", "--index", "i", "--storage", "int8"])
    assert index.storage == "int8"


def test_models_answers_from_its_listing_without_the_model_stack() -> None:
    code = """
        import contextlib, io
        from mmembed.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["models"]) == 0
        assert "colqwen2_5" in out.getvalue()
        """
    assert imported_after(code) == []


def test_models_listing_is_the_registry() -> None:
    from mmembed.cli.models import LISTING
    from mmembed.encoders import list_models

    written = json.loads(LISTING.read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(list_models(), default=str)), (
        f"{LISTING.name} is out of date: run `.venv/bin/python tools/model_listing.py`"
    )


def test_info_on_an_index_folder_imports_no_torch(tmp_path: Path) -> None:
    from mmembed.index import open_index
    from mmembed_testing.backend_contract import MULTI, make_pages

    folder = tmp_path / "idx"
    with open_index(folder, MULTI, storage="int8") as index:
        index.add(make_pages(5))
        expected = index.info()
    code = f"""
        import contextlib, io, json
        from mmembed.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["info", "--index", {str(folder)!r}, "--json"]) == 0
        summary = json.loads(out.getvalue())
        assert summary["pages"] == {expected["pages"]} and summary["storage"] == "int8", summary
        assert summary["bytes_per_page"] == {expected["bytes_per_page"]}, summary
        assert summary["model"] == {MULTI.name!r}, summary
        """
    # numpy may load (the codecs' row sizes); torch, transformers, PIL and the encoders must not.
    assert set(imported_after(code)) & {"torch", "transformers", "PIL", "mmembed.encoders"} == set()
