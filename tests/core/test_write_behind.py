"""Write behind (issue 28): a batch is written while the next one encodes, in order, and a
failed or interrupted run keeps exactly the batches committed before it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

import mmembed
from mmembed.encoders.base import Encoder
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.types import EncoderInfo
from mmembed.write_behind import WriteBehind

WAIT = 60.0  # seconds; only reached when the overlap is broken


class SignallingEncoder(Encoder):
    """A real encoder that says when it starts its second batch, and can fail on one."""

    def __init__(self, inner: Encoder, fail_on_batch: int | None = None) -> None:
        self.inner = inner
        self.info: EncoderInfo = inner.info
        self.device = inner.device
        self.dtype = inner.dtype
        self.batches = 0
        self.second_batch_started = threading.Event()
        self.fail_on_batch = fail_on_batch

    def encode_queries(self, queries: Sequence[str], **kw: object) -> list[torch.Tensor]:
        return self.inner.encode_queries(queries)

    def encode_images(self, images: Sequence[Image.Image], **kw: object) -> list[torch.Tensor]:
        self.batches += 1
        if self.batches == 2:
            self.second_batch_started.set()
        if self.batches == self.fail_on_batch:
            raise RuntimeError("simulated encoder failure")
        return self.inner.encode_images(images)


class WatchedIndex:
    """A real index whose ``upsert`` records, for each batch, the writing thread and whether
    the encoder had started its second batch (waiting for it on the first write)."""

    def __init__(
        self, inner: Any, encoder: SignallingEncoder, wait: bool, fail_on_write: int | None = None
    ) -> None:
        self.inner = inner
        self.encoder = inner.encoder
        self.signalling = encoder
        self.wait = wait
        self.fail_on_write = fail_on_write
        self.writes: list[tuple[str, bool, list[int]]] = []

    def upsert(self, pages: Sequence[mmembed.PageInput]) -> list[str]:
        first = not self.writes
        overlapped = (
            self.signalling.second_batch_started.wait(WAIT)
            if first and self.wait
            else self.signalling.second_batch_started.is_set()
        )
        self.writes.append((threading.current_thread().name, overlapped, [p.page for p in pages]))
        if len(self.writes) == self.fail_on_write:
            raise OSError("simulated disk failure")
        return list(self.inner.upsert(pages))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first sample PDF (several pages: batches of 2 make at least 2 batches)."""
    return sorted(write_sample_pdfs(tmp_path_factory.mktemp("docs")))[0]


def _pages(pdf: Path) -> int:
    return sum(1 for _ in mmembed.load_pages(pdf, prefetch=0))


def test_a_batch_is_written_while_the_next_one_encodes(
    tmp_path: Path, pdf: Path, tiny_colqwen2_5: Path
) -> None:
    inner = mmembed.load_encoder(str(tiny_colqwen2_5))
    assert _pages(pdf) >= 3
    encoder = SignallingEncoder(inner)
    with mmembed.open_index(tmp_path / "idx", encoder=inner.info) as real:
        index = WatchedIndex(real, encoder, wait=True)
        report = mmembed.index_documents(pdf, index, encoder, batch_size=2)  # type: ignore[arg-type]
        assert real.count() == _pages(pdf) == report.pages_indexed
    threads = {name for name, _, _ in index.writes}
    assert threads and all(name.startswith("mmembed-index-writer") for name in threads)
    assert index.writes[0][1], "the first batch was written only after the second had encoded"
    assert [p for _, _, pages in index.writes for p in pages] == list(range(1, _pages(pdf) + 1))  # in order


def test_inline_writes_stay_available(tmp_path: Path, pdf: Path, tiny_colqwen2_5: Path) -> None:
    inner = mmembed.load_encoder(str(tiny_colqwen2_5))
    encoder = SignallingEncoder(inner)
    with mmembed.open_index(tmp_path / "idx", encoder=inner.info) as real:
        index = WatchedIndex(real, encoder, wait=False)
        mmembed.index_documents(pdf, index, encoder, batch_size=2, write_behind=False)  # type: ignore[arg-type]
        assert real.count() == _pages(pdf)
    assert {name for name, _, _ in index.writes} == {threading.current_thread().name}
    assert not index.writes[0][1]  # the first batch was stored before the second encoded


def test_an_encoder_failure_keeps_the_batch_written_behind_it(
    tmp_path: Path, pdf: Path, tiny_colqwen2_5: Path
) -> None:
    inner = mmembed.load_encoder(str(tiny_colqwen2_5))
    encoder = SignallingEncoder(inner, fail_on_batch=2)
    with mmembed.open_index(tmp_path / "idx", encoder=inner.info) as real:
        index = WatchedIndex(real, encoder, wait=True)
        with pytest.raises(RuntimeError, match="simulated encoder failure"):
            mmembed.index_documents(pdf, index, encoder, batch_size=2, thumbnails=False)  # type: ignore[arg-type]
        assert real.count() == 2  # batch 1 committed in full (its write was waited for), nothing of batch 2


def test_a_write_failure_is_raised_and_nothing_after_it_is_stored(
    tmp_path: Path, pdf: Path, tiny_colqwen2_5: Path
) -> None:
    inner = mmembed.load_encoder(str(tiny_colqwen2_5))
    encoder = SignallingEncoder(inner)
    with mmembed.open_index(tmp_path / "idx", encoder=inner.info) as real:
        index = WatchedIndex(real, encoder, wait=False, fail_on_write=1)
        with pytest.raises(OSError, match="simulated disk failure"):
            mmembed.index_documents(pdf, index, encoder, batch_size=2, thumbnails=False)  # type: ignore[arg-type]
        assert real.count() == 0
    assert len(index.writes) == 1  # the failure stopped the run at the next batch


def test_write_behind_runs_jobs_in_order_and_raises_their_errors() -> None:
    done: list[int] = []
    writer = WriteBehind()
    for i in range(5):
        writer.submit(lambda i=i: done.append(i))  # type: ignore[misc]
    writer.close()
    assert done == [0, 1, 2, 3, 4]

    def fail() -> None:
        raise ValueError("job failed")

    writer = WriteBehind()
    writer.submit(fail)
    with pytest.raises(ValueError, match="job failed"):
        writer.submit(lambda: done.append(99))  # the error of the job before comes out here
    writer.close()
    assert 99 not in done
    writer.close()  # idempotent
