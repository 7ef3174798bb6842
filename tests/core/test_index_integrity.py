"""A damaged or crafted index folder never writes outside itself, never cuts committed vectors
and never returns silently wrong results (issue 15). Random vectors, no model."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mmembed.cli import main
from mmembed.index import FilterError, IndexFormatError, open_index
from mmembed.index.errors import IndexDamagedError
from mmembed.index.integrity import IndexDamageWarning
from mmembed_testing.backend_contract import DIM, MULTI, make_pages


def build(folder: Path, n: int = 6, **kwargs: object) -> Path:
    with open_index(folder, MULTI, **kwargs) as ix:  # type: ignore[arg-type]
        ix.add(make_pages(n))
    return folder


def sql(folder: Path, statement: str, params: tuple[object, ...] = ()) -> None:
    conn = sqlite3.connect(folder / "index.sqlite")
    try:
        conn.execute(statement, params)
        conn.commit()
    finally:
        conn.close()


def edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "dim":
            data["encoder"]["dim"] = value
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def segment_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "segments").iterdir())}


def query() -> list[torch.Tensor]:
    return [torch.randn(3, DIM, generator=torch.Generator().manual_seed(7))]  # one query of (tokens, dim)


# ---------------------------------------------------------------- item 1: paths from the folder


@pytest.mark.parametrize("name", ["../../victim.txt", "/tmp/abs.f16", "00000001.f16/../../victim.txt"])
def test_segment_name_outside_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    ix = build(tmp_path / "ix")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    sql(ix, "UPDATE segments SET file = ?", (name,))
    with open_index(ix, MULTI) as index, pytest.raises(IndexDamagedError, match="not a segment name"):
        index.add(make_pages(2, start=10))
    with open_index(ix, MULTI) as index, pytest.raises(IndexDamagedError, match=str(ix)):
        index.compact()
    with open_index(ix, readonly=True) as index, pytest.raises(IndexDamagedError):
        index.search(query(), k=3)
    assert victim.read_text() == "precious"


def test_segment_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    ix = build(tmp_path / "ix")
    (seg,) = (ix / "segments").iterdir()
    victim = tmp_path / "victim.bin"
    victim.write_bytes(seg.read_bytes() + b"tail-that-recovery-would-cut")
    seg.unlink()
    seg.symlink_to(victim)
    before = victim.read_bytes()
    with open_index(ix, MULTI) as index, pytest.raises(IndexDamagedError, match="link"):
        index.add(make_pages(1, start=10))
    assert victim.read_bytes() == before


def test_segments_folder_symlink_is_not_cleaned(tmp_path: Path) -> None:
    ix = build(tmp_path / "ix")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(ix / "segments", elsewhere)
    (elsewhere / "00000099.f16").write_bytes(b"not referenced, but not ours to delete")
    (ix / "segments").symlink_to(elsewhere)
    with open_index(ix, MULTI) as index, pytest.raises(IndexDamagedError):
        index.add(make_pages(1, start=10))
    assert (elsewhere / "00000099.f16").exists()


# ---------------------------------------------------------------- item 6: manifest vs SQLite vs sizes


@pytest.mark.parametrize("dim", [DIM // 2, DIM * 2])
def test_wrong_manifest_dim_never_cuts_a_segment(tmp_path: Path, dim: int) -> None:
    ix = build(tmp_path / "ix")
    before = segment_files(ix)
    edit_manifest(ix, dim=dim)
    with pytest.raises(IndexDamagedError, match=f"dim {dim}"):
        open_index(ix, create=False)
    assert main(["delete", "--index", str(ix), "--id", "nothing"]) == 1
    assert segment_files(ix) == before


@pytest.mark.parametrize("dim", [0, -4, True, "16"])
def test_invalid_manifest_dim_is_refused_on_open(tmp_path: Path, dim: object) -> None:
    ix = build(tmp_path / "ix")
    before = segment_files(ix)
    edit_manifest(ix, dim=dim)
    with pytest.raises(IndexFormatError, match="manifest"):
        open_index(ix, create=False)
    assert segment_files(ix) == before


def test_dtype_swap_is_refused(tmp_path: Path) -> None:
    ix = build(tmp_path / "ix")
    edit_manifest(ix, dtype="bfloat16")
    with pytest.raises(IndexDamagedError, match="dtype"):
        open_index(ix, create=False)
    # Even without the shape SQLite records (an index made before it did), the segment names give it away.
    sql(ix, "DELETE FROM meta WHERE key IN ('dim', 'dtype')")
    # (and an index that old has its segment sizes checked on open: refused there already)
    with pytest.raises(IndexDamagedError, match="float16 vectors"):
        open_index(ix, create=False)


def test_tail_on_an_older_segment_is_not_cut(tmp_path: Path) -> None:
    ix = tmp_path / "ix"
    with open_index(ix, MULTI) as index:
        index.segment_bytes = 1  # every batch starts a new segment
        index.add(make_pages(2))
        index.add(make_pages(2, start=2))
    first = sorted((ix / "segments").iterdir())[0]
    with open(first, "ab") as fh:
        fh.write(b"\0" * DIM * 2 * 3)
    before = segment_files(ix)
    with open_index(ix, MULTI) as index, pytest.raises(IndexDamagedError, match="only the last segment"):
        index.delete(ids=["nothing"])
    assert segment_files(ix) == before


def test_interrupted_batch_tail_is_still_cut(tmp_path: Path) -> None:
    ix = build(tmp_path / "ix")
    (seg,) = (ix / "segments").iterdir()
    size = seg.stat().st_size
    with open(seg, "ab") as fh:
        fh.write(b"\1" * (DIM * 2 * 5 + 3))  # a killed writer's partial batch
    with open_index(ix, MULTI) as index:
        index.delete(ids=["nothing"])
    assert seg.stat().st_size == size


@pytest.mark.parametrize(("column", "value"), [("vec_offset", -2), ("n_vectors", 10_000), ("seg_id", 99)])
def test_bad_locations_raise_instead_of_wrong_scores(tmp_path: Path, column: str, value: int) -> None:
    ix = build(tmp_path / "ix")
    sql(ix, f"UPDATE pages SET {column} = ? WHERE row = 3", (value,))
    with open_index(ix, readonly=True) as index:
        with pytest.raises(IndexDamagedError, match=str(ix)):
            index.search(query(), k=3)
        (pid,) = [r.id for r in index.records() if r.page == make_pages(6)[2].page and r.source == "doc2.pdf"]
        with pytest.raises(IndexDamagedError):
            index.get_embeddings([pid])
    with open_index(ix, MULTI) as index, pytest.raises(IndexDamagedError):
        index.add(make_pages(1, start=10))


# ---------------------------------------------------------------- item 5: non-finite stored vectors


def test_nan_vectors_rank_last_and_never_hide_good_pages(tmp_path: Path) -> None:
    ix = build(tmp_path / "ix", n=21)
    conn = sqlite3.connect(ix / "index.sqlite")
    poisoned = conn.execute("SELECT id, vec_offset, n_vectors FROM pages ORDER BY row LIMIT 3").fetchall()
    conn.close()
    (seg,) = (ix / "segments").iterdir()
    data = np.fromfile(seg, dtype="<f2").reshape(-1, DIM)
    for i, (_, off, n) in enumerate(poisoned):
        data[off : off + n] = [np.nan, np.inf, -np.inf][i]
    data.tofile(seg)
    bad_ids = {p[0] for p in poisoned}
    with open_index(ix, readonly=True) as index:
        with pytest.warns(IndexDamageWarning, match="NaN or infinite") as caught:
            (hits,) = index.search(query(), k=3)
        assert len(hits) == 3 and not {h.id for h in hits} & bad_ids
        assert all(repr(i) in str(caught[0].message) for i in bad_ids)
        with pytest.warns(IndexDamageWarning):
            (everything,) = index.search(query(), k=21)
    assert len(everything) == 21
    assert {h.id for h in everything[-3:]} == bad_ids


# ---------------------------------------------------------------- item 7: SQLite damage and bad rows


def test_bad_rows_raise_the_index_damage_error(tmp_path: Path) -> None:
    ix = build(tmp_path / "ix")
    sql(ix, "UPDATE pages SET metadata = '{not json' WHERE row = 2")
    with open_index(ix, readonly=True) as index:
        with pytest.raises(IndexDamagedError, match=r"not JSON|malformed"):
            list(index.records())
        with pytest.raises(IndexDamagedError, match=str(ix)):
            index.search(query(), k=6)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "drop_table"])
def test_damaged_database_is_one_line_from_the_cli(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = build(tmp_path / "ix", n=40)
    db = ix / "index.sqlite"
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 400)
    elif damage == "truncate":
        data = db.read_bytes()
        db.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))
    else:
        sql(ix, "DROP TABLE segments")
    codes = [main(["info", "--index", str(ix)]), main(["delete", "--index", str(ix), "--id", "x"])]
    _, err = capsys.readouterr()
    assert codes == [1, 1]
    assert "Traceback" not in err
    assert all(line.startswith("error: ") and str(ix) in line for line in err.strip().splitlines())


# ---------------------------------------------------------------- item 8: read-only folders

_READ_ONLY_SCRIPT = """
import sys, torch
from mmembed.index import open_index, IndexReadOnlyError
from mmembed.index.errors import IndexLockedError
from mmembed_testing.backend_contract import DIM, MULTI, make_pages
with open_index(sys.argv[1], readonly=True) as ix:
    print(len(ix.search([torch.ones(2, DIM)], k=4)[0]), ix.count())
with open_index(sys.argv[1], create=False) as ix:  # a plain reader in a read-only folder
    print(len(ix.search([torch.ones(2, DIM)], k=2)[0]))
    try:
        ix.add(make_pages(1, start=50))
    except Exception as exc:
        print(type(exc).__name__, str(exc).splitlines()[0])
"""


def test_read_only_folder_can_be_searched(tmp_path: Path) -> None:
    ix = build(tmp_path / "ix")
    script = [sys.executable, "-c", textwrap.dedent(_READ_ONLY_SCRIPT), str(ix)]
    if os.geteuid() == 0:  # root ignores permissions: search through a read-only bind mount
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: cannot make a read-only folder")
        command = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(ix), *script]
    else:
        command = script
        for path in [ix, *ix.rglob("*")]:
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
    try:
        done = subprocess.run(["timeout", "60", *command], capture_output=True, text=True, check=False)
    finally:
        for path in [ix, *ix.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    if "mount" in done.stderr and done.returncode != 0 and not done.stdout:
        pytest.skip(f"cannot bind-mount read-only here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "4 6" and lines[1] == "2"
    assert lines[2].startswith("Index") and str(ix) in lines[2], lines[2]


# ---------------------------------------------------------------- items 9, 10: filters


def test_large_and_deep_filters(tmp_path: Path) -> None:
    ix = build(tmp_path / "ix", n=30)
    with open_index(ix, readonly=True) as index:
        wide = {"$or": [{"i": i} for i in range(1500)]}
        assert index.count(wide) == 30
        assert len(index.search(query(), k=50, where=wide)[0]) == 30
        assert index.count({"$and": [{"i": {"$ne": -i}} for i in range(1, 1501)]}) == 30
        with pytest.raises(FilterError, match=r"\$in"):
            index.count({"$or": [{"i": i} for i in range(5000)]})
        deep: dict[str, object] = {"i": 1}
        for _ in range(5000):
            deep = {"$and": [deep]}
        with pytest.raises(FilterError, match="levels deep"):
            index.count(deep)


def test_backslash_metadata_keys_match(tmp_path: Path) -> None:
    page = dataclasses.replace(make_pages(1)[0], metadata={"dir\\name": "a", "x\\\\y": 2})
    with open_index(tmp_path / "ix", MULTI) as index:
        index.add([page])
        assert index.count({"dir\\name": "a"}) == 1
        assert index.count({"dir\\name": {"$exists": True}}) == 1
        assert index.count({"dir\\name": {"$ne": "a"}}) == 0
        assert index.count({"dir\\name": {"$in": ["a", "b"]}}) == 1
        assert index.count({"x\\\\y": {"$gte": 2}}) == 1
        assert index.count({"dirname": {"$exists": True}}) == 0


@pytest.mark.parametrize("where", ["null", "[1]", "[" * 100_000 + "]" * 100_000, '"x"'])
def test_cli_where_must_be_a_json_object(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = build(tmp_path / "ix")
    with pytest.raises(SystemExit) as usage:  # a usage error: exit 2, argparse's two lines
        main(["search", "q", "--index", str(ix), "--where", where])
    _, err = capsys.readouterr()
    assert usage.value.code == 2
    # argparse's usage (wrapped as the command list grows) and one error line naming --where
    assert err.startswith("usage: mmembed") and err.splitlines()[-1].startswith("mmembed: error: --where")
