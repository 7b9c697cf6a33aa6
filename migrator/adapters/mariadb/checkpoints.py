"""CheckpointStore and JobLocks on MariaDB, in the control store's database (table
`migrator_checkpoints`, created by `ensure_checkpoints`, idempotent).

- A checkpoint is one row per job name: its kind, its JSON text (LONGTEXT: a backfill plan of
  many thousand rooms is hundreds of KB) and when it was saved (the server's clock). `save` is
  one upsert statement, committed before it returns (InnoDB: durable at commit), so the last
  save wins and a `kill -9` after `save` returned loses nothing.
- A job is held with MariaDB's named lock (`GET_LOCK(name, 0)`) on a connection of its own,
  kept for as long as the job runs. The server releases a named lock when its connection
  ends, so a run killed with `kill -9` never keeps its job locked (the kernel closes the
  socket, the server ends the session); no lease to expire, no clock to trust. The name is
  a digest of the control database's name and the job's (named locks are server-wide, and at
  most 64 characters). `JobLease.check` asks the server whether this connection still holds
  it: a connection lost meanwhile (a server restart) lost the lock too.

Every value is a bound parameter; driver errors become ControlStoreUnavailable or
ControlStoreMisconfigured (what an operator must fix: grants, a missing database or table, a
state larger than the server's max_allowed_packet).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    delete,
    inspect,
    select,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.expression import ColumnClause, literal_column

from gateway.ports import ControlStoreMisconfigured, ControlStoreUnavailable
from migrator.domain.backfill import JOB_KEY_MAX, KIND_MAX, check_job_key, check_kind, check_state
from migrator.errors import JobRunning

TABLE = "migrator_checkpoints"

metadata = MetaData()
checkpoints = Table(
    TABLE, metadata,
    Column("job", String(JOB_KEY_MAX), primary_key=True),
    Column("kind", String(KIND_MAX), nullable=False),
    Column("state", LONGTEXT, nullable=False),
    Column("saved_at", DATETIME(fsp=6), nullable=False),
    mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_nopad_bin",
)  # fmt: skip

# Grants, no such database, table or column, and a packet over max_allowed_packet: retrying
# cannot help.
_MISCONFIGURED_ERRNOS = frozenset({1044, 1045, 1049, 1142, 1146, 1054, 1153})


def _translate(
    exc: SQLAlchemyError, doing: str
) -> ControlStoreUnavailable | ControlStoreMisconfigured:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    detail = f"{exc.__class__.__name__}: {orig if orig is not None else exc}"
    if errno in _MISCONFIGURED_ERRNOS:
        return ControlStoreMisconfigured(
            f"control store, {TABLE}, {doing}: {detail} (is the control database there, with "
            "grants for this user, and max_allowed_packet large enough for the checkpoint?)"
        )
    return ControlStoreUnavailable(f"control store, {TABLE}, {doing}: {detail}")


def ensure_checkpoints(engine: Engine) -> None:
    """Creates `migrator_checkpoints` if missing and checks its columns. Idempotent and safe
    from several processes at once (CREATE TABLE IF NOT EXISTS). ControlStoreMisconfigured when
    the table there is another one (missing columns)."""
    try:
        with engine.begin() as conn:
            conn.execute(CreateTable(checkpoints, if_not_exists=True))
            have = {column["name"] for column in inspect(conn).get_columns(TABLE)}
    except SQLAlchemyError as exc:
        raise _translate(exc, "ensure") from exc
    missing = sorted({column.name for column in checkpoints.columns} - have)
    if missing:
        raise ControlStoreMisconfigured(
            f"control store table {TABLE}: columns {', '.join(missing)} missing (a table of "
            "another version, or made by hand)"
        )


class MariaDbCheckpointStore:
    """CheckpointStore and JobLocks over `engine` (the control store's engine, whose owner
    disposes of it). `ensure_checkpoints(engine)` must have run."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load(self, job: str) -> tuple[str, str] | None:
        job = check_job_key(job)
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(checkpoints.c.kind, checkpoints.c.state).where(checkpoints.c.job == job)
                ).one_or_none()
        except SQLAlchemyError as exc:
            raise _translate(exc, f"load {job}") from exc
        return None if row is None else (str(row[0]), str(row[1]))

    def save(self, job: str, kind: str, state: str) -> None:
        job, kind, state = check_job_key(job), check_kind(kind), check_state(state)
        now: ColumnClause[Any] = literal_column("UTC_TIMESTAMP(6)")
        statement = mysql_insert(checkpoints).values(job=job, kind=kind, state=state, saved_at=now)
        statement = statement.on_duplicate_key_update(
            kind=statement.inserted.kind, state=statement.inserted.state, saved_at=now
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(statement)
        except SQLAlchemyError as exc:
            raise _translate(exc, f"save {job}") from exc

    def delete(self, job: str) -> None:
        job = check_job_key(job)
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(checkpoints).where(checkpoints.c.job == job))
        except SQLAlchemyError as exc:
            raise _translate(exc, f"delete {job}") from exc

    def jobs(self) -> list[tuple[str, str, str]]:
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(checkpoints.c.job, checkpoints.c.kind, checkpoints.c.state).order_by(
                        checkpoints.c.job
                    )
                ).all()
        except SQLAlchemyError as exc:
            raise _translate(exc, "list") from exc
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    # -- JobLocks --------------------------------------------------------------------------

    def lock_name(self, job: str) -> str:
        """The server-wide name of the job's lock: this control database's and the job's."""
        where = f"{self._engine.url.database}/{check_job_key(job)}"
        return "chat-migrate:" + hashlib.sha256(where.encode("utf-8")).hexdigest()[:40]

    @contextmanager
    def hold(self, job: str) -> Iterator[_Lease]:
        name = self.lock_name(job)
        try:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            raise _translate(exc, f"lock {job}") from exc
        try:
            try:
                got = conn.exec_driver_sql("SELECT GET_LOCK(%s, 0)", (name,)).scalar()
                holder = (
                    None
                    if got == 1
                    else conn.exec_driver_sql("SELECT IS_USED_LOCK(%s)", (name,)).scalar()
                )
            except SQLAlchemyError as exc:
                raise _translate(exc, f"lock {job}") from exc
            if got != 1:
                raise JobRunning(
                    f"job {job} is running: another chat-migrate holds it (control store "
                    f"connection {holder}). Wait for it to end, or pause or stop it "
                    f"(`chat-migrate job pause {job}`, `chat-migrate job panic {job}`), or run "
                    "this one under another --job name"
                )
            lease = _Lease(conn, name, job)
            try:
                yield lease
            finally:
                with suppress(SQLAlchemyError):
                    conn.exec_driver_sql("SELECT RELEASE_LOCK(%s)", (name,))
        finally:
            # Never back to the pool: a connection that may still hold the lock is closed.
            with suppress(SQLAlchemyError):
                conn.invalidate()
            conn.close()


class _Lease:
    def __init__(self, conn: Connection, name: str, job: str) -> None:
        self._conn = conn
        self._name = name
        self._job = job

    def check(self) -> None:
        try:
            mine: Any = self._conn.exec_driver_sql(
                "SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self._name,)
            ).scalar()
        except SQLAlchemyError as exc:
            raise ControlStoreUnavailable(
                f"job {self._job}: lost its hold on the job (control store connection: "
                f"{exc.__class__.__name__}); another run may hold it now. Run again: it resumes "
                "from its checkpoint"
            ) from exc
        if mine != 1:
            raise ControlStoreUnavailable(
                f"job {self._job}: lost its hold on the job (the control store no longer has "
                "its lock); another run may hold it now. Run again: it resumes from its checkpoint"
            )
