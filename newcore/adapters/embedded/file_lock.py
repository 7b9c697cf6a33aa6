"""The lock every process (and thread) using one embedded directory shares: what makes the
embedded event log safe when the pipeline's processes (binlog source, capturer, updater,
gateway, the migrator's jobs) open the same files.

- Writers hold it exclusively (`exclusive`), readers shared (`shared`): a reader never sees a
  write under way (half a transaction, a record being written), and two writers never
  interleave. It is `fcntl.flock` on a lock file: the kernel drops it when its holder dies
  (kill -9 included), so a lock is never left held by a dead process.
- Whoever takes it first after a writer died finishes what that writer left (`settle`: the
  embedded topics redo a committed transaction's journal), and only then does its own work.
  Holding the lock is the proof that no live writer is in the middle of anything: settling
  needs no guess about whether a writer is alive. A reader that finds something to settle
  takes the lock exclusively for it.
- Within a process, threads take turns (a re-entrant thread lock in front of the flock), and a
  thread that holds it takes it again for free (a transaction applies its records through
  the logs' own writes). Two instances on one path in one process exclude each other as two
  processes would.

flock locks belong to the open file: a process forked while holding one shares it with its
child. Start the processes that share a directory with exec (subprocess, `spawn`), as every
command of ours is.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


class DirectoryLock:
    def __init__(
        self,
        path: Path,
        unsettled: Callable[[], bool] | None = None,
        settle: Callable[[], None] | None = None,
    ) -> None:
        """`unsettled()`: whether something a dead writer left must be finished first (cheap:
        asked at every acquisition); `settle()`: finishes it, under the exclusive lock."""
        self._path = path
        self._unsettled = unsettled
        self._settle = settle
        self._threads = threading.RLock()
        self._file: BinaryIO | None = None  # a file object: closed with the instance
        self._mode = 0  # what this process holds: 0, fcntl.LOCK_SH or fcntl.LOCK_EX
        self._depth = 0  # how many times the holding thread took it

    @property
    def path(self) -> Path:
        return self._path

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held alone by this thread among every process. Raises OSError (the lock file cannot
        be made) and whatever `settle` raises."""
        with self._held(fcntl.LOCK_EX):
            yield

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Held with other readers, never with a writer. Raises as `exclusive`."""
        with self._held(fcntl.LOCK_SH):
            yield

    @contextmanager
    def _held(self, mode: int) -> Iterator[None]:
        with self._threads:
            if self._depth:
                if mode == fcntl.LOCK_EX and self._mode == fcntl.LOCK_SH:
                    raise RuntimeError(f"{self._path}: exclusive asked while holding it shared")
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            descriptor = self._opened().fileno()
            fcntl.flock(descriptor, mode)
            self._mode, self._depth = mode, 1
            try:
                if self._unsettled is not None and self._settle is not None and self._unsettled():
                    if mode == fcntl.LOCK_SH:
                        # Not atomic: another writer may come first and settle it; settling
                        # twice is harmless, and it is asked again under the exclusive lock.
                        fcntl.flock(descriptor, fcntl.LOCK_EX)
                        self._mode = fcntl.LOCK_EX
                    if self._unsettled():
                        self._settle()
                yield
            finally:
                self._mode, self._depth = 0, 0
                fcntl.flock(descriptor, fcntl.LOCK_UN)

    def _opened(self) -> BinaryIO:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("ab")
        return self._file

    def close(self) -> None:
        """Closes the lock file (not while held)."""
        with self._threads:
            if self._file is not None:
                self._file.close()
                self._file = None
