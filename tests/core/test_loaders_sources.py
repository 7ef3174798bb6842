"""Folders, globs, symlinks, unreadable / unsupported files and Office documents."""

from __future__ import annotations

import builtins
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from PIL import Image
from reportlab.pdfgen import canvas

from mmembed.loaders import LoadError, load_pages, render_page


def make_pdf(path: Path, pages: int = 1, label: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = canvas.Canvas(str(path), pagesize=(200, 200), invariant=1)
    for number in range(1, pages + 1):
        doc.drawString(20, 100, f"{label or path.name} {number}")
        doc.showPage()
    doc.save()
    return path


def make_png(path: Path, shade: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 6), (shade, shade, shade)).save(path)
    return path


def names(stream) -> list[str]:
    return [f"{Path(page.source).relative_to(stream.root)}#{page.page}" for page in stream]


def run(root: Path, **kwargs):
    stream = load_pages(root, dpi=18, **kwargs)
    stream.root = root.resolve()  # for names()
    return stream


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    make_pdf(root / "a.pdf", pages=2)
    make_png(root / "b.png", 10)
    make_pdf(root / "drafts" / "c.pdf")
    make_pdf(root / "sub" / "deeper" / "d.PDF")
    make_png(root / "sub" / "e.png", 20)
    make_pdf(root / ".hidden" / "f.pdf")
    make_pdf(root / ".g.pdf")
    return root


def test_folder_is_walked_recursively_in_order(tree):
    stream = run(tree)
    assert names(stream) == [
        "a.pdf#1",
        "a.pdf#2",
        "b.png#1",
        "drafts/c.pdf#1",
        "sub/e.png#1",
        "sub/deeper/d.PDF#1",
    ]
    assert stream.issues == [] and stream.files_loaded == 5
    assert [p.page for p in run(tree, include_hidden=True)].count(1) == 7


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ("*.pdf", None, ["a.pdf#1", "a.pdf#2", "drafts/c.pdf#1", "sub/deeper/d.PDF#1"]),
        (["*.png"], None, ["b.png#1", "sub/e.png#1"]),
        (None, ["drafts", "*.png"], ["a.pdf#1", "a.pdf#2", "sub/deeper/d.PDF#1"]),
        ("sub/**", None, ["sub/e.png#1", "sub/deeper/d.PDF#1"]),
        ("**/d.pdf", None, ["sub/deeper/d.PDF#1"]),
        ("*.pdf", "drafts/*", ["a.pdf#1", "a.pdf#2", "sub/deeper/d.PDF#1"]),
    ],
)
def test_include_exclude_globs(tree, include, exclude, expected):
    stream = run(tree, include=include, exclude=exclude)
    assert names(stream) == expected and stream.issues == []


def test_iterables_of_paths_and_lazy_generators(tree):
    seen: list[str] = []

    def paths():
        for name in ("b.png", "a.pdf"):
            seen.append(name)
            yield tree / name

    stream = load_pages(paths(), dpi=18, prefetch=0)
    first = next(stream)
    assert Path(first.source).name == "b.png" and seen == ["b.png"]  # not walked ahead
    assert [p.page for p in stream] == [1, 2]
    assert [Path(p.source).name for p in load_pages([str(tree / "a.pdf"), tree / "b.png"], dpi=18)] == [
        "a.pdf",
        "a.pdf",
        "b.png",
    ]


def test_empty_folder_and_folder_with_everything_excluded(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    stream = load_pages(empty)
    assert list(stream) == []
    (issue,) = stream.issues
    assert issue.code == "empty_folder" and issue.source == str(empty) and "no file to load" in str(issue)
    make_pdf(empty / "x.pdf")
    stream = load_pages(empty, include="*.png")
    assert list(stream) == [] and "1 file(s) left out by include/exclude" in str(stream.issues[0])


def test_unsupported_and_missing_files_are_reported_and_the_rest_loads(tmp_path):
    make_pdf(tmp_path / "good.pdf")
    (tmp_path / "notes.txt").write_text("plain text")
    (tmp_path / "archive.zip").write_bytes(b"PK\x03\x04rest")
    (tmp_path / "README").write_text("no extension")
    make_png(tmp_path / "picture_without_extension.png").rename(tmp_path / "picture")
    stream = load_pages([tmp_path, tmp_path / "missing.pdf"], dpi=18)
    assert sorted(Path(p.source).name for p in stream) == ["good.pdf", "picture"]  # sniffed as PNG
    by_name = {Path(i.source).name: i for i in stream.issues}
    assert {name: issue.code for name, issue in by_name.items()} == {
        "README": "unsupported",
        "archive.zip": "unsupported",
        "notes.txt": "unsupported",
        "missing.pdf": "not_found",
    }
    assert "exclude=['*.txt']" in str(by_name["notes.txt"]) and "Supported: PDF" in str(by_name["notes.txt"])


def test_unreadable_file(tmp_path, monkeypatch):
    """Permission denied. chmod 000 is enough for a normal user; as root (CI here) reads
    succeed anyway, so the test also makes ``open`` raise PermissionError for that file."""
    make_pdf(tmp_path / "a_ok.pdf")
    secret = make_pdf(tmp_path / "secret.pdf")
    secret.chmod(0)
    if os.geteuid() == 0:
        real_open = builtins.open

        def guarded_open(file, *args, **kwargs):
            if os.fspath(file) == str(secret):
                raise PermissionError(13, "Permission denied", str(secret))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded_open)
    try:
        stream = load_pages(tmp_path, dpi=18)
        assert [Path(p.source).name for p in stream] == ["a_ok.pdf"]
        (issue,) = stream.issues
        assert (issue.code, Path(issue.source).name) == ("unreadable", "secret.pdf")
        assert "permission denied" in str(issue) and "chmod" in str(issue)
        with pytest.raises(LoadError, match=r"secret\.pdf"):
            list(load_pages(tmp_path, strict=True))
    finally:
        secret.chmod(stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_symlink_loops_and_broken_links(tmp_path):
    root = tmp_path / "root"
    make_pdf(root / "a.pdf")
    make_pdf(root / "sub" / "b.pdf")
    (root / "sub" / "back_to_root").symlink_to(root, target_is_directory=True)  # loop via a parent
    (root / "self_loop.pdf").symlink_to(root / "self_loop.pdf")  # ELOOP
    (root / "dangling.pdf").symlink_to(root / "nowhere.pdf")
    (root / "alias.pdf").symlink_to(root / "a.pdf")  # same file twice: loaded once
    stream = load_pages(root, dpi=18)
    assert sorted(Path(p.source).name for p in stream) == ["a.pdf", "b.pdf"]  # alias.pdf comes later
    codes = {Path(i.source).name: i.code for i in stream.issues}
    assert codes == {
        "back_to_root": "symlink_loop",
        "self_loop.pdf": "symlink_loop",
        "dangling.pdf": "broken_symlink",
    }
    assert stream.files_loaded == 2
    # a loop given directly
    stream = load_pages(root / "self_loop.pdf")
    assert list(stream) == [] and stream.issues[0].code == "symlink_loop"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs a Linux /proc")
def test_a_walk_never_enters_proc_like_trees(tmp_path):
    make_pdf(tmp_path / "a.pdf")
    (tmp_path / "kernel").symlink_to("/proc", target_is_directory=True)
    (tmp_path / "devices").symlink_to("/dev", target_is_directory=True)
    stream = load_pages(tmp_path, dpi=18)
    assert [Path(p.source).name for p in stream] == ["a.pdf"]
    assert sorted((Path(i.source).name, i.code) for i in stream.issues) == [
        ("devices", "system_folder"),
        ("kernel", "system_folder"),
    ]


def test_entries_that_vanish_during_the_walk_are_issues_not_crashes(tmp_path, monkeypatch):
    make_pdf(tmp_path / "a.pdf")
    make_pdf(tmp_path / "b.pdf")
    make_pdf(tmp_path / "gone" / "c.pdf")
    real_scandir = os.scandir

    class ListThenDelete:
        """Lists the folder, then b.pdf and gone/ are removed (another process cleaning up)."""

        def __init__(self, path):
            self.entries = list(real_scandir(path))
            (tmp_path / "b.pdf").unlink()
            (tmp_path / "gone" / "c.pdf").unlink()
            (tmp_path / "gone").rmdir()

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    def scandir(path):
        return ListThenDelete(path) if path == tmp_path else real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    stream = load_pages(tmp_path, dpi=18)
    assert [Path(p.source).name for p in stream] == ["a.pdf"]
    assert sorted((Path(i.source).name, i.code) for i in stream.issues) == [
        ("b.pdf", "unreadable"),
        ("gone", "unreadable"),
    ]


def test_unreadable_folder_listing(tmp_path, monkeypatch):
    make_pdf(tmp_path / "z.pdf")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    stream = load_pages(tmp_path, dpi=18)
    assert [Path(p.source).name for p in stream] == ["z.pdf"]
    assert [(i.source, i.code) for i in stream.issues] == [(str(locked), "unreadable")]


def test_office_without_libreoffice_is_actionable(tmp_path, monkeypatch):
    (tmp_path / "letter.docx").write_bytes(b"PK\x03\x04 not really a docx")
    make_pdf(tmp_path / "z.pdf")
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    stream = load_pages(tmp_path, dpi=18)
    assert [Path(p.source).name for p in stream] == ["z.pdf"]
    (issue,) = stream.issues
    assert issue.code == "soffice_missing" and "letter.docx" in str(issue)
    assert "LibreOffice" in str(issue) and "apt-get install" in str(issue) and "export" in str(issue)
    with pytest.raises(LoadError, match="soffice"):
        render_page(tmp_path / "letter.docx", 1)


def fake_soffice(folder: Path, pdf: Path, *, exit_code: int = 0) -> Path:
    """An executable named soffice that 'converts' by copying a prepared PDF to --outdir,
    the way LibreOffice names its output (input stem + .pdf)."""
    script = folder / "soffice"
    script.write_text(
        "#!/bin/sh\n"
        'out=""; last=""\n'
        'while [ $# -gt 0 ]; do case "$1" in --outdir) out="$2"; shift;; *) last="$1";; esac; shift; done\n'
        'echo "$last" >> "$(dirname "$0")/calls.log"\n'
        f"[ {exit_code} -ne 0 ] && echo 'Error: source file could not be loaded' >&2 && exit {exit_code}\n"
        'mkdir -p "$out"; name=$(basename "$last"); cp ' + str(pdf) + ' "$out/${name%.*}.pdf"\n'
    )
    script.chmod(0o755)
    return script


def test_office_conversion_through_soffice(tmp_path, monkeypatch):
    """The LibreOffice plumbing (command, output pick-up, hashing the original) with a stand-in
    soffice; the real one is exercised in the next test when installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    converted = make_pdf(tmp_path / "converted.pdf", pages=2, label="converted")
    fake_soffice(bin_dir, converted)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: str(bin_dir / "soffice") if name == "soffice" else None
    )
    docx = tmp_path / "in" / "minutes.docx"
    docx.parent.mkdir()
    docx.write_bytes(b"PK\x03\x04 office bytes")
    stream = load_pages([docx, ("slides.pptx", b"PK\x03\x04 slides")], dpi=18)
    pages = list(stream)
    assert stream.issues == []
    assert [(Path(p.source).name, p.page, p.page_count) for p in pages] == [
        ("minutes.docx", 1, 2),
        ("minutes.docx", 2, 2),
        ("slides.pptx", 1, 2),
        ("slides.pptx", 2, 2),
    ]
    import hashlib

    assert pages[0].content_hash == hashlib.sha256(docx.read_bytes()).hexdigest()
    assert pages[0].render["converted_with"] == "libreoffice" and pages[0].image.mode == "RGB"
    assert render_page(docx, 2, dpi=18).mode == "RGB"
    calls = (bin_dir / "calls.log").read_text().splitlines()
    assert calls[0] == str(docx) and calls[1].endswith("slides.pptx")

    fake_soffice(bin_dir, converted, exit_code=1)
    stream = load_pages(docx, dpi=18)
    assert list(stream) == []
    assert stream.issues[0].code == "office_failed" and "could not be loaded" in str(stream.issues[0])


def write_office_files(folder: Path) -> dict[str, int]:
    """Real Office files made by python-docx / python-pptx / openpyxl: name -> expected pages."""
    import docx
    import openpyxl
    import pptx
    from docx.enum.text import WD_BREAK

    folder.mkdir(parents=True, exist_ok=True)
    document = docx.Document()
    document.add_heading("Minutes", level=1)
    document.add_paragraph("First page of the minutes.")
    document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    document.add_paragraph("Second page: decisions.")
    document.save(str(folder / "minutes.docx"))
    deck = pptx.Presentation()
    for title in ("Solar capacity", "Revenue"):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
    deck.save(str(folder / "slides.pptx"))
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["year", "capacity (GW)"])
    for year, gw in ((2021, 12.5), (2022, 15.0), (2023, 19.25)):
        sheet.append([year, gw])
    book.save(str(folder / "capacity.xlsx"))
    return {"capacity.xlsx": 1, "minutes.docx": 2, "slides.pptx": 2}


@pytest.mark.skipif(
    shutil.which("soffice") is None,
    reason="LibreOffice (soffice) not installed: `make venv` installs it as root with apt",
)
def test_office_files_convert_with_real_libreoffice(tmp_path):
    import hashlib

    expected = write_office_files(tmp_path / "office")
    stream = load_pages(tmp_path / "office", dpi=24)
    pages = list(stream)
    assert stream.issues == []
    counts: dict[str, int] = {}
    for page in pages:
        name = Path(page.source).name
        counts[name] = counts.get(name, 0) + 1
        assert page.page_count == expected[name] and page.image.mode == "RGB"
        assert page.render["converted_with"] == "libreoffice"
        assert page.content_hash == hashlib.sha256(Path(page.source).read_bytes()).hexdigest()
    assert counts == expected
    # the slides really carry their text: two different pages, not blank ones
    slides = [p.image for p in pages if Path(p.source).name == "slides.pptx"]
    assert slides[0].tobytes() != slides[1].tobytes() and slides[0].getextrema() != ((255, 255),) * 3


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice not installed")
def test_office_conversion_with_real_libreoffice(tmp_path):
    rtf = tmp_path / "note.rtf"
    rtf.write_text(r"{\rtf1\ansi Hello from RTF.}")
    stream = load_pages(rtf, dpi=36)
    assert [p.page for p in stream] == [1] and stream.issues == []
