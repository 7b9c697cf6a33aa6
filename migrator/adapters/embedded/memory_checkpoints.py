"""CheckpointStore and JobLocks in process memory: for unit tests and a single process.
Nothing survives the process; "another process" is another user of the same instance.

Held to the same contract suite as the MariaDB adapter (tests/contracts/checkpoint_store.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from migrator.domain.backfill import check_job_key, check_kind, check_state
from migrator.errors import JobRunning


class MemoryCheckpointStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._saved: dict[str, tuple[str, str]] = {}
        self._held: set[str] = set()

    def load(self, job: str) -> tuple[str, str] | None:
        job = check_job_key(job)
        with self._lock:
            return self._saved.get(job)

    def save(self, job: str, kind: str, state: str) -> None:
        job, kind, state = check_job_key(job), check_kind(kind), check_state(state)
        with self._lock:
            self._saved[job] = (kind, state)

    def delete(self, job: str) -> None:
        job = check_job_key(job)
        with self._lock:
            self._saved.pop(job, None)

    def jobs(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return [(job, *self._saved[job]) for job in sorted(self._saved)]

    @contextmanager
    def hold(self, job: str) -> Iterator[_Lease]:
        job = check_job_key(job)
        with self._lock:
            if job in self._held:
                raise JobRunning(
                    f"job {job} is running: another run holds it; wait for it to end, or run "
                    "this one under another --job name"
                )
            self._held.add(job)
        try:
            yield _Lease()
        finally:
            with self._lock:
                self._held.discard(job)


class _Lease:
    def check(self) -> None:
        """A hold in memory is never lost while its context is open."""
