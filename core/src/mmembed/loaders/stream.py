"""The page stream: an iterator of pages that renders ahead in a background thread.

With ``prefetch=N > 0`` one daemon worker thread walks the files and renders up to ``N``
pages ahead of the consumer (a semaphore of ``N`` slots: a slot is taken before a page is
rendered and given back when the consumer receives it), so rendering overlaps encoding
while at most ``N + 1`` rendered pages exist (``N`` ahead + the one being used, if the
consumer calls :meth:`Page.release` when done). Issues travel through the same queue, so
``stream.issues`` grows in input order. ``close()``, leaving a ``with`` block, or garbage
collection of the stream stops the worker; an exception raised in the worker (e.g. by a
``metadata`` or ``skip`` callable) is re-raised in the consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, Generic, TypeVar, cast

from .errors import NOTE_CODES, LoadError, LoadIssue
from .options import LoaderOptions
from .page import Page
from .poppler import check_poppler
from .producer import Event, FileDone, FileSkipped, produce
from .segment import MediaSegment

_JOIN_TIMEOUT = 10.0


class _End:
    """The worker has no more events."""


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _work(
    events: Generator[Event, None, None],
    out: queue.SimpleQueue[Any],
    slots: threading.Semaphore,
    stop: threading.Event,
) -> None:
    """Body of the worker thread; holds no reference to the stream, so the stream can be
    garbage-collected (which stops this loop)."""
    final: object = _End()
    try:
        for event in events:
            if stop.is_set():
                break
            if isinstance(event, (Page, MediaSegment)):
                slots.acquire()
                if stop.is_set():
                    break
                try:
                    event.load()
                except LoadError as exc:
                    slots.release()
                    out.put(exc.issue)
                    event = None  # type: ignore[assignment]
                    continue
            out.put(event)
            event = None  # type: ignore[assignment]  # the consumer owns the page now
    except BaseException as exc:
        final = _Failure(exc)
    finally:
        try:
            events.close()  # closes open documents, in the thread that used them
        except BaseException as exc:
            if not isinstance(final, _Failure):
                final = _Failure(exc)
        out.put(final)


class _Prefetcher:
    def __init__(self, events: Generator[Event, None, None], depth: int) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots = threading.Semaphore(depth)
        self._stop = threading.Event()
        self.thread = threading.Thread(
            target=_work,
            args=(events, self._queue, self._slots, self._stop),
            name="mmembed-page-loader",
            daemon=True,  # never keeps the interpreter alive
        )
        self.thread.start()

    def get(self) -> Event | _End:
        item = self._queue.get()
        if isinstance(item, _Failure):
            raise item.error
        if isinstance(item, (Page, MediaSegment)):
            self._slots.release()  # the worker may render one more page ahead
        return item  # type: ignore[no-any-return]

    def stop(self, wait: bool) -> None:
        self._stop.set()
        self._slots.release()  # wake the worker if it waits for a slot
        if wait and self.thread is not threading.current_thread():
            self.thread.join(_JOIN_TIMEOUT)


Item = Page | MediaSegment
ItemT = TypeVar("ItemT", Page, Item)


class DocumentStream(Iterator[ItemT], Generic[ItemT]):
    """Iterator of :class:`Page` and, with ``options.media``, :class:`MediaSegment` over every
    file of ``sources``; see :func:`load_documents` and :func:`load_pages`.

    Attributes filled as the stream advances: ``issues`` (every :class:`LoadIssue`),
    ``files_loaded``, ``pages_loaded``, ``segments_loaded`` (media), ``files_skipped`` (by the
    ``skip`` callable).
    """

    def __init__(self, sources: Any, options: LoaderOptions | None = None) -> None:
        self.options = options or LoaderOptions()
        if self.options.backend == "pdf2image":
            check_poppler()
        self.issues: list[LoadIssue] = []
        self.files_loaded = 0
        self.pages_loaded = 0
        self.segments_loaded = 0
        self.files_skipped = 0
        self.skipped_sources: list[str] = []
        self._events: Generator[Event, None, None] | None = produce(sources, self.options)
        self._worker: _Prefetcher | None = None
        self._pages_in_file = 0
        self._done = False

    def __iter__(self) -> DocumentStream[ItemT]:
        return self

    def __next__(self) -> ItemT:
        while not self._done:
            event = self._next_event()
            if isinstance(event, _End):
                self.close()
                break
            if isinstance(event, (Page, MediaSegment)):
                if isinstance(event, MediaSegment):
                    self.segments_loaded += 1
                else:
                    self.pages_loaded += 1
                self._pages_in_file += 1
                return cast(ItemT, event)
            if isinstance(event, LoadIssue):
                self.issues.append(event)
                if self.options.strict and event.code not in NOTE_CODES:
                    self.close()
                    raise LoadError(event)
            elif isinstance(event, FileDone):
                self.files_loaded += self._pages_in_file > 0
                self._pages_in_file = 0
            elif isinstance(event, FileSkipped):
                self.files_skipped += 1
                self.skipped_sources.append(event.source)
        raise StopIteration

    def _next_event(self) -> Event | _End:
        if self.options.prefetch == 0:
            assert self._events is not None
            try:
                return next(self._events)
            except StopIteration:
                return _End()
            except BaseException:
                self.close()
                raise
        if self._worker is None:
            assert self._events is not None
            self._worker, self._events = _Prefetcher(self._events, self.options.prefetch), None
        try:
            return self._worker.get()
        except BaseException:
            self.close()
            raise

    def batched(self, size: int) -> Iterator[list[ItemT]]:
        """The pages in lists of ``size`` (the last one may be shorter)."""
        if size < 1:
            raise ValueError("size must be >= 1")
        batch: list[ItemT] = []
        for page in self:
            batch.append(page)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        """Stop the worker (waiting for it) and close open documents. Idempotent."""
        self._done = True
        if self._worker is not None:
            self._worker.stop(wait=True)
        elif self._events is not None:
            events, self._events = self._events, None
            events.close()

    def __enter__(self) -> DocumentStream[ItemT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.stop(wait=False)

    @property
    def ok(self) -> bool:
        """True when at least one page (or media segment) was loaded."""
        return self.pages_loaded + self.segments_loaded > 0

    def summary(self) -> str:
        """Counts plus one line per problem (file and page, reason, what to do)."""
        lines = [
            f"loaded {self.pages_loaded} page(s)"
            + (f" and {self.segments_loaded} media segment(s)" if self.options.media else "")
            + f" from {self.files_loaded} file(s)"
            + (f", {self.files_skipped} unchanged file(s) skipped" if self.files_skipped else "")
            + (f", {len(self.issues)} problem(s):" if self.issues else "")
        ]
        lines.extend(f"  - {issue}" for issue in self.issues)
        return "\n".join(lines)


class PageStream(DocumentStream[Page]):
    """The stream of :func:`load_pages`: pages only (audio / video files become issues)."""

    def __init__(self, sources: Any, options: LoaderOptions | None = None) -> None:
        if options is not None and options.media:
            raise ValueError("a PageStream yields pages only; load audio / video with load_documents()")
        super().__init__(sources, options)

    def __iter__(self) -> PageStream:
        return self

    def __enter__(self) -> PageStream:
        return self
