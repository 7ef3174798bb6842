"""open_index(shared=True): one LocalIndex per folder per process, shared by counted handles.

Several users of one folder in one process (an indexer, a retriever, a reranker; framework
copies of one store) write and search through one writer lock; closing one keeps the others
working; another process is still refused while this one holds the lock.
"""

from __future__ import annotations

import copy
import gc
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from mmembed.index import (
    IndexBackend,
    IndexClosedError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReadOnlyError,
    LocalIndex,
    PageInput,
    SharedIndex,
    open_index,
)
from mmembed.index.shared import shared_handles
from mmembed.types import EncoderInfo, EncoderMismatchError

DIM = 8
ENCODER = EncoderInfo(name="shared/test", family="test", kind="multi", dim=DIM, similarity="maxsim")


def pages(start: int, n: int = 2) -> list[PageInput]:
    g = torch.Generator().manual_seed(start)
    return [
        PageInput(torch.randn(2, DIM, generator=g), f"d{i}.pdf", 1, f"{i:08x}" + "0" * 56, {"i": i})
        for i in range(start, start + n)
    ]


def try_to_write_from_another_process(path: Path) -> str:
    """Outcome of a write by a fresh process: "LOCKED" or "WROTE"."""
    code = textwrap.dedent(
        f"""
        from mmembed.index import IndexLockedError, open_index
        index = open_index({str(path)!r}, shared=True)
        try:
            index.lock_for_writing()
        except IndexLockedError as exc:
            print("LOCKED", exc)
        else:
            print("WROTE")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_two_users_write_and_search_and_close_independently(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    indexer = open_index(path, ENCODER, shared=True)
    retriever = open_index(path, ENCODER, shared=True)
    assert isinstance(indexer, SharedIndex) and isinstance(indexer, IndexBackend)
    assert indexer is not retriever and shared_handles(path) == 2
    indexer.add(pages(0))
    retriever.add(pages(2))  # two unshared LocalIndex handles would hit the writer lock here
    q = [torch.randn(3, DIM)]
    assert len(retriever.search(q, k=10)[0]) == len(indexer.search(q, k=10)[0]) == 4

    indexer.close()
    indexer.close()  # idempotent: releases its reference once
    assert shared_handles(path) == 1
    with pytest.raises(IndexClosedError, match="open it again"):
        indexer.count()
    retriever.add(pages(4))  # the other user keeps the index, and its writer lock
    assert retriever.count() == 6
    assert try_to_write_from_another_process(path).startswith(f"LOCKED the index at {os.path.realpath(path)}")

    retriever.close()
    assert shared_handles(path) == 0
    assert try_to_write_from_another_process(path) == "WROTE"  # the lock went with the last handle
    with LocalIndex(path, ENCODER) as plain:  # and an unshared writer may write again
        plain.add(pages(6))
        assert plain.count() == 8


def test_readonly_handles_share_the_index_but_refuse_writes(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    with pytest.raises(IndexNotFoundError):
        open_index(path, ENCODER, readonly=True, shared=True)  # never creates
    assert not path.exists() and shared_handles(path) == 0
    reranker = open_index(path, ENCODER, shared=True, readonly=False, create=True)
    reader = open_index(path, readonly=True, shared=True)  # stored encoder
    assert reader.readonly and reader.encoder == ENCODER and shared_handles(path) == 2
    reranker.add(pages(0))
    assert reader.count() == 2
    for write in (
        lambda: reader.add(pages(5)),
        lambda: reader.delete(where={}),
        reader.compact,
        reader.lock_for_writing,
    ):
        with pytest.raises(IndexReadOnlyError, match="readonly=True"):
            write()
    reranker.close()
    assert reader.get_embeddings([pages(0)[0].resolved_id()])[0] is not None
    assert reader.info()["pages"] == 2
    reader.close()


def test_real_path_is_the_key_and_encoders_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ix"
    first = open_index(path, ENCODER, shared=True)
    (tmp_path / "link").symlink_to(path)
    monkeypatch.chdir(tmp_path)
    via_link = open_index("link", shared=True)
    relative = open_index(Path("ix"), ENCODER, shared=True)
    assert shared_handles(path) == 3
    via_link.add(pages(0))
    assert relative.count() == first.count() == 2
    other = EncoderInfo(name="other", family="test", kind="multi", dim=DIM, similarity="maxsim")
    with pytest.raises(EncoderMismatchError, match="other"):
        open_index(path, other, shared=True)
    assert shared_handles(path) == 3  # the refused open holds no reference
    for handle in (first, via_link, relative):
        handle.close()
    assert shared_handles(path) == 0


def test_dropped_and_copied_handles_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    with open_index(path, ENCODER, shared=True) as kept:
        dropped = open_index(path, shared=True)
        dropped.add(pages(0))
        del dropped
        gc.collect()
        assert shared_handles(path) == 1  # garbage-collected handles let go too
        twin = copy.deepcopy(kept)  # frameworks copy components that hold a store
        assert twin is not kept and shared_handles(path) == 2
        twin.close()
        assert kept.count() == 2 and shared_handles(path) == 1
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(kept)
    assert shared_handles(path) == 0


def test_threads_open_write_and_close_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    open_index(path, ENCODER).close()
    errors: list[BaseException] = []

    def user(n: int) -> None:
        try:
            for round_ in range(5):
                with open_index(path, ENCODER, shared=True) as index:
                    index.add(pages(1000 * n + 10 * round_, n=1))
                    assert index.search([torch.randn(2, DIM)], k=1)[0]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert shared_handles(path) == 0
    with open_index(path, readonly=True) as index:
        assert index.count() == 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_inherit_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "ix"
    with open_index(path, ENCODER, shared=True) as parent:
        parent.lock_for_writing()
        pid = os.fork()
        if pid == 0:  # child: no torch work here, only the lock
            code = 3
            try:
                child = open_index(path, shared=True)
                child.lock_for_writing()
                code = 1  # wrote through the parent's lock: wrong
            except IndexLockedError:
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        parent.add(pages(0))
        assert parent.count() == 2
