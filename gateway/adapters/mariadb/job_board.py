"""JobBoard on MariaDB: operator controls of the migrator's long jobs and their heartbeats, in
the control store's database (tables `job_controls` and `job_reports`, control_schema.py;
SQLAlchemy Core, every value a bound parameter).

How a change is made safe against concurrent writers: `set_control` is one
`INSERT ... ON DUPLICATE KEY UPDATE` that names only what is asked (the state, the rate, or
neither), so the row lock of that one statement merges two operators' changes (one pauses,
another sets the rate: both hold) and the first change of a job never collides with another
first change. A deadlock (InnoDB may pick such an upsert as a victim) rolls the statement's
transaction back, so it is tried again, up to three times. Job rows do not bump the control
store's revision and take no lock on its meta row: they route nothing, and a job's heartbeat
every second must not queue behind phase moves.

Times are the server's (UTC_TIMESTAMP(6), read with the schema version in each call). Driver
errors become ControlStoreUnavailable or ControlStoreMisconfigured (control_schema.translate);
a row this version cannot read (a state it does not know, a rate out of range, a bad name)
becomes ControlStoreMisconfigured naming its table and row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row, literal_column, select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from gateway.adapters.mariadb.control_schema import (
    META_ID,
    check_meta,
    control_meta,
    job_controls,
    job_reports,
    translate,
)
from gateway.domain.jobs import (
    JobControl,
    JobReport,
    JobState,
    check_change,
    check_job_kind,
    check_job_name,
    check_rate,
    check_report_detail,
    check_state,
    check_who,
    check_why,
)
from gateway.errors import ControlStoreMisconfigured

T = TypeVar("T")
DEADLOCK = 1213
TRIES = 3


def _misread(table: str, job: object, reason: str) -> ControlStoreMisconfigured:
    return ControlStoreMisconfigured(f"control store table {table}, job={job!r}: {reason}")


def _control(row: Row[Any]) -> JobControl:
    try:
        job = check_job_name(row.job)
    except ValueError as exc:
        raise _misread("job_controls", row.job, str(exc)) from None
    try:
        state = check_state(row.state)
    except ValueError as exc:
        raise _misread("job_controls", row.job, f"unknown state: {exc}") from None
    try:
        rate = check_rate(row.rate)
    except ValueError as exc:
        raise _misread("job_controls", row.job, str(exc)) from None
    return JobControl(job, state, rate, row.who, row.why, row.at.replace(tzinfo=UTC))


def _report(row: Row[Any]) -> JobReport:
    try:
        job, kind = check_job_name(row.job), check_job_kind(row.kind)
    except ValueError as exc:
        raise _misread("job_reports", row.job, str(exc)) from None
    return JobReport(job, kind, row.detail, row.at.replace(tzinfo=UTC))


class MariaDbJobBoard:
    """JobBoard on the control store's database. Uses `engine` (built by
    control_schema.control_engine, shared with the phase store) and does not own it: whoever
    built it disposes of it. Expects `ensure_schema` to have run; without it every call raises
    ControlStoreMisconfigured."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def control(self, job: str) -> JobControl:
        job = check_job_name(job)
        with self._transaction("job control") as conn:
            self._now(conn)
            row = conn.execute(select(job_controls).where(job_controls.c.job == job)).one_or_none()
        return JobControl.default(job) if row is None else _control(row)

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

        def change(conn: Connection) -> JobControl:
            now = self._now(conn)
            upsert = mysql_insert(job_controls).values(
                job=job, state=(state or JobState.RUN).value, rate=rate, who=who, why=why, at=now
            )
            changed: dict[str, Any] = {"who": who, "why": why, "at": now}
            if state is not None:
                changed["state"] = state.value
            if rate is not None or clear_rate:
                changed["rate"] = rate
            conn.execute(upsert.on_duplicate_key_update(**changed))
            row = conn.execute(select(job_controls).where(job_controls.c.job == job)).one()
            return _control(row)

        return self._retried("set job control", change)

    def controls(self) -> list[JobControl]:
        with self._transaction("job controls") as conn:
            self._now(conn)
            rows = conn.execute(select(job_controls).order_by(job_controls.c.job)).all()
        return [_control(row) for row in rows]

    def report(self, job: str, kind: str, detail: str) -> None:
        job, kind, detail = check_job_name(job), check_job_kind(kind), check_report_detail(detail)

        def write(conn: Connection) -> None:
            now = self._now(conn)
            upsert = mysql_insert(job_reports).values(job=job, kind=kind, detail=detail, at=now)
            conn.execute(upsert.on_duplicate_key_update(kind=kind, detail=detail, at=now))

        self._retried("job report", write)

    def reports(self) -> list[JobReport]:
        with self._transaction("job reports") as conn:
            self._now(conn)
            rows = conn.execute(select(job_reports).order_by(job_reports.c.job)).all()
        return [_report(row) for row in rows]

    # -- the parts -----------------------------------------------------------------------

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[Connection]:
        """One transaction (READ COMMITTED), committed when the block ends; the driver's
        errors translated."""
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise translate(exc, doing) from exc

    def _retried(self, doing: str, work: Callable[[Connection], T]) -> T:
        """`work` in one transaction, tried again when InnoDB chose it as a deadlock's victim
        (its transaction was rolled back whole: nothing of it holds)."""
        for attempt in range(1, TRIES + 1):
            try:
                with self._engine.connect() as conn, conn.begin():
                    return work(conn)
            except DBAPIError as exc:
                orig_args = getattr(exc.orig, "args", ())
                if attempt < TRIES and orig_args and orig_args[0] == DEADLOCK:
                    continue
                raise translate(exc, doing) from exc
            except SQLAlchemyError as exc:
                raise translate(exc, doing) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _now(self, conn: Connection) -> datetime:
        """The server's time now (naive UTC, as stored), after checking that the schema is
        this version's."""
        row = conn.execute(
            select(control_meta.c.schema_version, literal_column("UTC_TIMESTAMP(6)")).where(
                control_meta.c.id == META_ID
            )
        ).one_or_none()
        check_meta(None if row is None else tuple(row))
        assert row is not None
        value: datetime = row[1]
        return value
