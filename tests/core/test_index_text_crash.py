"""SIGKILL a writer while it commits pages with text: after reopening, every batch is there
with its text and its vectors, or neither (same protocol as test_index_crash.py, text side)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mmembed.index import LocalIndex, open_index
from mmembed.index.text import check_fts
from mmembed.types import EncoderInfo

pytestmark = pytest.mark.slow

ENC = EncoderInfo(name="crash/text", family="test", kind="multi", dim=8, similarity="maxsim")

WORKER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    import mmembed.index.local as local_mod
    from mmembed.index import LocalIndex, PageInput

    PATH, POINT, START = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def say(msg):
        os.write(1, (msg + "\\n").encode())

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def pages(batch):
        g = torch.Generator().manual_seed(batch)
        return [
            PageInput(
                embedding=torch.randn(2, 8, generator=g), source=f"b{batch}.pdf", page=j + 1,
                content_hash=f"{batch:064x}", id=f"b{batch}-{j}",
                text=None if j == 2 else f"batchword{batch} page {j} " + "filler " * 50,
            )
            for j in range(3)
        ]

    index = LocalIndex(PATH)
    index.lock_for_writing()
    armed = [False]
    if POINT == "mid_text":
        def trace(sql):
            if armed[0] and sql.startswith("INSERT OR REPLACE INTO page_texts"):
                index._conn.set_progress_handler(die, 50)  # a few VM steps into the text insert
        index._conn.set_trace_callback(trace)
    elif POINT == "before_commit":
        def trace(sql):
            if armed[0] and sql == "COMMIT":
                die()
        index._conn.set_trace_callback(trace)
    elif POINT == "after_segment_fsync":
        original = local_mod.append_rows
        def append_then_die(*a, **k):
            original(*a, **k)
            if armed[0]:
                die()
        local_mod.append_rows = append_then_die
    batch = START
    while True:
        armed[0] = POINT != "timed" and batch == START + 2
        say(f"BEGIN {batch}")
        index.add(pages(batch))
        say(f"ACK {batch}")
        batch += 1
    """
)


def _check(path: Path, acked: set[int], in_flight: int | None) -> set[int]:
    """The index holds every acknowledged batch whole, the in-flight one whole or not at
    all, texts and vectors together; returns the batches present."""
    ix = open_index(path, create=False)
    try:
        ix.lock_for_writing()  # recovery of the killed writer's leftovers
        present: set[int] = set()
        for record in ix.records():
            present.add(int(record.id.split("-")[0][1:]))
        assert acked <= present, (acked, present)
        assert present <= acked | ({in_flight} if in_flight is not None else set())
        for batch in present:
            assert ix.count({"source": f"b{batch}.pdf"}) == 3
            (hits,) = ix.search_text([f"batchword{batch}"], k=5)
            assert sorted(h.page for h in hits) == [1, 2]
            embeddings = ix.get_embeddings([f"b{batch}-0", f"b{batch}-2"])
            assert all(e is not None and e.shape == (2, 8) for e in embeddings)
        if in_flight is not None and in_flight not in present:
            assert ix.search_text([f"batchword{in_flight}"], k=5) == [[]]
        with ix._snapshots.read() as conn:
            check_fts(conn, ix.path)
            orphans = conn.execute("SELECT COUNT(*) FROM page_texts WHERE row NOT IN (SELECT row FROM pages)")
            assert orphans.fetchone()[0] == 0
        return present
    finally:
        ix.close()


@pytest.mark.parametrize("point", ["mid_text", "before_commit", "after_segment_fsync", "timed"])
def test_sigkill_during_a_text_and_vector_commit_leaves_both_or_neither(tmp_path: Path, point: str):
    path = tmp_path / "ix"
    open_index(path, ENC).close()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    acked: set[int] = set()
    start = 0
    for round_ in range(1):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), point, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        in_flight = None
        assert proc.stdout is not None and proc.stderr is not None
        seen = ""
        if point == "timed":
            deadline = time.monotonic() + 60
            while not seen.endswith(f"ACK {start}\n"):  # the first commit, then a random moment
                line = proc.stdout.readline()
                assert line and time.monotonic() < deadline, proc.stderr.read()
                seen += line
            time.sleep(random.Random(round_).uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
        out = seen + proc.stdout.read()  # (the same buffered reader: no line is lost)
        err = proc.stderr.read()
        proc.wait(timeout=120)
        assert proc.returncode == -signal.SIGKILL, err
        for line in out.splitlines():
            word, batch = line.split()
            if word == "ACK":
                acked.add(int(batch))
                in_flight = None
            else:
                in_flight = int(batch)
        present = _check(path, acked, in_flight)
        if point != "timed":
            assert in_flight is not None and in_flight not in present  # killed before its commit
        acked = present
        start = max(present | {start}) + 1
    assert LocalIndex(path).info()["pages_with_text"] == 2 * len(acked)
