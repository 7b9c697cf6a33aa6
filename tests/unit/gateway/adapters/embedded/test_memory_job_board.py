"""The in-memory job board holds the JobBoard contract; its clock stamps changes and reports."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from gateway.adapters.embedded.memory_job_board import MemoryJobBoard
from gateway.domain.jobs import JobState
from gateway.ports import JobBoard
from tests.contracts.job_board import JobBoardContract


class TestMemoryJobBoard(JobBoardContract):
    @pytest.fixture
    def board(self) -> Iterator[JobBoard]:
        yield MemoryJobBoard()


def test_the_clock_stamps_each_change_and_report() -> None:
    ticks = iter(datetime(2024, 5, 1, 9, 0, s, tzinfo=UTC) for s in range(10))
    board = MemoryJobBoard(clock=lambda: next(ticks))
    paused = board.set_control("backfill", "ops", "hold", state=JobState.PAUSE)
    assert paused.at == datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
    board.report("backfill", "backfill", "{}")
    assert board.reports()[0].at == datetime(2024, 5, 1, 9, 0, 1, tzinfo=UTC)
