"""A running job obeys its operator controls (issue 13 item 1): the rate it is given, pause
until resumed, panic at once with who and why; reads at most every poll_s off the event loop's
thread; a control store down for a moment does not stop it, one down too long holds it."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from gateway.adapters.embedded.memory_job_board import MemoryJobBoard
from gateway.domain.jobs import JobControl, JobReport, JobState
from gateway.errors import ControlStoreMisconfigured, ControlStoreUnavailable
from migrator.errors import PanicStop
from migrator.service.control import JobControls

RUN, PAUSE, PANIC = JobState.RUN, JobState.PAUSE, JobState.PANIC
JOB = "backfill"
T = TypeVar("T")


class Board(MemoryJobBoard):
    """The memory board, counting reads, noting the thread of each call, and going down on
    demand."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.down = False
        self.broken = False
        self.threads: set[int] = set()

    def _enter(self) -> None:
        self.threads.add(threading.get_ident())
        if self.broken:
            raise ControlStoreMisconfigured("control store table job_controls: unknown state")
        if self.down:
            raise ControlStoreUnavailable("control store, control: connection refused")

    def control(self, job: str) -> JobControl:
        self._enter()
        self.reads += 1
        return super().control(job)

    def report(self, job: str, kind: str, detail: str) -> None:
        self._enter()
        super().report(job, kind, detail)


class FakeTime:
    """A clock that only moves when the job sleeps; `at(t, action)` runs an operator's action
    once the clock reaches t."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self._actions: list[tuple[float, Callable[[], object]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        due = [a for a in self._actions if a[0] <= self.now]
        self._actions = [a for a in self._actions if a[0] > self.now]
        for _, action in due:
            action()
        if self.now > 3600:
            raise AssertionError("the job waited an hour: it never went on")

    def at(self, t: float, action: Callable[[], object]) -> None:
        self._actions.append((t, action))


@pytest.fixture
def board() -> Board:
    return Board()


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


def controls(board: Board, time_: FakeTime, **kwargs: Any) -> JobControls:
    return JobControls(
        board, JOB, "backfill", "ops:runner", clock=time_.clock, sleep=time_.sleep, **kwargs
    )


def run(awaitable: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(awaitable)


def last_report(board: Board) -> dict[str, Any]:
    reports: list[JobReport] = board.reports()
    assert len(reports) == 1 and reports[0].kind == "backfill"
    return dict(json.loads(reports[0].detail))


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "migrator.control"]


# -- run and rate ----------------------------------------------------------------------------


def test_a_job_never_controlled_runs_at_its_own_rate(board: Board, time_: FakeTime) -> None:
    job = controls(board, time_)
    assert job.control is None
    assert run(job.checkpoint()) is None
    assert job.control == JobControl.default(JOB)
    assert time_.slept == []


def test_the_control_is_read_at_most_every_poll_s(board: Board, time_: FakeTime) -> None:
    job = controls(board, time_, poll_s=1.0)

    async def units() -> list[float | None]:
        seen = []
        for unit in range(12):  # 12 units of work, 0.25 s each: 0.0 .. 2.75
            if unit == 5:  # at 1.25, after the read at 1.0
                board.set_control(JOB, "ops:alice", "slower", rate=250)
            seen.append(await job.checkpoint())
            time_.now += 0.25
        return seen

    seen = run(units())
    assert board.reads == 3  # at 0.0, 1.0 and 2.0
    assert seen == [None] * 8 + [250.0] * 4  # seen from the read at 2.0 on
    assert time_.slept == []


def test_a_rate_change_is_obeyed_and_cleared_back(board: Board, time_: FakeTime) -> None:
    job = controls(board, time_, poll_s=1.0)
    assert run(job.checkpoint()) is None
    board.set_control(JOB, "ops:alice", "monolith busy", rate=500)
    assert run(job.checkpoint()) is None  # within poll_s: the last read holds
    time_.now += 1.0
    assert run(job.checkpoint()) == 500.0
    board.set_control(JOB, "ops:alice", "fine again", clear_rate=True)
    time_.now += 1.0
    assert run(job.checkpoint()) is None


def test_the_board_is_read_off_the_event_loops_thread(board: Board, time_: FakeTime) -> None:
    job = controls(board, time_)

    async def main() -> int:
        await job.checkpoint()
        await job.heartbeat({"sent": 1})
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert board.threads and loop_thread not in board.threads


# -- pause and resume ------------------------------------------------------------------------


def test_pause_waits_until_resumed_and_says_so_once(
    board: Board, time_: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "migrator.control")
    job = controls(board, time_, poll_s=1.0)
    run(job.heartbeat({"sent": 10}))
    board.set_control(JOB, "ops:alice", "monolith slow", state=PAUSE, rate=100)
    time_.at(3.5, lambda: snapshot.append(last_report(board)))
    time_.at(7.0, lambda: board.set_control(JOB, "ops:bob", "better", state=RUN))
    snapshot: list[dict[str, Any]] = []
    assert run(job.checkpoint()) == 100.0
    assert time_.now == 7.0 and set(time_.slept) == {1.0}
    paused = [m for m in messages(caplog) if "paused by ops:alice" in m]
    assert len(paused) == 1 and "monolith slow" in paused[0] and "job resume backfill" in paused[0]
    assert sum("job backfill: goes on" in m for m in messages(caplog)) == 1
    # The heartbeat went on while paused, with the last detail, marked paused.
    assert snapshot[0]["obeys"]["state"] == "pause"
    assert snapshot[0]["detail"] == {"sent": 10} and snapshot[0]["who"] == "ops:runner"
    assert board.reports()[0].at is not None


def test_paused_before_the_job_starts_it_does_not_start(board: Board, time_: FakeTime) -> None:
    board.set_control(JOB, "ops:alice", "not tonight", state=PAUSE)
    time_.at(2.0, lambda: board.set_control(JOB, "ops:alice", "go", state=RUN))
    job = controls(board, time_)
    assert run(job.checkpoint()) is None
    assert time_.now == 2.0


# -- panic -----------------------------------------------------------------------------------


def test_panic_stops_at_once_saying_who_why_and_how_to_resume(
    board: Board, time_: FakeTime
) -> None:
    job = controls(board, time_)
    assert run(job.checkpoint()) is None
    board.set_control(JOB, "ops:carol", "capture lag exploding", state=PANIC)
    time_.now += 1.0
    with pytest.raises(PanicStop) as stopped:
        run(job.checkpoint())
    text = str(stopped.value)
    for part in ("backfill", "ops:carol", "capture lag exploding", "checkpoint is kept",
                 "back to run", "chat-migrate job resume backfill", "PUT /admin/jobs/backfill"):  # fmt: skip
        assert part in text, part
    assert time_.slept == []
    assert last_report(board)["obeys"]["state"] == "panic"


def test_panic_while_paused_stops_too(board: Board, time_: FakeTime) -> None:
    board.set_control(JOB, "ops:alice", "hold", state=PAUSE)
    time_.at(3.0, lambda: board.set_control(JOB, "ops:bob", "abort", state=PANIC))
    with pytest.raises(PanicStop, match="ops:bob"):
        run(controls(board, time_).checkpoint())
    assert time_.now == 3.0


def test_panic_pressed_before_start_refuses_to_start(board: Board, time_: FakeTime) -> None:
    board.set_control(JOB, "ops:alice", "bad data set", state=PANIC)
    with pytest.raises(PanicStop, match="bad data set"):
        run(controls(board, time_).checkpoint())


# -- the control store down -----------------------------------------------------------------


def test_unreadable_before_the_first_read_goes_up(board: Board, time_: FakeTime) -> None:
    board.down = True
    with pytest.raises(ControlStoreUnavailable):
        run(controls(board, time_).checkpoint())


def test_misconfigured_always_goes_up(board: Board, time_: FakeTime) -> None:
    job = controls(board, time_)
    run(job.checkpoint())
    board.broken = True
    time_.now += 1.0
    with pytest.raises(ControlStoreMisconfigured):
        run(job.checkpoint())


def test_a_store_down_for_a_moment_keeps_the_last_control(
    board: Board, time_: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "migrator.control")
    board.set_control(JOB, "ops:alice", "slower", rate=50)
    job = controls(board, time_, poll_s=1.0, blind_s=10.0)
    assert run(job.checkpoint()) == 50.0
    board.down = True
    for _ in range(10):  # 10 s blind: still the last control
        time_.now += 1.0
        assert run(job.checkpoint()) == 50.0
        run(job.heartbeat({"sent": 1}))  # not written, not raised
    assert time_.slept == []
    said = messages(caplog)
    assert sum("cannot be read" in m and "obeying the last one" in m for m in said) == 1
    assert sum("heartbeat not written" in m for m in said) == 1  # once per outage
    board.down = False
    board.set_control(JOB, "ops:alice", "faster", rate=80)
    time_.now += 1.0
    assert run(job.checkpoint()) == 80.0
    assert sum("can be read again" in m for m in messages(caplog)) == 1


def test_a_store_down_too_long_holds_the_job_until_it_answers(
    board: Board, time_: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody can pause or panic a job whose control cannot be read: past blind_s it sends
    nothing more; it goes on by itself when the store answers, obeying what is set then."""
    caplog.set_level(logging.INFO, "migrator.control")
    job = controls(board, time_, poll_s=1.0, blind_s=5.0)
    assert run(job.checkpoint()) is None
    board.down = True
    time_.now = 5.0
    assert run(job.checkpoint()) is None  # 5 s: still within
    time_.now = 6.0

    def back() -> None:
        board.down = False
        board.set_control(JOB, "ops:alice", "set while it was down", rate=30)

    time_.at(20.0, back)
    assert run(job.checkpoint()) == 30.0
    assert time_.now == 20.0
    time_.now += 1.0
    run(job.heartbeat({"sent": 2}))
    assert last_report(board)["detail"] == {"sent": 2}
    said = messages(caplog)
    assert sum("holding: its control has not been read" in m for m in said) == 1
    assert sum("heartbeat not written" in m for m in said) == 1
    assert sum("heartbeat written again" in m for m in said) == 1


def test_a_panic_set_while_the_store_was_unreadable_is_obeyed_when_read(
    board: Board, time_: FakeTime
) -> None:
    job = controls(board, time_, poll_s=1.0, blind_s=5.0)
    run(job.checkpoint())
    board.down = True
    time_.now = 10.0

    def back() -> None:
        board.down = False
        board.set_control(JOB, "ops:alice", "stop it", state=PANIC)

    time_.at(15.0, back)
    with pytest.raises(PanicStop, match="stop it"):
        run(job.checkpoint())


# -- heartbeat ------------------------------------------------------------------------------


def test_the_heartbeat_is_written_at_most_every_poll_s(board: Board, time_: FakeTime) -> None:
    job = controls(board, time_, poll_s=1.0)
    run(job.checkpoint())
    run(job.heartbeat({"sent": 1}))
    first = last_report(board)
    assert first == {
        "who": "ops:runner",
        "obeys": {"state": "run", "rate": None, "blind": False},
        "detail": {"sent": 1},
    }
    time_.now = 0.5
    run(job.heartbeat({"sent": 2}))
    assert last_report(board)["detail"] == {"sent": 1}
    run(job.heartbeat({"sent": 3}, force=True))
    assert last_report(board)["detail"] == {"sent": 3}
    time_.now = 1.4
    run(job.heartbeat({"sent": 4}))
    assert last_report(board)["detail"] == {"sent": 3}  # 0.9 s after the forced one
    time_.now = 1.5
    run(job.heartbeat({"sent": 5, "room": "部屋"}))
    assert last_report(board)["detail"] == {"sent": 5, "room": "部屋"}


@pytest.mark.parametrize(
    "detail",
    [{"rooms": {1, 2}}, {"rate": float("nan")}, {"blob": "x" * 60_000}, {"when": object()}],
)
def test_a_heartbeat_detail_that_cannot_be_a_report_is_the_jobs_bug(
    board: Board, time_: FakeTime, detail: dict[str, Any]
) -> None:
    job = controls(board, time_)
    run(job.heartbeat({"sent": 1}))
    with pytest.raises(ValueError, match="heartbeat's detail"):
        run(job.heartbeat(detail, force=True))
    assert last_report(board)["detail"] == {"sent": 1}


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("Backfill", "backfill", "ops"), {}), (("backfill", "Back fill", "ops"), {}),
     (("backfill", "backfill", ""), {}), (("backfill", "backfill", "ops"), {"poll_s": 0}),
     (("backfill", "backfill", "ops"), {"poll_s": 2.0, "blind_s": 1.0})],
)  # fmt: skip
def test_bad_construction_is_refused(args: tuple[str, str, str], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JobControls(MemoryJobBoard(), *args, **kwargs)
