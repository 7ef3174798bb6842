"""SIGKILL a writing process at random moments (adds, upserts, deletes, compactions) and
check that the index always reopens holding exactly the batches committed before the kill.

A fork server (one Python process that imports torch once) forks a fresh writer for every
round, so dozens of kills fit in seconds. Each writer prints ``ACK <op>`` after an op has
committed; the op after the last ACK is "in flight" and may or may not be in the index,
but never partly.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmembed.index import LocalIndex, open_index, plaid
from mmembed.index.codecs import codec
from mmembed.index.first_stage import binary_codes, codes_name
from mmembed.scoring import score
from mmembed.types import EncoderInfo

pytestmark = pytest.mark.slow

DIM = 8
ENCODER = EncoderInfo(name="crash/test", family="test", kind="multi", dim=DIM, similarity="maxsim")

# Shared by the worker and the checks: the content of every batch and the op schedule.
SPEC = textwrap.dedent(
    """
    import torch
    from mmembed.index import PageInput

    DIM = 8

    def batch_pages(batch, version):
        g = torch.Generator().manual_seed(batch * 100003 + version)
        pages = []
        for j in range(1 + batch % 4):
            # Some batches hold a page without vectors (never the only page of a batch).
            n = 0 if j == 1 and batch % 3 == 0 else 1 + (batch + j) % 3
            pages.append(PageInput(
                embedding=torch.randn(n, DIM, generator=g),
                source=f"b{batch}.pdf", page=j + 1, content_hash=f"{batch:064x}",
                metadata={"batch": batch, "version": version}, id=f"b{batch}-{j}",
            ))
        return pages

    def op(i):
        r = i % 10
        if r in (6, 7):
            return ("delete", i - 4)   # r=6 by filter, r=7 by ids
        if r == 8:
            return ("upsert", i - 5)
        if r == 9:
            return ("compact", None)
        return ("add", i)
    """
)

WORKER = textwrap.dedent(
    """
    import json, os, signal, sys, traceback
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from spec import batch_pages, op
    import mmembed.index.local as local_mod
    import mmembed.index.compact as compact_mod
    import mmembed.index.first_stage as first_stage_mod
    from mmembed.index import LocalIndex
    from mmembed.types import EncoderInfo

    def say(msg):  # one write(2) per line: server and writer share the pipe
        os.write(1, (msg.replace("\\n", " | ") + "\\n").encode())

    ENC = EncoderInfo(name="crash/test", family="test", kind="multi", dim=8, similarity="maxsim")
    PATH = sys.argv[1]

    def die(point):
        say(f"CRASHPOINT {point}")
        os.kill(os.getpid(), signal.SIGKILL)

    def install(point, index):
        if point in ("mid_delete", "before_delete_commit"):
            deleting = []
            def trace(sql):
                if sql.startswith("DELETE FROM pages"):
                    deleting.append(sql)
                    if point == "mid_delete":  # die a few VM steps into the DELETE statement
                        index._conn.set_progress_handler(lambda: die(point), 20)
                elif sql == "COMMIT" and deleting:
                    die(point)
            index._conn.set_trace_callback(trace)
        elif point == "after_segment_fsync":
            original = local_mod.append_rows
            def append_then_die(*a, **k):
                original(*a, **k)
                die(point)
            local_mod.append_rows = append_then_die
        elif point == "after_codes_fsync":  # vectors and binary codes durable, not committed
            original_codes = first_stage_mod.append_rows
            def codes_then_die(*a, **k):
                original_codes(*a, **k)
                die(point)
            first_stage_mod.append_rows = codes_then_die
        elif point == "compact_before_swap":
            compact_mod._swap = lambda *a, **k: die(point)
        elif point == "compact_after_swap":
            original_swap = compact_mod._swap
            def swap_then_die(*a, **k):
                original_swap(*a, **k)
                die(point)
            compact_mod._swap = swap_then_die

    def work(cmd):
        index = LocalIndex(PATH, ENC, segment_bytes=4096)
        if index.first_stage == "plaid":  # rebuild its file after every batch: kills land in builds
            index.graph_extend_pages = 1
        index.lock_for_writing()
        install(cmd.get("crash"), index)
        say("READY")
        i, stop = cmd["start"], cmd.get("stop")
        while stop is None or i < stop:
            kind, target = op(i)
            if kind == "add":
                index.add(batch_pages(target, 0))
            elif kind == "upsert":
                index.upsert(batch_pages(target, i))
            elif kind == "delete" and i % 10 == 6:
                index.delete(where={"batch": target})
            elif kind == "delete":
                index.delete([f"b{target}-{j}" for j in range(4)])
            else:
                index.compact()
            say(f"ACK {i}")
            i += 1

    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                work(cmd)
            except BaseException:
                say("ERROR " + traceback.format_exc())
            finally:
                os._exit(1)
        say(f"PID {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"DEAD {pid} {status}")
    """
)


class ForkServer:
    def __init__(self, folder: Path, index_path: Path) -> None:
        (folder / "spec.py").write_text(SPEC)
        (folder / "worker.py").write_text(WORKER)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(
            [sys.executable, str(folder / "worker.py"), str(index_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.child: int | None = None
        self.early: list[str] = []
        """Lines the forked writer printed before the server printed its PID (a fork race)."""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("EOF")

    def _next(self, timeout: float) -> str:
        line = self.early.pop(0) if self.early else self.lines.get(timeout=timeout)
        if line.startswith("ERROR") or line == "EOF":
            raise AssertionError(f"writer failed: {line}")
        return line

    def round(
        self, start: int, *, delay: float | None = None, crash: str | None = None, stop: int | None = None
    ) -> tuple[list[int], str | None]:
        """Run a writer from op ``start``; kill it after ``delay`` s, or let it hit ``crash``,
        or let it run ops up to ``stop`` and exit. Returns the acknowledged ops and the crash
        point reached, if any."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"start": start, "crash": crash, "stop": stop}) + "\n")
        self.proc.stdin.flush()
        # The child may print READY (even ACKs) before the parent prints "PID n": keep them for later.
        early = []
        while not (line := self._next(120)).startswith("PID "):
            early.append(line)
        self.early = early + self.early
        pid = self.child = int(line.split()[1])
        assert self._next(60) == "READY"
        acks: list[int] = []
        reached = None
        deadline = time.monotonic() + (delay if delay is not None else 10.0)
        while True:
            try:
                if time.monotonic() >= deadline:
                    raise queue.Empty
                line = self._next(deadline - time.monotonic())
            except queue.Empty:
                with contextlib.suppress(ProcessLookupError):  # it may have just died by itself
                    os.kill(pid, signal.SIGKILL)
                break
            if line.startswith("ACK"):
                acks.append(int(line.split()[1]))
            elif line.startswith("CRASHPOINT"):
                reached = line.split()[1]
            elif line.startswith("DEAD"):
                self.child = None
                return acks, reached
        while not (line := self._next(30)).startswith("DEAD"):
            if line.startswith("ACK"):
                acks.append(int(line.split()[1]))
        self.child = None
        return acks, reached

    def close(self) -> None:
        if self.child is not None:  # a failed round left a writer running
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signal.SIGKILL)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


SPEC_NS: dict[str, Any] = {}
exec(SPEC, SPEC_NS)  # the same batch contents and op schedule as the worker's


def apply(state: dict[int, int], i: int) -> dict[int, int]:
    """The model: batch -> version after op ``i``."""
    kind, target = SPEC_NS["op"](i)
    new = dict(state)
    if kind == "add":
        new[target] = 0
    elif kind == "upsert":
        new[target] = i
    elif kind == "delete":
        new.pop(target, None)
    return new


def observe(path: Path, spec: dict[str, Any]) -> dict[int, int]:
    """Reopen the index and read back batch -> version, checking every batch is whole
    and holds exactly its vectors, and that search agrees with brute force."""
    with open_index(path, readonly=True) as ix:
        records = list(ix.records())
        embeddings = ix.get_embeddings([r.id for r in records])
        stored = codec(ix.storage)
        by_batch: dict[int, dict[str, Any]] = {}
        for rec, emb in zip(records, embeddings, strict=True):
            batch, version = rec.metadata["batch"], rec.metadata["version"]
            by_batch.setdefault(batch, {})[rec.id] = (version, emb)
        state: dict[int, int] = {}
        for batch, pages in by_batch.items():
            versions = {v for v, _ in pages.values()}
            assert len(versions) == 1, f"batch {batch} mixes versions {versions}: a torn upsert"
            version = versions.pop()
            expected = spec["batch_pages"](batch, version)
            assert sorted(pages) == sorted(p.id for p in expected), f"batch {batch} is incomplete"
            for p in expected:  # exactly its own vectors, bit for bit as a clean build stores them
                want = stored.rows(stored.raw(stored.encode(p.embedding.numpy())))[:]
                assert torch.equal(pages[p.id][1], want.float()), f"{p.id} differs from a clean build"
            state[batch] = version
        assert ix.count() == len(records)
        if ix.first_stage in ("binary", "hnsw"):  # both store sign-bit codes
            _check_codes(ix)
        if ix.first_stage == "plaid":  # plaid.json names a whole file, never a killed build's
            described = plaid.read_state(path)
            if described.file is not None:
                plaid.open_arrays(path, described)  # raises if missing or not what was recorded
        with_vectors = [e for e in embeddings if e is not None and e.shape[0] > 0]
        if with_vectors:
            q = with_vectors[len(with_vectors) // 2]
            hits = ix.search([q], k=3, exact=True)[0]
            best = score([q], with_vectors, "maxsim")[0].max()
            assert hits and hits[0].score == pytest.approx(float(best), rel=1e-5)
            if ix.first_stage is not None:
                # The shortlist is approximate (8-bit codes here), but what it returns is scored exactly.
                by_id = {r.id: e for r, e in zip(records, embeddings, strict=True)}
                for hit in ix.search([q], k=3)[0]:
                    own = score([q], [by_id[hit.id]], "maxsim")[0, 0]
                    assert hit.score == pytest.approx(float(own), rel=1e-5)
            assert all(h.record.n_vectors > 0 for h in hits)
    return state


def _check_codes(ix: LocalIndex) -> None:
    """Every committed row's codes on disk are the sign bits of its vectors (a file may be
    shorter: the writer's recovery completes it)."""
    seg_dir = ix.path / "segments"
    for file, rows in ix._conn.execute("SELECT file, committed_rows FROM segments").fetchall():
        stored = codec(ix.storage)  # the codes are the sign bits of the rows as the codec decodes them
        width = stored.width(DIM)
        raw = np.fromfile(seg_dir / file, dtype=stored.numpy)[: rows * width].reshape(rows, width)
        vectors = stored.rows(stored.raw(raw))[:]
        path = seg_dir / codes_name(file)
        on_disk = (
            np.fromfile(path, dtype=np.uint64).reshape(-1, 1)
            if path.exists()
            else np.zeros((0, 1), np.uint64)
        )
        covered = min(rows, on_disk.shape[0])
        assert np.array_equal(on_disk[:covered], binary_codes(vectors[:covered])), (
            f"{path} disagrees with {file}"
        )


CRASH_POINTS = [
    ("after_segment_fsync", "add"),
    ("mid_delete", "delete"),
    ("before_delete_commit", "delete"),
    ("compact_before_swap", "compact"),
    ("compact_after_swap", "compact"),
]


# int8 rows carry their scale: the same windows must keep values and scales together; the
# binary and hnsw first stages' codes must be cut and kept with the rows they code.
@pytest.mark.parametrize(
    ("storage", "first_stage", "random_rounds"),
    [
        ("float16", None, 28),
        ("int8", None, 4),
        ("float16", "binary", 6),
        ("int8", "binary", 4),
        ("float16", "hnsw", 4),  # its codes, like binary's (the graph's own kill test: test_index_hnsw)
        ("float16", "plaid", 6),  # its file rebuilt after every batch (issue 27)
    ],
)
def test_sigkill_at_random_moments_keeps_committed_batches(
    tmp_path: Path, storage: str, first_stage: str | None, random_rounds: int
) -> None:
    rng = random.Random(1234)
    path = tmp_path / "ix"
    open_index(path, ENCODER, storage=storage, first_stage=first_stage).close()
    spec = SPEC_NS
    server = ForkServer(tmp_path, path)
    state: dict[int, int] = {}
    next_op = 0
    kinds_in_flight: list[str] = []
    try:
        for _ in range(random_rounds):
            acks, _ = server.round(next_op, delay=rng.uniform(0.0, 0.25))
            assert acks == list(range(next_op, next_op + len(acks))), "acks out of order"
            for i in acks:
                state = apply(state, i)
            in_flight = next_op + len(acks)
            kinds_in_flight.append(spec["op"](in_flight)[0])
            observed = observe(path, spec)
            after = apply(state, in_flight)
            assert observed in (state, after), f"op {in_flight} left the index in neither state"
            state = observed
            next_op = in_flight + 1

        # Deterministic windows: vectors durable but not committed; inside a delete; compaction
        # either side of its swap.
        extra = [("after_codes_fsync", "add")] if first_stage in ("binary", "hnsw") else []
        for crash, wanted in CRASH_POINTS + extra:
            while True:  # run ops up to one of the wanted kind that has something to do
                target = next(i for i in range(next_op, next_op + 20) if spec["op"](i)[0] == wanted)
                if target > next_op:
                    acks, _ = server.round(next_op, stop=target)
                    assert acks == list(range(next_op, target))
                    for i in acks:
                        state = apply(state, i)
                    next_op = target
                assert observe(path, spec) == state
                if apply(state, next_op) != state or (wanted == "compact" and _reclaimable(path)):
                    break
                acks, _ = server.round(next_op, stop=next_op + 1)
                assert acks == [next_op]
                state = apply(state, next_op)
                next_op += 1
            acks, reached = server.round(next_op, crash=crash)
            assert reached == crash and acks == [], f"writer did not reach {crash}"
            assert observe(path, spec) == state, f"crash at {crash} changed the content"
            if wanted != "delete":
                _check_repair(path, crash, codec(storage).row_bytes(DIM))
            assert observe(path, spec) == state
            if crash == "compact_after_swap":
                next_op += 1  # that compaction committed; the others are simply run again
    finally:
        server.close()
    print("random kills landed during:", {k: kinds_in_flight.count(k) for k in sorted(set(kinds_in_flight))})
    if random_rounds >= 20:  # the short variants rely on the deterministic windows above
        assert "add" in kinds_in_flight


def _check_repair(path: Path, crash: str, row_bytes: int) -> None:
    """The killed writer left debris; the next writer's lock_for_writing removes it."""
    seg_dir = path / "segments"
    with LocalIndex(path, ENCODER) as ix:
        committed = dict(ix._conn.execute("SELECT file, committed_rows FROM segments").fetchall())
        on_disk = {f.name: f.stat().st_size for f in seg_dir.iterdir()}
        assert set(on_disk) >= set(committed)
        if crash in ("after_segment_fsync", "after_codes_fsync"):  # an uncommitted tail, or segment
            assert set(on_disk) > set(committed) or any(
                on_disk[f] > r * row_bytes for f, r in committed.items()
            )
        else:  # new segments (before the swap) or old ones (after it) are unreferenced
            assert set(on_disk) > set(committed)
        ix.lock_for_writing()
        expected = {f: r * row_bytes for f, r in committed.items()}
        if ix.first_stage in ("binary", "hnsw"):  # codes: one uint64 word per row at DIM=8, cut/completed too
            expected |= {codes_name(f): r * 8 for f, r in committed.items()}
        assert {f.name: f.stat().st_size for f in seg_dir.iterdir()} == expected
        if ix.first_stage == "plaid" and (path / "plaid").is_dir():  # a killed build's file is gone
            named = {"plaid.json", plaid.read_state(path).file}
            assert {f.name for f in (path / "plaid").iterdir()} <= named


def _reclaimable(path: Path) -> bool:
    with open_index(path, readonly=True) as ix:
        return int(ix.info()["reclaimable_vectors"]) > 0
