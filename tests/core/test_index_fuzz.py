"""Fuzz: mutate a small index's files (truncate, append, flip manifest bytes, hostile row
values, swapped manifest fields) and check that nothing outside the folder changes, the CLI
never shows a traceback, and a search gives the right results or a clear error (issue 15)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmembed.cli import main
from mmembed.index import open_index
from mmembed.types import MMEmbedError
from mmembed_testing.backend_contract import DIM, MULTI, make_pages

QUERIES = [torch.randn(4, DIM, generator=torch.Generator().manual_seed(s)) for s in range(2)]  # (tokens, dim)

HOSTILE_CELLS = {
    ("segments", "file"): ["../../victim.f16", "/tmp/x.f16", "00000001.f32", "00000009.f16", "", 7],
    ("segments", "committed_rows"): [-1, 10**9, "many"],
    ("segments", "seg_id"): [0, -3, 99],
    ("pages", "seg_id"): [0, 99, -1],
    ("pages", "vec_offset"): [-1, -100, 10**6, "x"],
    ("pages", "n_vectors"): [-2, 10**6, "x"],
    ("pages", "metadata"): ["{", "[]", "3", "null"],
    ("pages", "page"): ["one"],
    ("meta", "value"): ["x", -1],
}
MANIFEST_FIELDS = {
    "dim": [0, -1, DIM // 2, DIM * 2, "16", None, 1.5],
    "dtype": ["bfloat16", "float32", "int8", None],
    "kind": ["single", "x"],
    "similarity": ["cosine", "x"],
    "format_version": [0, 2, "1"],
}
FILES = ["manifest.json", "index.sqlite", "segments/00000001.f16"]

mutation = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(FILES), st.floats(0, 1)),
    st.tuples(st.just("append"), st.sampled_from(FILES), st.binary(min_size=1, max_size=200)),
    st.tuples(st.just("flip"), st.just("manifest.json"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(
        st.just("cell"),
        st.sampled_from(sorted(HOSTILE_CELLS)),
        st.integers(0, 5),
        st.integers(0, 20),
    ),
    st.tuples(st.just("manifest"), st.sampled_from(sorted(MANIFEST_FIELDS)), st.integers(0, 6)),
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[tuple[str, float]]]]:
    folder = tmp_path_factory.mktemp("fuzz") / "template"
    with open_index(folder, MULTI) as ix:
        ix.add(make_pages(12))
        expected = [[(h.id, h.score) for h in hits] for hits in ix.search(QUERIES, k=5)]
    return folder, expected


def mutate(ix: Path, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind in ("truncate", "append", "flip"):
        path = ix / step[1]
        data = path.read_bytes()
        if kind == "truncate":
            path.write_bytes(data[: int(len(data) * step[2])])
        elif kind == "append":
            path.write_bytes(data + step[2])
        elif data:
            at = step[2] % len(data)
            path.write_bytes(data[:at] + bytes([data[at] ^ step[3]]) + data[at + 1 :])
    elif kind == "cell":
        (table, column), pick, row = step[1], step[2], step[3]
        values = HOSTILE_CELLS[(table, column)]
        conn = sqlite3.connect(ix / "index.sqlite")
        key = "key" if table == "meta" else "rowid"  # meta is WITHOUT ROWID
        try:
            found = conn.execute(f"SELECT {key} FROM {table} LIMIT 1 OFFSET ?", (row,)).fetchone()
            if found is not None:
                value = values[pick % len(values)]
                conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (value, found[0]))
                conn.commit()
        except sqlite3.IntegrityError:
            pass  # the schema itself refuses this value
        except sqlite3.DatabaseError:
            pass  # an earlier step already broke the file
        finally:
            conn.close()
    else:
        field, pick = step[1], step[2]
        values = MANIFEST_FIELDS[field]
        try:
            data = json.loads((ix / "manifest.json").read_text())
            target = data if field in ("dtype", "format_version") else data["encoder"]
        except (ValueError, KeyError, TypeError):
            return  # an earlier step already broke the manifest
        target[field] = values[pick % len(values)]
        (ix / "manifest.json").write_text(json.dumps(data))


def outside(root: Path, ix: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file() and ix not in p.parents}


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(mutation, min_size=1, max_size=2))
def test_mutated_index_is_safe(
    steps: list[tuple[Any, ...]],
    template: tuple[Path, list[list[tuple[str, float]]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, expected = template
    root = tmp_path / "case"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "victim.f16").write_bytes(b"precious" * 64)
    ix = root / "ix"
    shutil.copytree(folder, ix)
    before = outside(root, ix)
    for step in steps:
        mutate(ix, step)

    codes = [main(["info", "--index", str(ix)]), main(["delete", "--index", str(ix), "--id", "nothing"])]
    err = capsys.readouterr().err
    assert set(codes) <= {0, 1}
    assert "Traceback" not in err
    assert all(line.startswith("error: ") for line in err.splitlines())

    try:
        with open_index(ix, create=False, readonly=True) as index:
            got = [[(h.id, h.score) for h in hits] for hits in index.search(QUERIES, k=5)]
    except MMEmbedError:
        got = None  # a clear error is fine
    if got is not None:
        assert [[i for i, _ in hits] for hits in got] == [[i for i, _ in hits] for hits in expected], steps
        torch.testing.assert_close(
            torch.tensor([[s for _, s in hits] for hits in got]),
            torch.tensor([[s for _, s in hits] for hits in expected]),
        )
    assert outside(root, ix) == before, steps


# ---------------------------------------------------------------------------- the PLAID file (issue 27)

PLAID_FILES = ["plaid/plaid.json", "plaid/DATA"]  # DATA: the file plaid.json names
PLAID_FIELDS = {"covers_row": [0, 10**9, -5], "trained_pages": [0, 10**9], "file": ["../x.bin", ".hidden", 7]}
plaid_mutation = st.one_of(
    st.tuples(st.just("truncate"), st.sampled_from(PLAID_FILES), st.floats(0, 1)),
    st.tuples(st.just("append"), st.sampled_from(PLAID_FILES), st.binary(min_size=1, max_size=200)),
    st.tuples(st.just("flip"), st.sampled_from(PLAID_FILES), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("field"), st.sampled_from(sorted(PLAID_FIELDS)), st.integers(0, 2)),
    st.tuples(st.just("offset"), st.integers(0, 10), st.integers(-512, 512)),
)


@pytest.fixture(scope="module")
def plaid_template(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[list[list[str]]]]:
    folder = tmp_path_factory.mktemp("fuzz") / "plaid"
    with open_index(folder, MULTI, first_stage="plaid") as ix:
        ix.graph_extend_pages = 1
        ix.add(make_pages(12))
        # Through the file, or (a damaged file) the exact scan.
        answers = [
            [[h.id for h in hits] for hits in ix.search(QUERIES, k=3, candidates=4)],
            [[h.id for h in hits] for hits in ix.search(QUERIES, k=3, exact=True)],
        ]
    return folder, answers


def mutate_plaid(ix: Path, step: tuple[Any, ...]) -> None:
    meta_path = ix / "plaid" / "plaid.json"
    try:
        meta = json.loads(meta_path.read_text())
        data_name = f"plaid/{meta['file']}"
    except (ValueError, KeyError, TypeError):
        meta, data_name = None, None
    kind = step[0]
    if kind in ("truncate", "append", "flip"):
        rel = data_name if step[1] == "plaid/DATA" else step[1]
        if rel is None or not (ix / rel).is_file():
            return
        mutate(ix, (kind, rel, *step[2:]))
    elif meta is not None and kind == "field":
        meta[step[1]] = PLAID_FIELDS[step[1]][step[2] % len(PLAID_FIELDS[step[1]])]
        meta_path.write_text(json.dumps(meta))
    elif meta is not None and isinstance(meta.get("layout"), dict):  # move one array elsewhere
        names = sorted(meta["layout"])
        entry = meta["layout"][names[step[1] % len(names)]]
        entry[0] = max(0, int(entry[0]) + step[2])
        meta_path.write_text(json.dumps(meta))


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(plaid_mutation, min_size=1, max_size=2))
def test_mutated_plaid_file_is_safe(
    steps: list[tuple[Any, ...]],
    plaid_template: tuple[Path, list[list[list[str]]]],
    tmp_path: Path,
) -> None:
    """A damaged PLAID file or description never reaches the kernels: searches give the
    file's answers (it still matches its checksum) or the exact scan's, with a warning."""
    folder, answers = plaid_template
    root = tmp_path / "case"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "x.bin").write_bytes(b"precious" * 64)
    ix = root / "ix"
    shutil.copytree(folder, ix)
    before = outside(root, ix)
    for step in steps:
        mutate_plaid(ix, step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IndexDamageWarning: the file is not used
        with open_index(ix, create=False, readonly=True) as index:
            got = [[h.id for h in hits] for hits in index.search(QUERIES, k=3, candidates=4)]
    assert got in answers, steps
    assert outside(root, ix) == before, steps
