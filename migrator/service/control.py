"""How a running job obeys its operator controls (issue 13 item 1: change the rate while it
runs, pause / resume, panic), and says how it is doing (its heartbeat). The controls live in
the control store's job board (`gateway.ports.JobBoard`, `gateway/domain/jobs.py`), written by
`chat-migrate job ...` and the admin API's `PUT /admin/jobs/{job}`.

The interface a job uses (backfill, repair):

    controls = JobControls(board, job="backfill", kind="backfill", who=settings.ops.who)
    while work:
        override = await controls.checkpoint()   # between units of work (one append)
        rate = override if override is not None else settings.backfill.rate
        ...one unit of work, paced by `rate`...
        await controls.heartbeat({"rooms_done": 3, "sent": 120_000, "rate": rate})
    await controls.heartbeat({...}, force=True)  # the last word, whatever the time

- `checkpoint()` returns the operator's rate override (messages per second) or None (the job's
  own rate). It reads the control at most every `poll_s` seconds (between reads it answers from
  the last one without awaiting anything), off the event loop's thread (`asyncio.to_thread`:
  the board is synchronous). On `pause` it does not return until the control is `run` again:
  it re-reads every `poll_s`, logs once that the job is paused, by whom and why, and once that
  it resumed; meanwhile it keeps the heartbeat going with the last detail, marked paused. On
  `panic` (also while paused) it raises `migrator.errors.PanicStop`, whose message says who
  pressed it, when, why, that the checkpoint is kept and how to resume (set the control back
  to run, then run the command again): the CLI exits 5. Nothing more must be sent after it.
- `heartbeat(detail, force=False)` writes the job's report (`{"who", "obeys", "detail"}` as
  JSON: who runs it, the control it obeys now, and the job's own `detail`) at most every
  `poll_s` (`force`: now). A heartbeat that cannot be written is logged and dropped: a report
  is for people to read, never a reason to stop work. A `detail` that is not JSON-ready or too
  long (60 000 characters) is the job's bug: ValueError.
- `control` is the last control read (None before the first).

When the control store cannot be read (ControlStoreUnavailable) — the choice, and why:

- before the first read, the exception goes up (the job has not started: exit 4, run again):
  a job must not start without knowing whether an operator paused or panicked it beforehand;
- afterwards, the job goes on obeying the last control it read, for at most `blind_s` seconds
  (default 30: a MariaDB restart or fail-over), and logs once that it does so (and once when
  it can read again);
- past `blind_s` without a successful read it holds, as if paused (sends nothing more,
  re-reads every `poll_s`, logged once): a job nobody can pause or panic must not run on. It
  goes on by itself when the store answers again (no restart needed, nothing lost: the job
  is between two units of work). The job's checkpoint is in the same database, so in practice
  its own next save fails first and stops it with exit 4.

ControlStoreMisconfigured (the store holds what this version cannot read) always goes up: an
operator must act (exit 3).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from gateway.domain.jobs import (
    JobControl,
    JobState,
    check_job_kind,
    check_job_name,
    check_report_detail,
    check_who,
)
from gateway.errors import ControlStoreUnavailable
from gateway.ports import JobBoard
from migrator.errors import PanicStop

DEFAULT_POLL_S = 1.0
DEFAULT_BLIND_S = 30.0


def _when(at: datetime | None) -> str:
    return "at an unknown time" if at is None else f"at {at.isoformat(timespec='seconds')}"


def panic_message(control: JobControl) -> str:
    """What an operator reads when the job stops on panic: who, when, why, what is kept, and
    how to go on."""
    return (
        f"job {control.job} stopped: panic pressed by {control.who or 'someone unknown'} "
        f"{_when(control.at)} ({control.why or 'no reason given'}); nothing more is sent and its "
        "checkpoint is kept. To resume: set its control back to run (`chat-migrate job resume "
        f"{control.job} --why ...` or PUT /admin/jobs/{control.job} with "
        '{"state": "run", ...}), then run the command again: it goes on from its checkpoint'
    )


class JobControls:
    """What a running job consults between units of work (module docstring: the interface).
    One per job run; used from one task (not safe to share between concurrent tasks)."""

    def __init__(
        self,
        board: JobBoard,
        job: str,
        kind: str,
        who: str,
        *,
        poll_s: float = DEFAULT_POLL_S,
        blind_s: float = DEFAULT_BLIND_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        log: logging.Logger | None = None,
    ) -> None:
        if not poll_s > 0 or not blind_s >= poll_s:
            raise ValueError(f"poll_s > 0 and blind_s >= poll_s, got {poll_s!r}, {blind_s!r}")
        self._board = board
        self.job = check_job_name(job)
        self.kind = check_job_kind(kind)
        self.who = check_who(who)
        self._poll_s = poll_s
        self._blind_s = blind_s
        self._clock = clock
        self._sleep = sleep
        self._log = log or logging.getLogger("migrator.control")
        self._control: JobControl | None = None
        self._read_at: float | None = None  # when the control was last read (tried)
        self._seen_at: float | None = None  # when it was last read successfully
        self._blind_logged = False
        self._detail: dict[str, Any] | None = None
        self._reported_at: float | None = None
        self._report_failing = False

    @property
    def control(self) -> JobControl | None:
        """The last control read; None before the first read."""
        return self._control

    async def checkpoint(self) -> float | None:
        """The rate override to use now (None: the job's own rate); waits while paused (or
        blind too long); raises PanicStop on panic. See the module docstring."""
        control = await self._refresh()
        if control.state is JobState.RUN and not self._too_blind():
            return control.rate
        return await self._hold()

    async def heartbeat(self, detail: Mapping[str, Any], *, force: bool = False) -> None:
        """Writes the job's report (at most every poll_s unless `force`); a store that cannot
        be reached is logged, never raised. ValueError for a detail that is not JSON-ready or
        too long: the job's bug shows at once, not at the next write."""
        previous, self._detail = self._detail, dict(detail)
        try:
            check_report_detail(self._report_text())
        except (TypeError, ValueError) as exc:
            self._detail = previous
            raise ValueError(f"job {self.job}: a heartbeat's detail: {exc}") from None
        now = self._clock()
        if force or self._reported_at is None or now - self._reported_at >= self._poll_s:
            await self._write_report(now)

    # -- the parts -----------------------------------------------------------------------

    async def _refresh(self) -> JobControl:
        now = self._clock()
        fresh = self._read_at is not None and now - self._read_at < self._poll_s
        if self._control is not None and fresh:
            return self._control
        self._read_at = now
        try:
            control = await asyncio.to_thread(self._board.control, self.job)
        except ControlStoreUnavailable as exc:
            if self._control is None:
                raise
            if not self._blind_logged:
                self._blind_logged = True
                self._log.warning(
                    f"job {self.job}: its control cannot be read ({exc}); obeying the last one "
                    f"read ({self._control.state.value}) for at most {self._blind_s:g} s, then "
                    "holding until it can be read",
                    extra={"job": self.job, "state": self._control.state.value},
                )
            return self._control
        if self._blind_logged:
            self._blind_logged = False
            self._log.warning(
                f"job {self.job}: its control can be read again",
                extra={"job": self.job, "state": control.state.value},
            )
        self._seen_at = now
        if self._control is not None and control != self._control:
            self._log.info(
                f"job {self.job}: control changed to {control.state.value}, rate "
                f"{'its own' if control.rate is None else f'{control.rate:g}/s'}, by "
                f"{control.who} ({control.why})",
                extra={"job": self.job, "state": control.state.value, "rate": control.rate},
            )
        self._control = control
        return control

    def _too_blind(self) -> bool:
        return self._seen_at is not None and self._clock() - self._seen_at > self._blind_s

    async def _hold(self) -> float | None:
        """Waits while paused or blind too long, re-reading every poll_s; raises on panic."""
        said = ""
        while True:
            control = self._control
            assert control is not None
            if control.state is JobState.PANIC:
                self._log.error(panic_message(control), extra={"job": self.job})
                try:  # the board shows that the job obeyed; the panic stops it either way
                    await self._write_report(self._clock())
                except Exception as exc:
                    raise PanicStop(panic_message(control)) from exc
                raise PanicStop(panic_message(control))
            blind = self._too_blind()
            if control.state is JobState.RUN and not blind:
                if said:
                    self._log.warning(
                        f"job {self.job}: goes on (control run, set by "
                        f"{control.who or 'nobody'} {_when(control.at)})",
                        extra={"job": self.job},
                    )
                return control.rate
            why = "blind" if blind else f"paused:{control.who}:{control.at}"
            if why != said:
                said = why
                if blind:
                    text = (
                        f"job {self.job}: holding: its control has not been read for more "
                        f"than {self._blind_s:g} s (nobody could pause or panic it)"
                    )
                else:
                    text = (
                        f"job {self.job}: paused by {control.who or 'someone unknown'} "
                        f"{_when(control.at)} ({control.why or 'no reason given'}); waiting: "
                        f"`chat-migrate job resume {self.job} --why ...` lets it go on"
                    )
                self._log.warning(text, extra={"job": self.job, "state": control.state.value})
            now = self._clock()
            if self._reported_at is None or now - self._reported_at >= self._poll_s:
                await self._write_report(now)
            await self._sleep(self._poll_s)
            await self._refresh()

    def _report_text(self) -> str:
        control = self._control
        obeys = None
        if control is not None:
            obeys = {"state": control.state.value, "rate": control.rate, "blind": self._too_blind()}
        report = {"who": self.who, "obeys": obeys, "detail": self._detail}
        return json.dumps(report, ensure_ascii=False, allow_nan=False)

    async def _write_report(self, now: float) -> None:
        self._reported_at = now
        text = self._report_text()
        try:
            await asyncio.to_thread(self._board.report, self.job, self.kind, text)
        except ControlStoreUnavailable as exc:
            if not self._report_failing:
                self._report_failing = True
                self._log.warning(
                    f"job {self.job}: heartbeat not written ({exc}); the work goes on, later "
                    "heartbeats are tried as usual",
                    extra={"job": self.job},
                )
            return
        if self._report_failing:
            self._report_failing = False
            self._log.warning(f"job {self.job}: heartbeat written again", extra={"job": self.job})
