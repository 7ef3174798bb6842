"""The single-writer lock: ``flock`` on ``<folder>/lock``.

The kernel drops an ``flock`` when its holder dies, so a killed writer never leaves a stale
lock behind. The holder writes its pid into the file so that the error can name it. The file
is opened through :mod:`.safe_files`: a link planted at its name is refused, never truncated.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from . import safe_files
from .errors import IndexLockedError


class WriterLock:
    """Exclusive, non-blocking, released by :meth:`release` or by the process dying."""

    def __init__(self, path: Path, index_path: Path) -> None:
        self.path = path
        self.index_path = index_path
        self._fd: int | None = None

    @property
    def _rel(self) -> str:
        return self.path.relative_to(self.index_path).as_posix()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = safe_files.open_file(self.index_path, self._rel, write=True, create=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = self._holder()
            raise IndexLockedError(
                f"the index at {self.index_path} is being written by {holder} (lock file {self.path}). "
                "Only one process may write at a time: wait for it to finish or stop it; to search "
                "meanwhile, open the index with readonly=True."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock

    def _holder(self) -> str:
        try:
            with safe_files.opened(self.index_path, self._rel) as fd:
                text = os.pread(fd, 32, 0).decode("ascii").strip()
        except (OSError, UnicodeDecodeError, safe_files.UnsafeIndexFileError):
            text = ""
        return f"process {int(text)}" if text.isdigit() else "another process (pid not yet recorded)"
