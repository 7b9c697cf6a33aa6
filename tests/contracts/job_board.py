"""The JobBoard contract: one suite, run unchanged against every adapter of the port.

A subclass provides the `board` fixture: an empty board (no job ever controlled or reported).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.domain.jobs import REPORT_MAX, JobControl, JobState
from gateway.ports import JobBoard
from tests.contracts.phase_store import near_now, run_in_threads

RUN, PAUSE, PANIC = JobState.RUN, JobState.PAUSE, JobState.PANIC
WHO = "ops:alice"

BAD_NAMES: list[object] = ["", "Backfill", "-x", "_x", "a b", "a/b", "x" * 65, "é", None, 7]
BAD_RATES: list[object] = [0, -1, -0.5, "abc", "10", math.nan, math.inf, True, 10_000_001]
BAD_STATES: list[object] = ["stop", "RUN", "", "paused", 1]
BAD_WHO: list[object] = ["", "a\nb", "x" * 101, None]
BAD_WHY: list[object] = ["", "x" * 1001, None]


class JobBoardContract:
    @pytest.fixture
    def board(self) -> Iterator[JobBoard]:
        raise NotImplementedError

    # -- controls ------------------------------------------------------------------------

    def test_a_job_never_controlled_runs_at_its_own_rate(self, board: JobBoard) -> None:
        assert board.control("backfill") == JobControl.default("backfill")
        assert board.control("backfill") == JobControl("backfill", RUN)
        assert board.controls() == []
        assert board.reports() == []

    def test_pause_and_resume_record_who_why_and_when(self, board: JobBoard) -> None:
        paused = board.set_control("backfill", WHO, "monolith slow", state=PAUSE)
        assert (paused.job, paused.state, paused.rate) == ("backfill", PAUSE, None)
        assert (paused.who, paused.why) == (WHO, "monolith slow")
        assert near_now(paused.at)
        assert board.control("backfill") == paused
        resumed = board.set_control("backfill", "ops:bob", "better now", state=RUN)
        assert (resumed.state, resumed.who, resumed.why) == (RUN, "ops:bob", "better now")
        assert paused.at is not None and resumed.at is not None and resumed.at >= paused.at
        assert board.control("backfill") == resumed
        assert board.controls() == [resumed]

    def test_a_state_given_as_text_is_taken(self, board: JobBoard) -> None:
        control = board.set_control("repair", WHO, "stop it", state="panic")  # type: ignore[arg-type]
        assert control.state is PANIC and board.control("repair").state is PANIC

    def test_a_rate_keeps_the_state_and_a_state_keeps_the_rate(self, board: JobBoard) -> None:
        board.set_control("backfill", WHO, "hold", state=PAUSE)
        rated = board.set_control("backfill", WHO, "slower", rate=250)
        assert (rated.state, rated.rate) == (PAUSE, 250.0)
        resumed = board.set_control("backfill", WHO, "go", state=RUN)
        assert (resumed.state, resumed.rate) == (RUN, 250.0)
        both = board.set_control("backfill", WHO, "both", state=PAUSE, rate=0.5)
        assert (both.state, both.rate) == (PAUSE, 0.5)
        assert board.control("backfill") == both

    def test_clearing_the_rate_goes_back_to_the_jobs_own(self, board: JobBoard) -> None:
        board.set_control("backfill", WHO, "slower", rate=100, state=PAUSE)
        cleared = board.set_control("backfill", WHO, "own rate", clear_rate=True)
        assert (cleared.state, cleared.rate) == (PAUSE, None)
        assert board.control("backfill") == cleared
        again = board.set_control("backfill", WHO, "clear again", clear_rate=True)
        assert (again.rate, again.why) == (None, "clear again")

    @pytest.mark.parametrize("rate", [0.001, 1, 1234.5678, 10_000_000])
    def test_a_rate_reads_back_as_set(self, board: JobBoard, rate: float) -> None:
        board.set_control("backfill", WHO, "rate", rate=rate)
        control = board.control("backfill")
        assert control.rate == float(rate) and isinstance(control.rate, float)

    def test_controlling_a_job_before_it_starts_is_allowed(self, board: JobBoard) -> None:
        board.set_control("backfill.night-2", WHO, "not tonight", state=PAUSE)
        assert board.control("backfill.night-2").state is PAUSE
        assert board.reports() == []

    def test_every_controlled_job_is_listed_once_by_name(self, board: JobBoard) -> None:
        for job in ["repair", "backfill", "backfill-b", "backfill"]:
            board.set_control(job, WHO, "list", state=PAUSE)
        listed = board.controls()
        assert [c.job for c in listed] == ["backfill", "backfill-b", "repair"]
        assert listed == [board.control(job) for job in ["backfill", "backfill-b", "repair"]]

    def test_long_who_and_why_and_non_ascii_are_kept(self, board: JobBoard) -> None:
        who, why = "運用:" + "a" * 97, "監視で遅延 🐢 " + "x" * 990
        control = board.set_control("backfill", who, why, state=PAUSE)
        assert (control.who, control.why) == (who, why)
        assert board.control("backfill") == control

    # -- bad input: a ValueError, nothing changed ----------------------------------------

    def changes_nothing(self, board: JobBoard, *calls: Any) -> None:
        before = board.set_control("backfill", WHO, "before", state=PAUSE, rate=10)
        listed = board.controls()
        for call in calls:
            with pytest.raises(ValueError):
                call()
        assert board.control("backfill") == before
        assert board.controls() == listed

    @pytest.mark.parametrize("job", BAD_NAMES)
    def test_a_bad_job_name_is_refused(self, board: JobBoard, job: Any) -> None:
        self.changes_nothing(
            board,
            lambda: board.set_control(job, WHO, "bad", state=PAUSE),
            lambda: board.control(job),
            lambda: board.report(job, "backfill", "{}"),
        )
        assert board.reports() == []

    @pytest.mark.parametrize("rate", BAD_RATES)
    def test_a_bad_rate_is_refused(self, board: JobBoard, rate: Any) -> None:
        self.changes_nothing(
            board,
            lambda: board.set_control("backfill", WHO, "bad", rate=rate),
            lambda: board.set_control("backfill", WHO, "bad", state=RUN, rate=rate),
        )

    @pytest.mark.parametrize("state", BAD_STATES)
    def test_a_bad_state_is_refused(self, board: JobBoard, state: Any) -> None:
        self.changes_nothing(
            board,
            lambda: board.set_control("backfill", WHO, "bad", state=state),
            lambda: board.set_control("backfill", WHO, "bad", state=state, rate=5),
        )

    @pytest.mark.parametrize("who", BAD_WHO)
    def test_a_bad_who_is_refused(self, board: JobBoard, who: Any) -> None:
        self.changes_nothing(board, lambda: board.set_control("backfill", who, "x", state=RUN))

    @pytest.mark.parametrize("why", BAD_WHY)
    def test_a_bad_why_is_refused(self, board: JobBoard, why: Any) -> None:
        self.changes_nothing(board, lambda: board.set_control("backfill", WHO, why, state=RUN))

    def test_nothing_asked_or_a_rate_with_its_clearing_is_refused(self, board: JobBoard) -> None:
        self.changes_nothing(
            board,
            lambda: board.set_control("backfill", WHO, "nothing"),
            lambda: board.set_control("backfill", WHO, "both", rate=5, clear_rate=True),
            lambda: board.set_control("backfill", WHO, "odd", clear_rate=1),  # type: ignore[arg-type]
            lambda: board.set_control("fresh-job", WHO, "nothing"),
        )
        assert board.control("fresh-job") == JobControl.default("fresh-job")

    # -- reports -------------------------------------------------------------------------

    def test_a_report_replaces_the_last_one(self, board: JobBoard) -> None:
        board.report("backfill", "backfill", json.dumps({"sent": 10}))
        first = board.reports()
        assert [(r.job, r.kind, json.loads(r.detail)) for r in first] == [
            ("backfill", "backfill", {"sent": 10})
        ]
        assert near_now(first[0].at)
        board.report("backfill", "backfill", json.dumps({"sent": 20, "room": "十"}))
        (second,) = board.reports()
        assert json.loads(second.detail) == {"sent": 20, "room": "十"}
        assert second.at >= first[0].at

    def test_reports_are_listed_by_name_and_change_no_control(self, board: JobBoard) -> None:
        board.set_control("repair", WHO, "hold", state=PAUSE)
        held = board.control("repair")
        for job, kind in [("repair", "repair"), ("backfill", "backfill"), ("b2", "backfill")]:
            board.report(job, kind, "{}")
        assert [(r.job, r.kind) for r in board.reports()] == [
            ("b2", "backfill"), ("backfill", "backfill"), ("repair", "repair"),
        ]  # fmt: skip
        assert board.control("repair") == held
        assert board.controls() == [held]
        board.set_control("backfill", WHO, "go", state=RUN)
        assert [r.job for r in board.reports()] == ["b2", "backfill", "repair"]

    def test_the_longest_detail_is_kept_whole_in_any_script(self, board: JobBoard) -> None:
        detail = json.dumps("進捗🐢" * ((REPORT_MAX - 2) // 3), ensure_ascii=False)
        assert len(detail) <= REPORT_MAX
        board.report("backfill", "backfill", detail)
        assert board.reports()[0].detail == detail

    @pytest.mark.parametrize(
        ("kind", "detail"),
        [("", "{}"), ("Backfill", "{}"), ("9x", "{}"), ("x" * 33, "{}"), (None, "{}"),
         ("backfill", "not json"), ("backfill", "{"), ("backfill", ""), ("backfill", None),
         ("backfill", json.dumps("x" * REPORT_MAX))],
    )  # fmt: skip
    def test_a_bad_report_is_refused(self, board: JobBoard, kind: Any, detail: Any) -> None:
        board.report("backfill", "backfill", '{"sent": 1}')
        before = board.reports()
        with pytest.raises(ValueError):
            board.report("backfill", kind, detail)
        assert board.reports() == before

    # -- concurrency ---------------------------------------------------------------------

    def test_concurrent_writers_never_lose_each_others_part(self, board: JobBoard) -> None:
        """One operator pauses while another sets the rate, on a job never controlled (both
        may create it) and on one already controlled: the job ends paused at that rate."""
        for round_ in range(10):
            job = f"job-{round_}"
            if round_ % 2:
                board.set_control(job, WHO, "exists", state=RUN)

            def pause(job: str = job) -> None:
                board.set_control(job, "ops:a", "pause", state=PAUSE)

            def slow(job: str = job) -> None:
                board.set_control(job, "ops:b", "rate", rate=77)

            def beat(job: str = job) -> None:
                board.report(job, "backfill", "{}")

            run_in_threads(pause, slow, beat)
            control = board.control(job)
            assert (control.state, control.rate) == (PAUSE, 77.0), job
        assert len(board.controls()) == 10 and len(board.reports()) == 10
