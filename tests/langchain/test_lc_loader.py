"""PDFPageImageLoader: one Document per page, image in metadata, text layer on request, bad files reported."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from PIL import Image

from langchain_mmembed import PDFPageImageLoader, image_data_url

DPI = 24


def _pdf_with_text(path: Path, pages: list[str]) -> Path:
    from reportlab.lib.pagesizes import A5
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A5)
    for text in pages:
        c.drawString(40, 400, text)
        c.showPage()
    c.save()
    return path


def _decoded(doc: Document) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(doc.metadata["image_base64"])))


def test_one_document_per_page_with_langchain_keys(sample_pdfs: list[Path]) -> None:
    import mmembed

    pdf = sample_pdfs[0]
    loader = PDFPageImageLoader(pdf, dpi=DPI)
    stream = loader.lazy_load()
    assert isinstance(stream, Iterator)  # lazy: nothing rendered before iteration
    docs = list(stream)

    assert len(docs) >= 2
    assert [d.metadata["page"] for d in docs] == list(range(1, len(docs) + 1))  # 1-based
    digest = hashlib.sha256(pdf.read_bytes()).hexdigest()
    for doc in docs:
        meta = doc.metadata
        assert doc.page_content == ""  # no text unless asked; never OCR
        assert Path(meta["source"]) == pdf.resolve()
        assert meta["total_pages"] == len(docs)
        assert meta["content_hash"] == digest
        assert doc.id == meta["id"] == mmembed.index.protocol.page_id(digest, meta["page"])
        assert meta["image_mime_type"] == "image/png"
        # The image is the real render of that page (PNG is lossless).
        expected = mmembed.render_page(str(pdf), meta["page"], dpi=DPI)
        assert _decoded(doc).convert("RGB").tobytes() == expected.convert("RGB").tobytes()
    assert not loader.issues


def test_text_layer_on_request_only(tmp_path: Path) -> None:
    pdf = _pdf_with_text(tmp_path / "notes.pdf", ["first page says photovoltaic", "second page says budget"])
    image_file = tmp_path / "scan.png"
    Image.new("RGB", (64, 80), "white").save(image_file)

    docs = PDFPageImageLoader([pdf, image_file], dpi=DPI, extract_text=True).load()
    by_name = {(Path(d.metadata["source"]).name, d.metadata["page"]): d for d in docs}
    assert "photovoltaic" in by_name[("notes.pdf", 1)].page_content
    assert "budget" in by_name[("notes.pdf", 2)].page_content
    assert "budget" not in by_name[("notes.pdf", 1)].page_content
    assert by_name[("scan.png", 1)].page_content == ""  # an image has no text layer (and no OCR)
    assert all(d.page_content == "" for d in PDFPageImageLoader(pdf, dpi=DPI).load())


def test_image_as_file_path(tmp_path: Path, sample_pdfs: list[Path]) -> None:
    pdf = sample_pdfs[0]
    both = PDFPageImageLoader(
        pdf, dpi=DPI, image="both", image_dir=tmp_path / "img", image_format="jpeg"
    ).load()
    for doc in both:
        path = Path(doc.metadata["image_path"])
        assert path.parent == tmp_path / "img" and path.suffix == ".jpg"
        assert path.read_bytes() == base64.b64decode(doc.metadata["image_base64"])
        assert doc.metadata["image_mime_type"] == "image/jpeg"
    paths_only = PDFPageImageLoader(pdf, dpi=DPI, image="path", image_dir=tmp_path / "img2").load()
    assert all("image_base64" not in d.metadata for d in paths_only)
    assert image_data_url(paths_only[0]).startswith("data:image/png;base64,")

    with pytest.raises(ValueError, match="image_dir"):
        PDFPageImageLoader(pdf, image="path")
    with pytest.raises(ValueError, match="image must be"):
        PDFPageImageLoader(pdf, image="url")  # type: ignore[arg-type]


def test_bad_files_are_reported_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mmembed import MMEmbedError

    folder = tmp_path / "mixed"
    folder.mkdir()
    good = _pdf_with_text(folder / "good.pdf", ["fine"])
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    (folder / "download.pdf").write_bytes(b"<!DOCTYPE html><html>404</html>")

    loader = PDFPageImageLoader(folder, dpi=DPI, metadata={"collection": "q3"})
    with caplog.at_level(logging.WARNING, logger="langchain_mmembed"):
        docs = loader.load()

    assert [Path(d.metadata["source"]).name for d in docs] == [good.name]
    assert docs[0].metadata["collection"] == "q3"
    assert sorted(Path(i.source).name for i in loader.issues) == ["broken.pdf", "download.pdf"]
    assert all(i.hint for i in loader.issues)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "broken.pdf" in logged and "download.pdf" in logged

    with pytest.raises(MMEmbedError, match=r"broken\.pdf|download\.pdf"):
        PDFPageImageLoader(folder, dpi=DPI, strict=True).load()


def test_encrypted_pdf_needs_its_password(tmp_path: Path) -> None:
    import pikepdf

    plain = _pdf_with_text(tmp_path / "plain.pdf", ["confidential figures"])
    locked = tmp_path / "locked.pdf"
    with pikepdf.open(plain) as pdf:
        pdf.save(locked, encryption=pikepdf.Encryption(user="s3cret", owner="owner"))
    plain.unlink()

    loader = PDFPageImageLoader(locked, dpi=DPI)
    assert loader.load() == []
    assert len(loader.issues) == 1 and "password" in str(loader.issues[0]).lower()

    docs = PDFPageImageLoader(locked, dpi=DPI, password="s3cret", extract_text=True).load()
    assert len(docs) == 1 and "confidential" in docs[0].page_content
