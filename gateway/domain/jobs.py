"""Operator controls of the migrator's long jobs (backfill, repair), kept in the control store
so that the CLI and the gateway's admin API change a running job the same way (issue 13).

A job polls its control about once a second and obeys: `run` at `rate` messages per second
(None: the job's own setting), `pause` (sends nothing more, keeps its place, waits), `panic`
(stops at once: nothing more is sent, the checkpoint stays where it is, the process exits
non-zero saying who pressed it and why; the job resumes from its checkpoint only after the
control is set back to `run`). Every change says who and why, like a phase move.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gateway.domain.phases import check_who, check_why

JOB_NAME_MAX = 64
JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
JOB_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RATE_MAX = 10_000_000.0
REPORT_MAX = 60_000  # characters of a report's detail
KIND_MAX = 32


class JobState(StrEnum):
    RUN = "run"
    PAUSE = "pause"
    PANIC = "panic"


@dataclass(frozen=True, slots=True)
class JobControl:
    """What operators last asked of a job. A job never controlled is `JobControl.default(job)`:
    run at its own rate, nobody asked anything."""

    job: str
    state: JobState
    rate: float | None = None  # messages per second; None: the job's own setting
    who: str | None = None
    why: str | None = None
    at: datetime | None = None

    @classmethod
    def default(cls, job: str) -> JobControl:
        return cls(check_job_name(job), JobState.RUN)


@dataclass(frozen=True, slots=True)
class JobReport:
    """What a running job last said about itself (its heartbeat): shown by `chat-migrate
    status` and the admin API. `detail` is the job's own JSON text (progress, rate, health)."""

    job: str
    kind: str
    detail: str
    at: datetime


def check_job_name(job: object) -> str:
    """A job's name: lower-case letters, digits, `_`, `.`, `-`, 1..64 characters, starting with
    a letter or digit. ValueError saying so otherwise."""
    if not isinstance(job, str) or not JOB_NAME.fullmatch(job):
        raise ValueError(
            f"a job name is 1..64 of a-z 0-9 _ . - starting with a letter or digit, got {job!r}"
        )
    return job


def check_rate(rate: object) -> float | None:
    """A rate in messages per second: a number above 0 and at most 10 million, or None (the
    job's own setting). ValueError saying so otherwise."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise ValueError(f"a rate is a number of messages per second, got {rate!r}")
    value = float(rate)
    if not 0 < value <= RATE_MAX:
        raise ValueError(f"a rate is above 0 and at most {RATE_MAX:.0f} messages/s, got {rate!r}")
    return value


def check_state(state: object) -> JobState:
    """A job state (`run`, `pause`, `panic`). ValueError naming the known ones otherwise."""
    if isinstance(state, JobState):
        return state
    if not isinstance(state, str):
        known = ", ".join(s.value for s in JobState)
        raise ValueError(f"a job state is one of {known}, got {state!r}")
    try:
        return JobState(str(state))
    except ValueError:
        known = ", ".join(s.value for s in JobState)
        raise ValueError(f"a job state is one of {known}, got {state!r}") from None


def check_change(
    state: object, rate: object, clear_rate: object
) -> tuple[JobState | None, float | None, bool]:
    """What a `set_control` asks, checked: ValueError when nothing is asked, or a rate comes
    with clear_rate. Every adapter checks with it, so they refuse the same things."""
    if not isinstance(clear_rate, bool):
        raise ValueError(f"clear_rate is True or False, got {clear_rate!r}")
    checked_state = None if state is None else check_state(state)
    checked_rate = check_rate(rate)
    if clear_rate and checked_rate is not None:
        raise ValueError("give a rate or clear it, not both")
    if checked_state is None and checked_rate is None and not clear_rate:
        raise ValueError("nothing to change: give a state, a rate, or clear the rate")
    return checked_state, checked_rate, clear_rate


def check_job_kind(kind: object) -> str:
    """What kind of job reports (`backfill`, `repair`): a-z 0-9 _, 1..32 characters, starting
    with a letter. ValueError saying so otherwise."""
    if not isinstance(kind, str) or not JOB_KIND.fullmatch(kind):
        raise ValueError(f"a job kind is 1..32 of a-z 0-9 _ starting with a letter, got {kind!r}")
    return kind


def check_report_detail(detail: object) -> str:
    """A report's detail: JSON text of at most REPORT_MAX characters (a person and `chat-migrate
    status` read it back as JSON). ValueError saying so otherwise."""
    if not isinstance(detail, str):
        raise ValueError(f"a job report's detail is JSON text, got {type(detail).__name__}")
    if len(detail) > REPORT_MAX:
        raise ValueError(
            f"a job report's detail is at most {REPORT_MAX} characters, got {len(detail)}"
        )
    try:
        json.loads(detail)
    except ValueError as exc:
        raise ValueError(f"a job report's detail is JSON text: {exc}") from None
    return detail


__all__ = [
    "JobControl",
    "JobReport",
    "JobState",
    "check_change",
    "check_job_kind",
    "check_job_name",
    "check_rate",
    "check_report_detail",
    "check_state",
    "check_who",
    "check_why",
]
