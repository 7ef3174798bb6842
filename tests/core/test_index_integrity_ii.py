"""Silent damage an index folder can carry is caught (issue 30): int8 scales no writer stores,
a read-only folder's unreadable WAL, an older index's segment sizes. Random vectors, no model."""

from __future__ import annotations

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
from mmembed.index import open_index
from mmembed.index.codecs import codec
from mmembed.index.errors import IndexDamagedError
from mmembed.index.integrity import IndexDamageWarning
from mmembed_testing.backend_contract import DIM, MULTI, make_pages


def query() -> list[torch.Tensor]:
    return [torch.randn(3, DIM, generator=torch.Generator().manual_seed(7))]  # one query of (tokens, dim)


# ---------------------------------------------------------------- item 10: int8 scale bounds


@pytest.mark.parametrize("scale", [0.0, 1e30, -0.05, 1e-38])
def test_an_int8_scale_no_writer_stores_ranks_the_page_last(tmp_path: Path, scale: float) -> None:
    ix = tmp_path / "ix"
    with open_index(ix, MULTI, storage="int8") as index:
        index.add(make_pages(12))
    conn = sqlite3.connect(ix / "index.sqlite")
    pid, off, n = conn.execute("SELECT id, vec_offset, n_vectors FROM pages ORDER BY row LIMIT 1").fetchone()
    conn.close()
    (seg,) = (ix / "segments").iterdir()
    raw = np.fromfile(seg, dtype=np.uint8).reshape(-1, DIM + 4)  # (rows, dim + scale)
    raw[off : off + n, DIM:] = np.array([scale], dtype="<f4").view(np.uint8)
    raw.tofile(seg)
    with open_index(ix, readonly=True) as index, pytest.warns(IndexDamageWarning, match=repr(pid)):
        hits = index.search(query(), k=12)[0]
    assert hits[-1].id == pid and len(hits) == 12


def test_int8_storage_bounds_what_it_takes() -> None:
    int8 = codec("int8")
    with pytest.raises(ValueError, match="int8 storage range"):
        int8.encode(np.full((1, DIM), 1e7, dtype=np.float32))
    tiny = int8.encode(np.full((1, DIM), 1e-35, dtype=np.float32))  # a token of (practically) zeros
    assert (int8.rows(torch.from_numpy(tiny))[:] == 0).all()


# ---------------------------------------------------------------- item 6: read-only WAL without -shm

_STALE_SCRIPT = """
import sys, warnings
from mmembed.cli import main
from mmembed.index import open_index
from mmembed.index.errors import IndexDamagedError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with open_index(sys.argv[1], readonly=True) as ix:
        print(ix.count())
print(" | ".join(f"{w.category.__name__}: {w.message}" for w in caught))
"""


def _read_only_run(folder: Path, script: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", textwrap.dedent(script), str(folder)]
    if os.geteuid() == 0:  # root ignores permissions: a read-only bind mount
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: cannot make a read-only folder")
        command = [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --bind -o ro "$0" "$0" && exec "$@"',
            str(folder),
            *command,
        ]
    else:
        for path in [folder, *folder.rglob("*")]:
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
    try:
        done = subprocess.run(["timeout", "60", *command], capture_output=True, text=True, check=False)
    finally:
        for path in [folder, *folder.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    if "mount" in done.stderr and done.returncode != 0 and not done.stdout:
        pytest.skip(f"cannot bind-mount read-only here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return done


def test_a_read_only_folder_with_unreadable_wal_frames_warns(tmp_path: Path) -> None:
    ix, copy = tmp_path / "ix", tmp_path / "copy"
    with open_index(ix, MULTI) as index:
        index.add(make_pages(21))
        index._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        index.add(make_pages(5, start=21))  # committed, still in the WAL while the writer is open
        shutil.copytree(ix, copy, ignore=shutil.ignore_patterns("*-shm", "lock"))
    assert (copy / "index.sqlite-wal").stat().st_size > 32
    lines = _read_only_run(copy, _STALE_SCRIPT).stdout.splitlines()
    assert lines[0] == "21"  # what an immutable open can see ...
    assert "IndexStaleWarning" in lines[1] and "index.sqlite-wal" in lines[1]  # ... and it says so
    (copy / "index.sqlite-wal").unlink()  # a clean folder: no warning
    lines = _read_only_run(copy, _STALE_SCRIPT).stdout.splitlines()
    assert lines == ["21", ""] or lines == ["21"]


# ---------------------------------------------------------------- item 5: indexes older than the recorded shape


def _legacy(folder: Path) -> None:
    """Make ``folder`` look like an index written before SQLite recorded dim/dtype/kind."""
    conn = sqlite3.connect(folder / "index.sqlite")
    conn.execute("DELETE FROM meta WHERE key IN ('dim', 'dtype', 'kind')")
    conn.commit()
    conn.close()


def _edit_dim(folder: Path, dim: int) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["encoder"]["dim"] = dim
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_an_older_index_with_a_halved_dim_is_neither_cut_nor_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = tmp_path / "ix"
    with open_index(ix, MULTI) as index:
        index.add(make_pages(9))
    _legacy(ix)
    _edit_dim(ix, DIM // 2)
    (seg,) = (ix / "segments").iterdir()
    before = seg.read_bytes()
    assert main(["delete", "--index", str(ix), "--id", "nope"]) == 1
    err = capsys.readouterr().err
    assert (
        "times the" in err and "manifest's dim or dtype is probably wrong" in err and "Traceback" not in err
    )
    assert seg.read_bytes() == before
    with pytest.raises(IndexDamagedError, match="probably wrong"):
        open_index(ix, readonly=True)
    conn = sqlite3.connect(ix / "index.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM meta WHERE key = 'dim'").fetchone()[0] == 0  # nothing recorded
    conn.close()


def test_an_older_index_still_cuts_an_interrupted_batch(tmp_path: Path) -> None:
    ix = tmp_path / "ix"
    with open_index(ix, MULTI) as index:
        index.add(make_pages(9))
    _legacy(ix)
    (seg,) = (ix / "segments").iterdir()
    size = seg.stat().st_size
    with open(seg, "ab") as fh:
        fh.write(b"\1" * (DIM * 2 * 3 + 5))  # a killed writer's partial batch
    with open_index(ix, MULTI) as index:
        assert index.count() == 9
        index.delete(ids=["nope"])
    assert seg.stat().st_size == size
