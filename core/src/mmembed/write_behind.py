"""Write behind: an index batch's write (thumbnails, upsert) runs in one worker thread while
the next batch encodes.

:func:`mmembed.index_documents` renders ahead in the loader's thread
(:mod:`mmembed.loaders.stream`) and hands each encoded batch to a :class:`WriteBehind`, so
rendering and writing overlap encoding: the model waits for neither unless one of them
takes longer than encoding a batch.

Guarantees, the same as writing inline: writes run one at a time in submission order (each
batch is still one atomic commit, so a killed run keeps every batch committed before it); at
most one batch waits to be written (memory holds two batches, not the whole run); a write's
error is raised in the caller, at its next :meth:`~WriteBehind.submit` or at
:meth:`~WriteBehind.close`, which always waits for the write in flight, also when the caller
is leaving on an error of its own (that error is then the raised one's ``__context__``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class WriteBehind:
    """Run ``submit``-ted jobs one at a time, in order, beside the caller.

    >>> writer = WriteBehind()
    >>> done = []
    >>> writer.submit(lambda: done.append(1))
    >>> writer.close()
    >>> done
    [1]

    ``enabled=False`` runs each job inline, in ``submit`` (the behaviour without overlap).
    """

    def __init__(self, enabled: bool = True) -> None:
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmembed-index-writer") if enabled else None
        )
        self._pending: Future[None] | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Wait for the previous job (raising its error), then start ``job``."""
        self.wait()
        if self._executor is None:
            job()
        else:
            self._pending = self._executor.submit(job)

    def wait(self) -> None:
        """Block until the job in flight is done; raise its error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the job in flight (raising its error) and stop the worker. Idempotent."""
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
