"""One writer process, readers in this process: readers see every committed batch on their
next search and never a partial one; a second writer gets IndexLockedError naming the
holder; the lock dies with its holder."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mmembed.index import IndexLockedError, PageInput, open_index
from mmembed.scoring import score
from mmembed.types import EncoderInfo

DIM = 8
ENCODER = EncoderInfo(name="conc/test", family="test", kind="multi", dim=DIM, similarity="maxsim")
N_BATCHES = 120


def batch_pages(batch: int) -> list[PageInput]:
    g = torch.Generator().manual_seed(batch)
    return [
        PageInput(
            torch.randn(1 + (batch + j) % 3, DIM, generator=g),
            f"b{batch}.pdf",
            j + 1,
            hashlib.sha256(b"%d" % batch).hexdigest(),
            {"batch": batch},
        )
        for j in range(1 + batch % 3)
    ]


def deleted_with(batch: int) -> int | None:
    """The writer deletes batch b - 3 right after adding batch b when b % 7 == 6."""
    return batch - 3 if batch % 7 == 6 and batch >= 3 else None


WRITER = textwrap.dedent(
    f"""
    import os, sys, time
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from test_index_concurrency import ENCODER, N_BATCHES, batch_pages, deleted_with
    from mmembed.index import LocalIndex

    def say(msg):
        os.write(1, (msg + "\\n").encode())

    index = LocalIndex(sys.argv[1], ENCODER, segment_bytes=2048)
    index.lock_for_writing()
    say(f"LOCKED {{os.getpid()}}")
    sys.stdin.readline()  # "go"
    for b in range(N_BATCHES):
        index.add(batch_pages(b))
        say(f"ADD {{b}}")
        if deleted_with(b) is not None:
            index.delete(where={{"batch": deleted_with(b)}})
            say(f"DEL {{deleted_with(b)}}")
        if b % 11 == 10:
            index.compact()  # readers keep going while segment files are swapped
        time.sleep(0.01)
    say("DONE")
    sys.stdin.readline()  # hold the lock until told (or killed)
    """
)


class Writer:
    """The writer process and what it has acknowledged. Its stdout is read without a
    helper thread, so :meth:`drain` sees every ack already in the pipe."""

    def __init__(self, path: Path) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.pending = b""
        self.seen: list[str] = []
        self.added: set[int] = set()
        self.deleted: set[int] = set()
        self.done = False

    def drain(self) -> None:
        """Take in every line written so far."""
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                raise AssertionError(f"the writer process died (exit code {self.proc.wait()})")
            *lines, self.pending = (self.pending + chunk).split(b"\n")
            for line in lines:
                self._note(line.decode())

    def wait_for(self, prefix: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            found = [line for line in self.seen if line.startswith(prefix)]
            if found:
                return found[0]
            select.select([self.fd], [], [], 0.5)
        raise AssertionError(f"the writer never printed {prefix!r}")

    def _note(self, line: str) -> None:
        self.seen.append(line)
        kind, _, arg = line.partition(" ")
        if kind == "ADD":
            self.added.add(int(arg))
        elif kind == "DEL":
            self.deleted.add(int(arg))
        elif kind == "DONE":
            self.done = True

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()


def test_readers_follow_a_writer_process_and_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    open_index(path, ENCODER).close()
    writer = Writer(path)
    try:
        pid = int(writer.wait_for("LOCKED").split()[1])
        other = open_index(path, ENCODER)  # no write intent: opens fine next to the writer
        with pytest.raises(IndexLockedError) as err:
            other.add(batch_pages(999))
        assert f"process {pid}" in str(err.value) and str(path) in str(err.value)
        assert "readonly=True" in str(err.value)

        reader = open_index(path, readonly=True)
        writer.send("go")
        query = torch.randn(3, DIM)
        rounds = 0
        seen_counts: list[int] = []
        deadline = time.monotonic() + 60
        while not writer.done and time.monotonic() < deadline:
            writer.drain()
            added_before, deleted_before = set(writer.added), set(writer.deleted)
            hits = (reader if rounds % 2 else other).search([query], k=10_000)[0]
            writer.drain()
            present: dict[int, set[str]] = {}
            for h in hits:
                present.setdefault(h.metadata["batch"], set()).add(h.id)
            for b, ids in present.items():  # never a partial batch, never one not yet written
                assert ids == {p.resolved_id() for p in batch_pages(b)}, f"batch {b} seen partially"
                assert b <= max(writer.added, default=-1) + 1
            for b in added_before:  # every committed batch is visible on the next search
                if b % 7 != 3:  # (batches b % 7 == 3 get deleted later)
                    assert b in present, f"acknowledged batch {b} missing from a search"
            assert not (deleted_before & set(present)), "an acknowledged delete is still visible"
            stable = [h for h in hits if h.metadata["batch"] % 7 != 3]  # (others may be deleted by now)
            if stable:
                top = stable[0]
                emb = reader.get_embeddings([top.id])[0]
                assert emb is not None
                assert top.score == pytest.approx(float(score([query], [emb], "maxsim")[0, 0]), rel=1e-5)
            filtered = reader.search([query], k=10_000, where={"batch": {"$gte": 50}})[0]
            assert all(h.metadata["batch"] >= 50 for h in filtered)
            seen_counts.append(len(hits))
            rounds += 1
        assert writer.done, "the writer did not finish in time"
        assert rounds >= 5 and len(set(seen_counts)) >= 3  # we really read while it wrote

        expected = {b for b in range(N_BATCHES)} - {
            d for b in range(N_BATCHES) if (d := deleted_with(b)) is not None
        }
        final = reader.search([query], k=10_000)[0]
        assert {h.metadata["batch"] for h in final} == expected

        # The lock dies with its holder: SIGKILL the writer, then this process can write.
        os.kill(pid, signal.SIGKILL)
        writer.proc.wait(timeout=30)
        other.add(batch_pages(999))
        assert reader.count({"batch": 999}) == len(batch_pages(999))
        other.close()
        reader.close()
    finally:
        if writer.proc.poll() is None:
            writer.proc.kill()
            writer.proc.wait()
