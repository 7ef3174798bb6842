"""Silent damage an index folder can carry is caught (issue 30): int8 scales no writer stores,
a read-only folder's unreadable WAL, an older index's segment sizes. Random vectors, no model."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from mmembed.index import open_index
from mmembed.index.codecs import codec
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
    with open_index(ix, readonly=True) as index:
        with pytest.warns(IndexDamageWarning, match=repr(pid)):
            hits = index.search(query(), k=12)[0]
    assert hits[-1].id == pid and len(hits) == 12


def test_int8_storage_bounds_what_it_takes() -> None:
    int8 = codec("int8")
    with pytest.raises(ValueError, match="int8 storage range"):
        int8.encode(np.full((1, DIM), 1e7, dtype=np.float32))
    tiny = int8.encode(np.full((1, DIM), 1e-35, dtype=np.float32))  # a token of (practically) zeros
    assert (int8.rows(torch.from_numpy(tiny))[:] == 0).all()
