"""PDF loading: real rendering, options, and every bad-PDF case (inputs built here)."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pikepdf
import pypdfium2 as pdfium
import pytest
from reportlab.lib.pagesizes import letter
from reportlab.pdfgen import canvas

from mmembed.loaders import LoadError, load_pages, render_page
from mmembed.loaders.sample_pdfs import write_long_pdf, write_sample_pdfs


def make_pdf(path: Path, pages: int = 3, size: tuple[float, float] = letter) -> Path:
    """A PDF whose page n carries a black square at a page-dependent place and its number."""
    doc = canvas.Canvas(str(path), pagesize=size, invariant=1)
    for number in range(1, pages + 1):
        doc.drawString(72, size[1] - 72, f"Page {number} of {pages}")
        doc.rect(72 * number, 100, 60, 60, fill=1, stroke=0)
        doc.showPage()
    doc.save()
    return path


def encrypt(source: Path, target: Path, *, user: str, owner: str) -> Path:
    with pikepdf.open(source) as pdf:
        pdf.save(target, encryption=pikepdf.Encryption(user=user, owner=owner))
    return target


def loaded(stream) -> list[tuple[str, int]]:
    return [(Path(page.source).name, page.page) for page in stream]


def codes(stream) -> dict[tuple[str, int | None], str]:
    return {(Path(issue.source).name, issue.page): issue.code for issue in stream.issues}


def test_every_page_is_rendered_as_rgb_with_identity(tmp_path):
    from mmembed.index.protocol import page_id

    pdf = make_pdf(tmp_path / "doc.pdf", pages=3)
    stream = load_pages(pdf, dpi=72)
    pages = list(stream)
    digest = hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert [p.page for p in pages] == [1, 2, 3]
    for page in pages:
        assert page.source == str(pdf.resolve())
        assert page.page_count == 3
        assert page.content_hash == digest
        assert page.id == page_id(digest, page.page)
        image = page.image
        assert image.mode == "RGB"
        assert image.size == (612, 792) == (page.render["width"], page.render["height"])
        assert page.render["backend"] == "pypdfium2" and page.render["dpi"] == 72
        # the black square of page n sits at x = 72n pt from the left, 100 pt from the bottom
        assert image.getpixel((72 * page.page + 30, 792 - 130)) == (0, 0, 0)
        assert image.getpixel((20, 792 - 130)) == (255, 255, 255)
    assert stream.issues == [] and stream.files_loaded == 1 and stream.pages_loaded == 3
    assert len({p.id for p in pages}) == 3


def test_default_dpi_is_144_and_max_pixels_downscales(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", pages=1)
    assert next(iter(load_pages(pdf))).image.size == (1224, 1584)
    page = next(iter(load_pages(pdf, max_pixels=100_000)))
    width, height = page.image.size
    assert width * height <= 100_000 and abs(width / height - 612 / 792) < 0.01
    assert (width, height) == (page.render["width"], page.render["height"])


def test_rotated_page_reports_displayed_size(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", pages=1)
    with pikepdf.open(pdf, allow_overwriting_input=True) as doc:
        doc.pages[0].rotate(90, relative=False)
        doc.save(pdf)
    page = next(iter(load_pages(pdf, dpi=72)))
    assert page.image.size == (792, 612) == (page.render["width"], page.render["height"])


@pytest.mark.parametrize(
    ("page_range", "expected"),
    [
        ("2-3", [2, 3]),
        ("1,3", [1, 3]),
        ("2-", [2, 3, 4]),
        ((2, 3), [2, 3]),
        (range(1, 3), [1, 2]),
        ([4, 1], [1, 4]),
        (3, [3]),
        ("3-9", [3, 4]),
    ],
)
def test_page_range(tmp_path, page_range, expected):
    pdf = make_pdf(tmp_path / "doc.pdf", pages=4)
    stream = load_pages(pdf, dpi=18, page_range=page_range)
    assert [p.page for p in stream] == expected
    assert stream.issues == []


def test_page_range_selecting_nothing_is_reported_and_invalid_ranges_rejected(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", pages=2)
    stream = load_pages(pdf, dpi=18, page_range="5-7")
    assert list(stream) == []
    assert stream.issues[0].code == "page_range_empty" and "2-page" in str(stream.issues[0])
    for bad in ("0-2", "x", "3-1", []):
        with pytest.raises(ValueError):
            load_pages(pdf, page_range=bad)


def test_passwords(tmp_path):
    plain = make_pdf(tmp_path / "plain.pdf", pages=2)
    locked = encrypt(plain, tmp_path / "locked.pdf", user="s3cret", owner="owner-pw")
    owner_only = encrypt(plain, tmp_path / "owner_only.pdf", user="", owner="owner-pw")

    stream = load_pages([locked, owner_only, plain], dpi=18)
    assert loaded(stream) == [
        ("owner_only.pdf", 1),
        ("owner_only.pdf", 2),
        ("plain.pdf", 1),
        ("plain.pdf", 2),
    ]
    (issue,) = stream.issues
    assert issue.code == "encrypted" and issue.source == str(locked.resolve())
    assert "password" in str(issue) and "locked.pdf" in str(issue)

    stream = load_pages([locked, owner_only], dpi=18, password="wrong")
    assert loaded(stream) == [("owner_only.pdf", 1), ("owner_only.pdf", 2)]  # owner-only still opens
    assert codes(stream) == {("locked.pdf", None): "wrong_password"}
    assert "does not open" in str(stream.issues[0])

    stream = load_pages(locked, dpi=18, password="s3cret")
    assert [p.page for p in stream] == [1, 2] and stream.issues == []
    stream = load_pages(tmp_path, dpi=18, password={str(locked): "s3cret"}, include="locked.pdf")
    assert [p.page for p in stream] == [1, 2]
    stream = load_pages(locked, dpi=18, password={"locked.pdf": "s3cret"})  # by file name
    assert [p.page for p in stream] == [1, 2]
    assert render_page(locked, 2, dpi=18, password="s3cret").mode == "RGB"
    with pytest.raises(LoadError) as info:
        render_page(locked, 1)
    assert info.value.issue.code == "encrypted"


def bad_pdfs(folder: Path) -> dict[str, str]:
    """Every bad-PDF case of the issue, next to good files; returns name -> expected code."""
    good = make_pdf(folder / "a_good.pdf", pages=2)
    data = good.read_bytes()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 2])
    (folder / "html.pdf").write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>")
    (folder / "zero_bytes.pdf").write_bytes(b"")
    with pikepdf.new() as empty:
        empty.save(folder / "no_pages.pdf")
    encrypt(good, folder / "encrypted.pdf", user="pw", owner="pw2")
    make_pdf(folder / "z_good.pdf", pages=1, size=(300, 300))
    return {
        "truncated.pdf": "corrupt_pdf",
        "html.pdf": "not_pdf",
        "zero_bytes.pdf": "empty_file",
        "no_pages.pdf": "no_pages",
        "encrypted.pdf": "encrypted",
    }


@pytest.mark.parametrize("prefetch", [0, 3])
def test_bad_pdfs_are_reported_and_good_files_still_load(tmp_path, prefetch):
    expected = bad_pdfs(tmp_path)
    stream = load_pages(tmp_path, dpi=18, prefetch=prefetch)
    pages = loaded(stream)
    assert pages == [("a_good.pdf", 1), ("a_good.pdf", 2), ("z_good.pdf", 1)]
    assert codes(stream) == {(name, None): code for name, code in expected.items()}
    assert stream.files_loaded == 2 and stream.pages_loaded == 3
    for issue in stream.issues:
        message = str(issue)
        assert issue.source in message and issue.hint  # names the file and says what to do
    html = next(i for i in stream.issues if i.code == "not_pdf")
    assert "HTML" in html.reason
    summary = stream.summary()
    assert "loaded 3 page(s) from 2 file(s)" in summary and summary.count("\n  - ") == len(expected)


def test_bad_pdf_order_does_not_matter_zero_pages_after_a_corrupt_file(tmp_path):
    # PDFium's error code is global state; a zero-page file right after a corrupt one must
    # still be reported as having no pages.
    bad_pdfs(tmp_path)
    stream = load_pages([tmp_path / "truncated.pdf", tmp_path / "no_pages.pdf", tmp_path / "encrypted.pdf"])
    assert list(stream) == []
    assert [i.code for i in stream.issues] == ["corrupt_pdf", "no_pages", "encrypted"]


def test_absurd_page_size_is_a_page_error_and_other_pages_load(tmp_path):
    pdf = tmp_path / "poster.pdf"
    with pikepdf.new() as doc:
        doc.add_blank_page(page_size=(612, 792))
        doc.add_blank_page(page_size=(14400, 14400))  # 200 x 200 inches, PDF's own maximum
        doc.add_blank_page(page_size=(612, 792))
        doc.save(pdf)
    stream = load_pages(pdf, dpi=72)
    assert [p.page for p in stream] == [1, 3]
    (issue,) = stream.issues
    assert (issue.code, issue.page) == ("page_too_large", 2)
    assert "200 × 200 in" in issue.reason and "max_pixels" in issue.hint and "page 2" in str(issue)
    # with a pixel budget the same page renders, downscaled
    page = next(iter(load_pages(pdf, page_range=2, max_pixels=1_000_000)))
    assert page.image.size == (1000, 1000)


def test_damaged_page_is_a_page_error(tmp_path):
    pdf = tmp_path / "three.pdf"
    with pikepdf.new() as doc:
        for _ in range(3):
            doc.add_blank_page(page_size=(200, 200))
        doc.save(pdf, object_stream_mode=pikepdf.ObjectStreamMode.disable, compress_streams=False)
    data = pdf.read_bytes()
    page_two = b"<< /Contents 7 0 R /MediaBox [ 0 0 200 200 ] /Parent 2 0 R /Resources << >> /Type /Page >>"
    assert data.count(page_two) == 1
    pdf.write_bytes(data.replace(page_two, b"(not a page)".ljust(len(page_two))))  # same offsets
    stream = load_pages(pdf, dpi=36)
    assert [p.page for p in stream] == [1, 3]
    assert [(i.page, i.code) for i in stream.issues] == [(2, "render_failed")]


def test_render_page(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", pages=3)
    image = render_page(pdf, 2, dpi=72)
    assert image.size == (612, 792) and image.getpixel((72 * 2 + 30, 792 - 130)) == (0, 0, 0)
    from_bytes = render_page(("doc.pdf", pdf.read_bytes()), 2, dpi=72)
    assert list(from_bytes.getdata()) == list(image.getdata())
    small = render_page(str(pdf), 1, max_pixels=50_000)
    assert small.size[0] * small.size[1] <= 50_000
    with pytest.raises(LoadError) as info:
        render_page(pdf, 4)
    assert info.value.issue.code == "no_such_page" and "page 4" in str(info.value)
    (tmp_path / "bad.pdf").write_bytes(b"garbage")
    with pytest.raises(LoadError, match=r"bad\.pdf"):
        render_page(tmp_path / "bad.pdf", 1)
    with pytest.raises(ValueError, match="folder"):
        render_page(tmp_path, 1)


def test_sample_pdfs_are_deterministic_multipage_and_on_distinct_topics(tmp_path):
    first = write_sample_pdfs(tmp_path / "one")
    second = write_sample_pdfs(tmp_path / "two")
    assert len(first) >= 3
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    texts = {}
    for path in first:
        doc = pdfium.PdfDocument(path)
        assert len(doc) >= 2
        texts[path.stem] = " ".join(doc[i].get_textpage().get_text_range() for i in range(len(doc))).lower()
        doc.close()
    assert "installed solar capacity by year" in texts["solar_energy_report"]
    assert (
        "tomato soup" in texts["mediterranean_cookbook"] and "ingredient" in texts["mediterranean_cookbook"]
    )
    assert "revenue by quarter" in texts["quarterly_financial_report"]
    assert (
        "tomato" not in texts["quarterly_financial_report"]
        and "revenue" not in texts["mediterranean_cookbook"]
    )
    stream = load_pages(tmp_path / "one", dpi=36)
    assert len(list(stream)) == sum(len(pdfium.PdfDocument(p)) for p in first) and stream.issues == []
    long_pdf = write_long_pdf(tmp_path / "long.pdf", 12)
    assert len(pdfium.PdfDocument(long_pdf)) == 12


def test_pdf2image_backend_missing_poppler_is_actionable(tmp_path, monkeypatch):
    pdf = make_pdf(tmp_path / "doc.pdf", pages=1)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(LoadError) as info:
        load_pages(pdf, backend="pdf2image")
    assert info.value.issue.code == "missing_dependency"
    assert "apt-get install -y poppler-utils" in str(info.value) and "pypdfium2" in str(info.value)


def test_pdf2image_backend_missing_package_is_actionable(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pdf2image", None)  # import fails
    with pytest.raises(LoadError, match=r"pip install 'mmembed-core\[pdf2image\]'"):
        load_pages(make_pdf(tmp_path / "doc.pdf", pages=1), backend="pdf2image")
    with pytest.raises(ValueError, match="unknown PDF backend"):
        load_pages(tmp_path, backend="ghostscript")


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_pdf2image_backend_renders_like_pypdfium2(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", pages=3)
    locked = encrypt(pdf, tmp_path / "locked.pdf", user="pw", owner="pw2")
    stream = load_pages([pdf, locked], dpi=72, backend="pdf2image", password={"locked.pdf": "pw"})
    pages = list(stream)
    assert [p.page for p in pages] == [1, 2, 3, 1, 2, 3] and stream.issues == []
    for page in pages:
        image = page.image
        assert page.render["backend"] == "pdf2image" and image.mode == "RGB"
        assert abs(image.size[0] - 612) <= 1 and abs(image.size[1] - 792) <= 1
        assert image.getpixel((72 * page.page + 30, 792 - 130)) == (0, 0, 0)
    assert render_page(pdf, 2, dpi=72, backend="pdf2image").getpixel((72 * 2 + 30, 792 - 130)) == (0, 0, 0)


def test_bad_pdfs_given_as_bytes(tmp_path):
    expected = bad_pdfs(tmp_path)
    sources = [(name, (tmp_path / name).read_bytes()) for name in ("a_good.pdf", *expected)]
    stream = load_pages(sources, dpi=18)
    assert loaded(stream) == [("a_good.pdf", 1), ("a_good.pdf", 2)]
    assert codes(stream) == {(name, None): code for name, code in expected.items()}
