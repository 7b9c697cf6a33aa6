"""The MariaDB job board holds the JobBoard contract on the real MariaDB; a control database
made before the job tables gets them from ensure_schema; rows this version cannot read are
refused naming the table and the row.

One scratch control database for the module, emptied before each test; dropped at the end.
MariaDB missing is a failure, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert, text, update

from gateway.adapters.mariadb.control_schema import (
    SCHEMA_VERSION,
    control_engine,
    control_meta,
    ensure_schema,
    job_controls,
    metadata,
)
from gateway.adapters.mariadb.job_board import MariaDbJobBoard
from gateway.adapters.mariadb.phase_store import MariaDbPhaseStore
from gateway.domain.jobs import JobState
from gateway.domain.phases import Phase
from gateway.errors import ControlStoreMisconfigured, ControlStoreUnavailable
from gateway.ports import JobBoard
from legacy_adapters.settings import LegacyDatabaseSettings
from tests.contracts.job_board import WHO, JobBoardContract
from tests.contracts.phase_store import fresh_room
from tests.support.control_db import scratch_control_database
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def control_db(stack: Stack) -> Iterator[tuple[LegacyDatabaseSettings, str]]:
    with scratch_control_database(stack) as found:
        yield found


@pytest.fixture
def control(control_db: tuple[LegacyDatabaseSettings, str]) -> Iterator[Engine]:
    """An engine on the scratch control database, emptied and its schema ensured anew."""
    server, name = control_db
    engine = control_engine(server, name)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            conn.execute(text(f"TRUNCATE TABLE `{table.name}`"))
    ensure_schema(engine)
    yield engine
    engine.dispose()


class TestMariaDbJobBoard(JobBoardContract):
    @pytest.fixture
    def board(self, control: Engine) -> Iterator[JobBoard]:
        yield MariaDbJobBoard(control)


def test_a_control_database_made_without_the_job_tables_gets_them(control: Engine) -> None:
    """A control store created by the version before the job board: ensure_schema adds the
    two tables and keeps what is recorded (phases, the revision)."""
    phases = MariaDbPhaseStore(control)
    room = fresh_room()
    phases.move([room], Phase.DUAL_WRITE, WHO, "before the job board")
    revision = phases.revision()
    with control.begin() as conn:
        conn.execute(text("DROP TABLE job_controls"))
        conn.execute(text("DROP TABLE job_reports"))
    board = MariaDbJobBoard(control)
    with pytest.raises(ControlStoreMisconfigured, match="job_controls' doesn't exist"):
        board.control("backfill")
    ensure_schema(control)
    ensure_schema(control)
    assert board.set_control("backfill", WHO, "hold", state=JobState.PAUSE).state is JobState.PAUSE
    board.report("backfill", "backfill", "{}")
    assert [r.job for r in board.reports()] == ["backfill"]
    assert phases.room(room).phase is Phase.DUAL_WRITE
    assert phases.revision() == revision  # job rows bump no revision


def test_a_job_change_does_not_bump_the_revision(control: Engine) -> None:
    phases, board = MariaDbPhaseStore(control), MariaDbJobBoard(control)
    revision = phases.revision()
    board.set_control("backfill", WHO, "hold", state=JobState.PAUSE)
    board.report("backfill", "backfill", '{"sent": 1}')
    assert phases.revision() == revision


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("state", "stop", "unknown state"), ("rate", 0.0, "a rate is above 0"),
     ("rate", -5.0, "a rate is above 0"), ("job", "Bad Name", "a job name")],
)  # fmt: skip
def test_a_control_row_written_by_hand_that_cannot_be_read_names_its_row(
    control: Engine, column: str, value: object, reason: str
) -> None:
    board = MariaDbJobBoard(control)
    board.set_control("backfill", WHO, "hold", state=JobState.PAUSE)
    board.set_control("other", WHO, "hold", state=JobState.PAUSE)
    with control.begin() as conn:
        conn.execute(update(job_controls).where(job_controls.c.job == "backfill")
                     .values({column: value}))  # fmt: skip
    job = "backfill" if column != "job" else "Bad Name"
    with pytest.raises(
        ControlStoreMisconfigured, match=f"table job_controls, job='{job}': {reason}"
    ):
        board.controls()
    if column != "job":
        with pytest.raises(ControlStoreMisconfigured, match="table job_controls, job='backfill'"):
            board.control("backfill")
        # A change that leaves the bad part in place is refused, and rolled back.
        keeps_it = {"state": {"rate": 5.0}, "rate": {"state": JobState.RUN}}[column]
        with pytest.raises(ControlStoreMisconfigured, match="table job_controls, job='backfill'"):
            board.set_control("backfill", WHO, "again", **keeps_it)  # type: ignore[arg-type]
        with control.connect() as conn:
            row = conn.execute(text("SELECT state, why FROM job_controls WHERE job = 'backfill'"))
            assert tuple(row.one()) == ("stop" if column == "state" else "pause", "hold")
        # An operator repairs the row by setting what was bad.
        repair = {"state": {"state": JobState.RUN}, "rate": {"clear_rate": True}}[column]
        board.set_control("backfill", WHO, "repair", **repair)  # type: ignore[arg-type]
        assert board.control("backfill").why == "repair"
    assert board.control("other").state is JobState.PAUSE  # other jobs still read


def test_a_report_row_of_an_unknown_kind_names_its_row(control: Engine) -> None:
    board = MariaDbJobBoard(control)
    with control.begin() as conn:
        conn.execute(text(
            "INSERT INTO job_reports (job, kind, detail, at) "
            "VALUES ('backfill', 'Back Fill', '{}', UTC_TIMESTAMP(6))"
        ))  # fmt: skip
    with pytest.raises(ControlStoreMisconfigured, match="table job_reports, job='backfill'"):
        board.reports()


def test_a_schema_of_another_version_is_misconfigured(control: Engine) -> None:
    board = MariaDbJobBoard(control)
    with control.begin() as conn:
        conn.execute(update(control_meta).values(schema_version=SCHEMA_VERSION + 1))
    message = f"table control_meta, row id=1: schema version {SCHEMA_VERSION + 1}"
    for call in (lambda: board.control("backfill"), board.controls, board.reports,
                 lambda: board.set_control("backfill", WHO, "x", state=JobState.PAUSE),
                 lambda: board.report("backfill", "backfill", "{}")):  # fmt: skip
        with pytest.raises(ControlStoreMisconfigured, match=message):
            call()
    with control.begin() as conn:
        conn.execute(update(control_meta).values(schema_version=SCHEMA_VERSION))
        assert conn.execute(text("SELECT COUNT(*) FROM job_controls")).scalar_one() == 0


def test_a_missing_database_is_misconfigured(
    control_db: tuple[LegacyDatabaseSettings, str],
) -> None:
    server, name = control_db
    engine = control_engine(server, f"{name}_never_made")
    try:
        with pytest.raises(ControlStoreMisconfigured, match="Unknown database"):
            MariaDbJobBoard(engine).control("backfill")
    finally:
        engine.dispose()


def test_an_unreachable_server_is_unavailable(
    control_db: tuple[LegacyDatabaseSettings, str],
) -> None:
    server, name = control_db
    engine = control_engine(server.model_copy(update={"mariadb_port": 1}), name)
    board = MariaDbJobBoard(engine)
    try:
        with pytest.raises(ControlStoreUnavailable, match="control store, job control"):
            board.control("backfill")
        with pytest.raises(ControlStoreUnavailable, match="control store, set job control"):
            board.set_control("backfill", WHO, "down", state=JobState.PAUSE)
        with pytest.raises(ControlStoreUnavailable, match="control store, job report"):
            board.report("backfill", "backfill", "{}")
    finally:
        engine.dispose()


def test_a_second_board_on_the_same_database_sees_every_change(
    control_db: tuple[LegacyDatabaseSettings, str], control: Engine
) -> None:
    """The CLI pauses on one connection, the running job reads it on its own."""
    server, name = control_db
    other_engine = control_engine(server, name)
    try:
        one, other = MariaDbJobBoard(control), MariaDbJobBoard(other_engine)
        set_ = one.set_control("backfill", WHO, "hold", state=JobState.PAUSE, rate=12.5)
        assert other.control("backfill") == set_
        other.report("backfill", "backfill", '{"paused": true}')
        assert one.reports() == other.reports()
    finally:
        other_engine.dispose()


def test_the_rows_are_plain_to_read_by_hand(control: Engine) -> None:
    """An operator reading the table with the mysql client sees the state as text."""
    board = MariaDbJobBoard(control)
    board.set_control("backfill", WHO, "hold", state=JobState.PANIC, rate=3)
    with control.connect() as conn:
        row = conn.execute(text("SELECT state, rate, who FROM job_controls")).one()
    assert tuple(row) == ("panic", 3.0, WHO)
    with control.begin() as conn:
        conn.execute(insert(job_controls).values(
            job="hand-made", state="run", rate=None, who="dba", why="by hand",
            at=text("UTC_TIMESTAMP(6)"),
        ))  # fmt: skip
    assert board.control("hand-made").who == "dba"
