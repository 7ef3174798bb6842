"""index_documents: batches commit one by one, a re-run resumes, changed files are replaced."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image

import mmembed
from mmembed.encoders.base import Encoder
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.types import EncoderInfo


class CountingEncoder(Encoder):
    """A real encoder wrapped to count calls and fail on demand (simulating a killed run)."""

    def __init__(self, inner: Encoder, fail_after_batches: int | None = None) -> None:
        self.inner = inner
        self.info: EncoderInfo = inner.info
        self.device = inner.device
        self.dtype = inner.dtype
        self.batches = 0
        self.images = 0
        self.fail_after_batches = fail_after_batches

    def encode_queries(self, queries: Sequence[str], **kw: object) -> list[torch.Tensor]:
        return self.inner.encode_queries(queries)

    def encode_images(self, images: Sequence[Image.Image], **kw: object) -> list[torch.Tensor]:
        if self.fail_after_batches is not None and self.batches >= self.fail_after_batches:
            raise RuntimeError("simulated crash")
        self.batches += 1
        self.images += len(images)
        return self.inner.encode_images(images)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    write_sample_pdfs(folder)
    return folder


def total_pages(folder: Path) -> int:
    return sum(1 for _ in mmembed.load_pages(folder, prefetch=0))


def test_interrupted_run_resumes_without_duplicates(
    tmp_path: Path, docs: Path, tiny_colqwen2_5: Path
) -> None:
    inner = mmembed.load_encoder(str(tiny_colqwen2_5))
    expected = total_pages(docs)
    with mmembed.open_index(tmp_path / "idx", encoder=inner.info) as index:
        crashing = CountingEncoder(inner, fail_after_batches=1)
        with pytest.raises(RuntimeError, match="simulated crash"):
            mmembed.index_documents(docs, index, crashing, batch_size=2, thumbnails=False)
        assert index.count() == 2  # exactly the committed batch

        resumed = CountingEncoder(inner)
        report = mmembed.index_documents(docs, index, resumed, batch_size=2)
        assert index.count() == expected
        assert len(set(report.ids)) == len(report.ids)
        # Only files not completely stored are rendered and encoded again...
        assert resumed.images <= expected
        # ...and a third run touches nothing.
        again = CountingEncoder(inner)
        report = mmembed.index_documents(docs, index, again, batch_size=2)
        assert again.images == 0 and report.pages_indexed == 0
        assert len(report.files_unchanged) == len(list(docs.glob("*.pdf")))


def test_records_carry_page_facts_and_thumbnails(tmp_path: Path, docs: Path, tiny_colqwen2_5: Path) -> None:
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    with mmembed.open_index(tmp_path / "idx", encoder=encoder.info) as index:
        mmembed.index_documents(docs, index, encoder, metadata={"collection": "samples"})
        records = list(index.records())
    assert records
    for r in records:
        assert Path(r.source).is_absolute() and r.page >= 1
        assert r.metadata["collection"] == "samples"
        assert r.metadata["page_count"] >= r.page
        assert len(r.content_hash) == 64
        assert r.thumbnail is not None and r.thumbnail[:2] == b"\xff\xd8"  # JPEG
        assert r.n_vectors > 0
    assert len({r.id for r in records}) == len(records)


def test_encoder_mismatch_is_refused(tmp_path: Path, docs: Path, tiny_colqwen2_5: Path) -> None:
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    other = EncoderInfo(name="someone/else", family="colqwen2_5", kind="multi", dim=128, similarity="maxsim")
    with (
        mmembed.open_index(tmp_path / "idx", encoder=other) as index,
        pytest.raises(mmembed.EncoderMismatchError),
    ):
        mmembed.index_documents(docs, index, encoder)


def test_is_source_complete_only_once_every_page_of_that_version_is_stored(tmp_path: Path) -> None:
    info = EncoderInfo(name="test/multi", family="test", kind="multi", dim=4, similarity="maxsim")
    h1, h2 = "1" * 64, "2" * 64

    def page(n: int, content_hash: str) -> mmembed.PageInput:
        return mmembed.PageInput(
            embedding=torch.ones(2, 4),
            source="a.pdf",
            page=n,
            content_hash=content_hash,
            metadata={"page_count": 3},
        )

    with mmembed.open_index(tmp_path / "index", info) as index:
        index.add([page(1, h1), page(2, h1)])
        assert not mmembed.is_source_complete(index, "a.pdf", h1)  # a run killed mid-file
        index.add([page(3, h1), page(1, h2)])
        assert mmembed.is_source_complete(index, "a.pdf", h1)
        assert not mmembed.is_source_complete(index, "a.pdf", h2)  # the new version: one page of three
        assert not mmembed.is_source_complete(index, "b.pdf", h1)


class BatchSensitiveEncoder(CountingEncoder):
    """A vector whose last bits depend on its batch partners, as a real model's do on real
    hardware (padding length, GEMM blocking by batch size): the tiny CPU model happens to be
    batch-invariant, so the dependence is made explicit here (keyed on the batch's image sizes)
    and large enough that int8 rounding shows it too."""

    def encode_images(self, images: Sequence[Image.Image], **kw: object) -> list[torch.Tensor]:
        out = super().encode_images(images)
        generator = torch.Generator().manual_seed(sum(7 * w + h for w, h in (im.size for im in images)))
        return [v * (1 + 1e-3 * torch.randn(v.shape, generator=generator)) for v in out]


@pytest.mark.parametrize(("storage", "first_stage"), [("float32", None), ("int8", "binary")])
def test_a_resumed_index_is_byte_equal_to_a_clean_build(
    tmp_path: Path, tiny_colqwen2_5: Path, storage: str, first_stage: str | None
) -> None:
    """Issue 29 item 27: a page's vectors depend on which pages shared its batch, so a resumed
    run whose batches start elsewhere stored other floats than a clean build (an int8 value one
    rounding step away). Batches now start at file boundaries, and a file that does not fit the
    current batch starts a new one: a resumed run re-forms the clean build's batches."""
    folder = tmp_path / "docs"
    write_sample_pdfs(folder)
    for i, size in enumerate([(90, 140), (200, 120), (64, 64)]):
        Image.new("RGB", size, (40 * i, 120, 200 - 30 * i)).save(folder / f"image{i}.png")
    inner = mmembed.load_encoder(str(tiny_colqwen2_5))

    def build(path: Path, fail_after: int | None) -> dict[str, torch.Tensor]:
        with mmembed.open_index(path, encoder=inner.info, storage=storage, first_stage=first_stage) as index:
            if fail_after is not None:
                with pytest.raises(RuntimeError, match="simulated crash"):
                    crashing = BatchSensitiveEncoder(inner, fail_after)
                    mmembed.index_documents(folder, index, crashing, batch_size=4, dpi=36, thumbnails=False)
            encoder = BatchSensitiveEncoder(inner)
            mmembed.index_documents(folder, index, encoder, batch_size=4, dpi=36, thumbnails=False)
            ids = sorted(r.id for r in index.records())
            return dict(zip(ids, index.get_embeddings(ids), strict=True))

    clean = build(tmp_path / "clean", None)
    for fail_after in (1,):  # the first file is stored, the second only in part
        resumed = build(tmp_path / f"resumed{fail_after}", fail_after)
        assert sorted(resumed) == sorted(clean)
        for page_id, vectors in clean.items():
            assert torch.equal(resumed[page_id], vectors), f"{page_id} differs after a resume at {fail_after}"
