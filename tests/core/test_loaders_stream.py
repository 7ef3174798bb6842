"""Streaming: bounded prefetch, laziness, worker errors, strict mode, skip, close and GC."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path

import pytest
from reportlab.pdfgen import canvas

from mmembed.loaders import LoadError, LoadIssue, Page, load_pages, render_page
from mmembed.loaders.pdf import PdfHandle


def make_pdf(path: Path, pages: int, size: float = 100) -> Path:
    doc = canvas.Canvas(str(path), pagesize=(size, size), invariant=1)
    for number in range(1, pages + 1):
        doc.drawString(10, 50, f"{path.stem} {number}")
        doc.showPage()
    doc.save()
    return path


class RenderCounter:
    """Wraps PdfHandle.render: counts renders and how many rendered images are alive."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rendered = 0
        self.alive = 0
        self.lock = threading.Lock()
        original = PdfHandle.render

        def render(handle, index, scale):
            image = original(handle, index, scale)
            with self.lock:
                self.rendered += 1
                self.alive += 1
            weakref.finalize(image, self._freed)
            return image

        monkeypatch.setattr(PdfHandle, "render", render)

    def _freed(self) -> None:
        with self.lock:
            self.alive -= 1


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("prefetch", [1, 4])
def test_prefetch_keeps_at_most_prefetch_plus_one_images_alive(tmp_path, monkeypatch, prefetch):
    pdf = make_pdf(tmp_path / "long.pdf", pages=300)
    counter = RenderCounter(monkeypatch)
    stream = load_pages(pdf, dpi=36, prefetch=prefetch)
    most_alive, numbers = 0, []
    first = next(stream)
    # the worker runs ahead by exactly `prefetch` pages, then waits for the consumer
    assert wait_for(lambda: counter.rendered == prefetch + 1)
    time.sleep(0.2)
    assert counter.rendered == prefetch + 1
    numbers.append(first.page)
    first.release()
    del first
    for page in stream:
        assert page.is_rendered  # rendered by the worker, ahead of the consumer
        _ = page.image.size
        most_alive = max(most_alive, counter.alive)
        numbers.append(page.page)
        page.release()
    gc.collect()
    assert numbers == list(range(1, 301))
    assert counter.rendered == 300
    assert most_alive <= prefetch + 1
    assert counter.alive == 0


def test_prefetch_zero_is_lazy_and_cached(tmp_path, monkeypatch):
    pdf = make_pdf(tmp_path / "long.pdf", pages=300)
    counter = RenderCounter(monkeypatch)
    pages = list(load_pages(pdf, dpi=36, prefetch=0))
    assert len(pages) == 300 and counter.rendered == 0  # 300 handles, nothing rendered
    assert not pages[10].is_rendered
    image = pages[10].image
    assert counter.rendered == 1 and pages[10].image is image  # cached
    pages[10].release()
    del image
    gc.collect()
    assert counter.alive == 0
    assert pages[10].image.size == (50, 50) and counter.rendered == 2  # renders again after release
    assert pages[299].image.size == (50, 50)  # the document was closed meanwhile: reopened


def test_released_prefetched_page_renders_again(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", pages=2)
    stream = load_pages(pdf, dpi=36, prefetch=2)
    pages = list(stream)
    assert stream._worker is not None and wait_for(lambda: not stream._worker.thread.is_alive())
    pages[0].release()
    assert not pages[0].is_rendered and pages[0].image.size == (50, 50)


def test_worker_exception_surfaces_in_the_consumer(tmp_path):
    make_pdf(tmp_path / "a.pdf", pages=2)
    make_pdf(tmp_path / "b.pdf", pages=2)

    def metadata(source: str) -> dict:
        if source.endswith("b.pdf"):
            raise RuntimeError("metadata lookup failed for b.pdf")
        return {"team": "x"}

    for prefetch in (0, 3):
        stream = load_pages(tmp_path, dpi=36, prefetch=prefetch, metadata=metadata)
        got = []
        with pytest.raises(RuntimeError, match=r"metadata lookup failed for b\.pdf"):
            for page in stream:
                got.append((Path(page.source).name, page.page, page.metadata))
        assert got == [("a.pdf", 1, {"team": "x"}), ("a.pdf", 2, {"team": "x"})]
        if stream._worker is not None:
            assert not stream._worker.thread.is_alive()
        assert list(stream) == []  # closed


def test_skip_callable_exception_and_render_error_in_worker(tmp_path, monkeypatch):
    make_pdf(tmp_path / "a.pdf", pages=3)

    def skip(source: str, content_hash: str) -> bool:
        raise KeyError("index unavailable")

    with pytest.raises(KeyError, match="index unavailable"):
        list(load_pages(tmp_path, skip=skip))

    original = PdfHandle.render

    def flaky(handle, index, scale):
        if index == 1:
            raise MemoryError("out of memory while rendering")
        return original(handle, index, scale)

    monkeypatch.setattr(PdfHandle, "render", flaky)
    for prefetch in (2, 0):
        stream = load_pages(tmp_path, dpi=36, prefetch=prefetch)
        pages = []
        for page in stream:
            try:
                page.load()
                pages.append(page.page)
            except LoadError as exc:  # lazily, the error comes with the image
                assert prefetch == 0 and exc.issue.page == 2
        assert pages == [1, 3]
        if prefetch:
            (issue,) = stream.issues
            assert (issue.page, issue.code) == (2, "render_failed") and "MemoryError" in issue.reason


def test_close_context_manager_and_garbage_collection_stop_the_worker(tmp_path):
    pdf = make_pdf(tmp_path / "long.pdf", pages=200)

    stream = load_pages(pdf, dpi=36, prefetch=2)
    next(stream)
    thread = stream._worker.thread
    stream.close()
    assert not thread.is_alive()
    assert list(stream) == []

    with load_pages(pdf, dpi=36, prefetch=2) as stream:
        for page in stream:
            if page.page == 3:
                break
        thread = stream._worker.thread
    assert not thread.is_alive()

    stream = load_pages(pdf, dpi=36, prefetch=2)
    next(stream)
    thread = stream._worker.thread
    assert thread.daemon  # can never keep the interpreter alive
    del stream, page
    gc.collect()
    assert wait_for(lambda: not thread.is_alive())


def test_strict_mode_raises_on_the_first_problem(tmp_path):
    make_pdf(tmp_path / "a.pdf", pages=2)
    (tmp_path / "b.pdf").write_bytes(b"%PDF-1.7 truncated")
    make_pdf(tmp_path / "c.pdf", pages=1)
    for prefetch in (0, 2):
        stream = load_pages(tmp_path, dpi=36, prefetch=prefetch, strict=True)
        got = []
        with pytest.raises(LoadError) as info:
            for page in stream:
                got.append(page.page)
        assert got == [1, 2]
        assert isinstance(info.value.issue, LoadIssue) and info.value.issue.code == "corrupt_pdf"
        assert "b.pdf" in str(info.value) and stream.issues == [info.value.issue]
        if stream._worker is not None:
            assert not stream._worker.thread.is_alive()
    # a duplicate is not a problem, even in strict mode: nothing is lost
    (tmp_path / "b.pdf").unlink()
    (tmp_path / "d.pdf").write_bytes((tmp_path / "a.pdf").read_bytes())
    stream = load_pages(tmp_path, dpi=36, strict=True)
    assert len(list(stream)) == 3 and [i.code for i in stream.issues] == ["duplicate"]


def test_skip_metadata_counters_and_summary(tmp_path):
    a = make_pdf(tmp_path / "a.pdf", pages=2)
    make_pdf(tmp_path / "b.pdf", pages=1)
    (tmp_path / "c.txt").write_text("x")
    calls: list[tuple[str, str]] = []

    def skip(source: str, content_hash: str) -> bool:
        calls.append((Path(source).name, content_hash))
        return source == str(a)

    stream = load_pages(tmp_path, dpi=36, skip=skip, metadata={"collection": "q3"})
    pages = list(stream)
    assert [(Path(p.source).name, p.page) for p in pages] == [("b.pdf", 1)]
    assert [name for name, _ in calls] == ["a.pdf", "b.pdf"] and all(len(h) == 64 for _, h in calls)
    assert stream.files_skipped == 1 and stream.skipped_sources == [str(a)]
    assert stream.files_loaded == 1 and stream.pages_loaded == 1 and stream.ok
    assert pages[0].metadata == {"collection": "q3"}
    pages[0].metadata["x"] = 1
    summary = stream.summary()
    assert "loaded 1 page(s) from 1 file(s), 1 unchanged file(s) skipped, 1 problem(s):" in summary
    assert "c.txt: has an unsupported file type .txt" in summary
    assert not load_pages(tmp_path / "c.txt").ok


def test_issues_arrive_in_input_order(tmp_path):
    make_pdf(tmp_path / "1.pdf", pages=1)
    (tmp_path / "2.pdf").write_bytes(b"nope")
    make_pdf(tmp_path / "3.pdf", pages=1)
    stream = load_pages(tmp_path, dpi=36, prefetch=4)
    first = next(stream)
    assert Path(first.source).name == "1.pdf" and stream.issues == []
    second = next(stream)
    assert Path(second.source).name == "3.pdf" and [Path(i.source).name for i in stream.issues] == ["2.pdf"]


def test_batched_and_page_repr(tmp_path):
    pdf = make_pdf(tmp_path / "doc.pdf", pages=5)
    batches = list(load_pages(pdf, dpi=36).batched(2))
    assert [[p.page for p in batch] for batch in batches] == [[1, 2], [3, 4], [5]]
    assert isinstance(batches[0][0], Page) and "doc.pdf" in repr(batches[0][0])
    with pytest.raises(ValueError):
        next(load_pages(pdf).batched(0))


def test_render_page_while_a_worker_renders(tmp_path):
    """PDFium is not thread-safe; the loader's lock must make mixed use safe."""
    long_pdf = make_pdf(tmp_path / "long.pdf", pages=60)
    other = make_pdf(tmp_path / "other.pdf", pages=3)
    sizes = set()
    for page in load_pages(long_pdf, dpi=72, prefetch=4):
        sizes.add(render_page(other, 1 + page.page % 3, dpi=72).size)
        sizes.add(page.image.size)
        page.release()
    assert sizes == {(100, 100)}


@pytest.mark.parametrize(
    "kwargs",
    [{"dpi": 0}, {"prefetch": -1}, {"max_pixels": 0}, {"max_image_pixels": 0}, {"page_range": "a"}],
)
def test_invalid_settings_fail_fast(tmp_path, kwargs):
    with pytest.raises(ValueError):
        load_pages(tmp_path, **kwargs)


def test_invalid_setting_types_fail_fast(tmp_path):
    with pytest.raises(TypeError):
        load_pages(tmp_path, metadata=["not", "a", "dict"])
    with pytest.raises(TypeError):
        load_pages(tmp_path, password=123)
    with pytest.raises(TypeError):
        load_pages(tmp_path, skip="yes")


def test_loader_options_object_drives_a_stream(tmp_path):
    from mmembed.loaders import LoaderOptions, PageStream

    make_pdf(tmp_path / "a.pdf", pages=3)
    options = LoaderOptions(dpi=36, page_range="2-", password={"a.pdf": "unused"}, include="*.pdf")
    assert options.password_for(str(tmp_path / "a.pdf")) == "unused"
    assert str(options.pages) == "2-" and options.include_globs == ("*.pdf",)
    with PageStream(tmp_path, options) as stream:
        assert [p.page for p in stream] == [2, 3]
    with pytest.raises(ValueError):
        options.replace(dpi=-1)
