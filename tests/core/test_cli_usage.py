"""One rule for usage errors (exit code 2, before any index or model is opened), help texts
that say which model a command uses, optional extras checked before the model loads, and
`migrate` refusing to copy an index into itself."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

import mmembed
from mmembed.cli import build_parser, main
from mmembed_testing.backend_contract import MULTI, make_pages


def usage_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    return int(stopped.value.code or 0)


@pytest.fixture
def small_index(tmp_path: Path) -> Path:
    path = tmp_path / "index"
    with mmembed.open_index(path, MULTI) as index:
        index.add(make_pages(3))
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "x", "-k", "0"], "-k must be at least 1"),
        (["search", "   "], "the query is empty"),
        (["search", "x", "--where", "[1]"], "--where must be a JSON object"),
        (["search", "x", "--where", "{nope"], "--where is not valid JSON"),
        (["search", "x", "--where", '{"page": {"$near": 1}}'], "invalid filter"),
        (["search", "x", "--filter", "page"], "is not KEY=VALUE"),
        (["search", "x", "--tokens", "1"], "add --explain DIR"),
        (["search", "x", "--option", "dim"], "is not KEY=VALUE"),
        (["eval"], "give --queries and --qrels"),
    ],
)
def test_usage_errors_exit_2_before_anything_is_opened(
    small_index: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(small_index.parent / "missing")  # usage is checked before the index is looked for
    assert usage_code([*argv, "--index", missing]) == 2
    err = capsys.readouterr().err
    assert message in err and "usage: mmembed" in err
    assert not Path(missing).exists()


def test_errors_of_the_world_still_exit_1(small_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "x", "--index", str(small_index.parent / "missing")]) == 1
    assert "no index at" in capsys.readouterr().err


def test_migrate_refuses_its_own_source(small_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    segments = sorted(p.stat().st_size for p in small_index.rglob("*") if p.is_file())
    for target in (str(small_index), f"{small_index}/", str(small_index / ".." / "index")):
        assert usage_code(["migrate", "--from", str(small_index), "--to", target]) == 2
        assert "is the index --from names" in capsys.readouterr().err
    assert sorted(p.stat().st_size for p in small_index.rglob("*") if p.is_file()) == segments
    with mmembed.open_index(small_index, create=False, readonly=True) as index:
        assert index.count() == 3
    # another folder is still a migration
    assert main(["migrate", "--from", str(small_index), "--to", str(small_index.parent / "copy")]) == 0


def test_migrate_identity_spells_each_location_one_way(tmp_path: Path) -> None:
    from mmembed.cli.migrate import index_identity

    assert index_identity("qdrant://Host:6333/pages") == index_identity("qdrants://host/pages")
    assert index_identity("qdrant://host:6333/pages") != index_identity("qdrant://host:6333/other")
    assert index_identity(f"qdrant://{tmp_path}/a/../s/pages") == index_identity(
        f"qdrant://{tmp_path}/s/pages"
    )
    assert index_identity(f"qdrant-edge://{tmp_path}/e") == index_identity(
        f"qdrant-edge://{tmp_path}/e/?exact=true"
    )
    assert index_identity(f"qdrant-edge://{tmp_path}/e") != index_identity(str(tmp_path / "e"))


@pytest.mark.parametrize("command", ["serve", "eval"])
def test_help_names_the_index_model_as_the_default(command: str) -> None:
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    model = next(a for a in sub._actions if "--model" in a.option_strings)
    assert (
        "the model the index was built with" in model.help or "the model --index was built with" in model.help
    )
    assert not model.help.startswith("checkpoint id or local folder (default: $MMEMBED_MODEL")


@pytest.mark.parametrize(
    ("command", "extra", "module"), [("serve", "serve", "fastapi"), ("eval", "eval", "ir_measures")]
)
def test_a_missing_extra_is_said_before_the_model_loads(
    small_index: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    extra: str,
    module: str,
) -> None:
    import mmembed.encoders

    real_import = builtins.__import__

    def without(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module:
            raise ImportError(f"No module named {module!r}", name=module)
        return real_import(name, *args, **kwargs)

    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was loaded before the missing extra was reported")

    monkeypatch.setattr(builtins, "__import__", without)
    monkeypatch.setattr(mmembed.encoders, "load_encoder", no_model)
    (tmp_path / "q.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq\tdoc0.pdf#1\t1\n")
    extra_args = ["--queries", str(tmp_path / "q.jsonl"), "--qrels", str(tmp_path / "qrels.tsv")]
    assert main([command, "--index", str(small_index), *(extra_args if command == "eval" else [])]) == 1
    err = capsys.readouterr().err
    assert f"pip install 'mmembed-core[{extra}]'" in err and "serving" not in err
