"""PDFPageImageReader: one ImageDocument per page, metadata, images, bad files reported."""

from __future__ import annotations

import base64
import io
import logging
import shutil
from pathlib import Path

import pikepdf
import pytest
from llama_index.core import SimpleDirectoryReader
from llama_index.core.schema import ImageDocument, MetadataMode
from llama_index.readers.mmembed import PDFPageImageReader
from PIL import Image

import mmembed
from mmembed.index.protocol import page_id

DPI = 48  # low resolution keeps the tiny model fast; same value as conftest.DPI


@pytest.fixture
def mixed_folder(tmp_path: Path, sample_pdfs: list[Path]) -> Path:
    """One good PDF, one PNG page, and three files that cannot be read."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(sample_pdfs[0], folder / "good.pdf")
    Image.new("RGB", (300, 200), "navy").save(folder / "scan.png")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\nthis is not really a pdf\n")
    (folder / "empty.pdf").write_bytes(b"")
    with pikepdf.open(sample_pdfs[1]) as pdf:
        pdf.save(folder / "locked.pdf", encryption=pikepdf.Encryption(user="secret", owner="owner"))
    return folder


def decode(doc: ImageDocument) -> Image.Image:
    assert doc.image is not None
    return Image.open(io.BytesIO(base64.b64decode(doc.image)))


def test_one_image_document_per_page_with_metadata(sample_pdfs: list[Path]) -> None:
    pdf = sample_pdfs[0]
    pages = list(mmembed.load_pages(pdf, dpi=DPI))
    docs = PDFPageImageReader(dpi=DPI).load_data(pdf, extra_info={"collection": "energy"})

    assert len(docs) == len(pages) >= 2
    for number, (doc, page) in enumerate(zip(docs, pages, strict=True), 1):
        assert isinstance(doc, ImageDocument)
        assert doc.id_ == page_id(page.content_hash, number) == page.id
        assert doc.metadata == {
            "collection": "energy",
            "file_path": str(pdf.resolve()),
            "file_name": pdf.name,
            "page_label": str(number),
            "page_number": number,
            "page_count": len(pages),
            "content_hash": page.content_hash,
        }
        image = decode(doc)
        assert image.format == "PNG" and image.size == page.image.size
        assert doc.image_mimetype == "image/png"
        # Bookkeeping keys stay out of what an LLM reads.
        llm_text = doc.get_metadata_str(mode=MetadataMode.LLM)
        assert "page_label: " in llm_text and "content_hash" not in llm_text


def test_bad_files_are_reported_not_fatal(mixed_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    reader = PDFPageImageReader(dpi=DPI)
    with caplog.at_level(logging.WARNING):
        docs = reader.load_data(mixed_folder)

    names = {Path(d.metadata["file_path"]).name for d in docs}
    assert names == {"good.pdf", "scan.png"}
    good_pages = [d.metadata["page_number"] for d in docs if d.metadata["file_name"] == "good.pdf"]
    assert good_pages == list(range(1, sum(1 for _ in mmembed.load_pages(mixed_folder / "good.pdf")) + 1))
    png = next(d for d in docs if d.metadata["file_name"] == "scan.png")
    assert png.metadata["page_number"] == 1 and decode(png).size == (300, 200)

    skipped = {Path(issue.source).name for issue in reader.issues}
    assert skipped == {"corrupt.pdf", "empty.pdf", "locked.pdf"}
    for name in skipped:
        assert any(name in record.getMessage() for record in caplog.records), name


def test_password_and_strict(mixed_folder: Path) -> None:
    locked = mixed_folder / "locked.pdf"
    docs = PDFPageImageReader(dpi=DPI, password="secret").load_data(locked)
    assert len(docs) >= 2 and docs[0].metadata["file_name"] == "locked.pdf"

    with pytest.raises(mmembed.MMEmbedError, match=r"corrupt\.pdf"):
        PDFPageImageReader(dpi=DPI, strict=True).load_data(mixed_folder / "corrupt.pdf")


def test_lazy_load_streams_pages(sample_pdfs: list[Path]) -> None:
    stream = PDFPageImageReader(dpi=DPI).lazy_load_data([str(p) for p in sample_pdfs])
    first = next(iter(stream))
    assert first.metadata["page_number"] == 1
    assert sum(1 for _ in stream) + 1 == sum(1 for _ in mmembed.load_pages(sample_pdfs, dpi=DPI))


def test_path_mode_writes_page_images_once(tmp_path: Path, sample_pdfs: list[Path]) -> None:
    reader = PDFPageImageReader(
        dpi=DPI, image_mode="path", image_format="JPEG", image_dir=str(tmp_path / "img")
    )
    docs = reader.load_data(sample_pdfs[0])
    files = sorted((tmp_path / "img").iterdir())
    assert len(files) == len(docs)
    assert {d.image_path for d in docs} == {str(f) for f in files}
    assert all(d.image is None and d.image_mimetype == "image/jpeg" for d in docs)
    mtimes = [f.stat().st_mtime_ns for f in files]
    reader.load_data(sample_pdfs[0])
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # content-addressed: not rewritten


def test_works_as_simple_directory_reader_extractor(pdf_folder: Path) -> None:
    reader = SimpleDirectoryReader(
        input_dir=str(pdf_folder), file_extractor={".pdf": PDFPageImageReader(dpi=DPI)}
    )
    docs = reader.load_data()
    assert len(docs) == sum(1 for _ in mmembed.load_pages(pdf_folder, dpi=DPI))
    assert all(isinstance(d, ImageDocument) and d.image for d in docs)
    assert all("file_size" in d.metadata for d in docs)  # SimpleDirectoryReader's own metadata kept


def test_serialisation_round_trip_keeps_password_out() -> None:
    reader = PDFPageImageReader(dpi=100, page_range="1-2", include=["*.pdf"], password="secret")
    data = reader.to_dict()
    assert data["class_name"] == PDFPageImageReader.class_name() == "PDFPageImageReader"
    assert "secret" not in reader.to_json()
    again = PDFPageImageReader.from_dict(data)
    assert again.to_dict() == data


def test_page_range(sample_pdfs: list[Path]) -> None:
    docs = PDFPageImageReader(dpi=DPI, page_range="2").load_data(sample_pdfs[0])
    assert [d.metadata["page_number"] for d in docs] == [2]
