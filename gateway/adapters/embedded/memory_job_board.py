"""The job board (operator controls of the migrator's long jobs, and their heartbeats) in
process memory: for unit tests and a single process. Nothing survives the process.

One lock around every call is the in-process version of the MariaDB adapter's one-statement
upsert: a change reads the control, merges what is asked and stores it under the lock, so
concurrent writers (threads) never lose each other's part.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from gateway.domain.jobs import (
    JobControl,
    JobReport,
    JobState,
    check_change,
    check_job_kind,
    check_job_name,
    check_report_detail,
    check_who,
    check_why,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryJobBoard:
    """JobBoard in memory. `clock` gives the time of each change and report (aware, UTC)."""

    def __init__(self, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._controls: dict[str, JobControl] = {}
        self._reports: dict[str, JobReport] = {}

    def control(self, job: str) -> JobControl:
        job = check_job_name(job)
        with self._lock:
            return self._controls.get(job) or JobControl.default(job)

    def set_control(
        self,
        job: str,
        who: str,
        why: str,
        *,
        state: JobState | None = None,
        rate: float | None = None,
        clear_rate: bool = False,
    ) -> JobControl:
        job, who, why = check_job_name(job), check_who(who), check_why(why)
        state, rate, clear_rate = check_change(state, rate, clear_rate)
        with self._lock:
            before = self._controls.get(job) or JobControl.default(job)
            after = replace(
                before,
                state=before.state if state is None else state,
                rate=None if clear_rate else (before.rate if rate is None else rate),
                who=who,
                why=why,
                at=self._clock(),
            )
            self._controls[job] = after
            return after

    def controls(self) -> list[JobControl]:
        with self._lock:
            return [self._controls[job] for job in sorted(self._controls)]

    def report(self, job: str, kind: str, detail: str) -> None:
        job, kind, detail = check_job_name(job), check_job_kind(kind), check_report_detail(detail)
        with self._lock:
            self._reports[job] = JobReport(job, kind, detail, self._clock())

    def reports(self) -> list[JobReport]:
        with self._lock:
            return [self._reports[job] for job in sorted(self._reports)]
