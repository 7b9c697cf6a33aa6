"""The control store's schema on MariaDB: a database of its own (default `migration_control`)
on the monolith's server, never the monolith's schema (gateway/README.md).

Tables:

- `control_meta`: one row (id 1): the schema version, the revision every change bumps, and the
  kill switch. Gateways poll this row; every writer locks it first, so writers are serialized
  in one order and never deadlock on each other.
- `room_phases`: one row per room the store has recorded (a room without a row is legacy).
- `phase_transitions`: each phase change of a room, with who, why, when and the revision.
- `room_marks`: each fact a job reported about a room (backfill done, clean parity).
- `job_controls`: per migrator job, what operators last asked of it (run, pause, panic; a
  rate), who, why and when (`gateway/domain/jobs.py`); `job_reports`: each job's last
  heartbeat. Neither bumps the revision (they route nothing). Added within schema version 1:
  `ensure_schema` creates them in a control database made before them.
- `kill_switch_history`: each change of the kill switch.
- `shadow_records`: per room, the gateways' shadow comparisons by outcome and when each was
  last recorded (`gateway/domain/shadow_record.py`); written in batches, without a revision
  bump (it routes nothing).

Phases are stored as text, not as an ENUM: a phase this version does not know (written by a
newer version, or by hand) must reach the reader as what it is, and be refused with its row
(ControlStoreMisconfigured), not be turned into '' by the server. Times are UTC, DATETIME(6),
taken from the server's clock (one clock for every gateway and job).

`ensure_schema` is the only creation path; it is idempotent and safe to run from several
processes at once.
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    inspect,
    select,
)
from sqlalchemy.dialects.mysql import BIGINT, DATETIME, DOUBLE, INTEGER, MEDIUMTEXT, TINYINT
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from gateway.domain.jobs import JOB_NAME_MAX, KIND_MAX
from gateway.domain.phases import POSITIONS_MAX, WHO_MAX, WHY_MAX
from gateway.errors import ControlStoreMisconfigured, ControlStoreUnavailable
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.settings import LegacyDatabaseSettings

SCHEMA_VERSION = 1
DEFAULT_DB_NAME = "migration_control"
META_ID = 1
PHASE_WIDTH = 32

U8 = TINYINT(unsigned=True)
U32 = INTEGER(unsigned=True)
U64 = BIGINT(unsigned=True)
TIME = DATETIME(fsp=6)
_TABLE: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

metadata = MetaData()

control_meta = Table(
    "control_meta", metadata,
    Column("id", U8, primary_key=True, autoincrement=False),
    Column("schema_version", U32, nullable=False),
    Column("revision", U64, nullable=False),
    Column("kill_switch_on", Boolean, nullable=False),
    Column("created_at", TIME, nullable=False),
    **_TABLE,
)  # fmt: skip

room_phases = Table(
    "room_phases", metadata,
    Column("room_id", U32, primary_key=True, autoincrement=False),
    Column("phase", String(PHASE_WIDTH), nullable=False),
    Column("backfilled_at", TIME, nullable=True),
    Column("parity_clean_at", TIME, nullable=True),
    Column("parity_positions", String(POSITIONS_MAX), nullable=True),
    Column("changed_at", TIME, nullable=True),  # when the phase last changed; NULL: never
    Index("room_phases_by_phase", "phase", "room_id"),
    **_TABLE,
)  # fmt: skip

phase_transitions = Table(
    "phase_transitions", metadata,
    Column("id", U64, primary_key=True, autoincrement=True),
    Column("room_id", U32, nullable=False),
    Column("from_phase", String(PHASE_WIDTH), nullable=False),
    Column("to_phase", String(PHASE_WIDTH), nullable=False),
    Column("who", String(WHO_MAX), nullable=False),
    Column("why", String(WHY_MAX), nullable=False),
    Column("at", TIME, nullable=False),
    Column("revision", U64, nullable=False),
    Index("phase_transitions_by_room", "room_id", "id"),
    **_TABLE,
)  # fmt: skip

room_marks = Table(
    "room_marks", metadata,
    Column("id", U64, primary_key=True, autoincrement=True),
    Column("room_id", U32, nullable=False),
    Column("kind", String(PHASE_WIDTH), nullable=False),
    Column("detail", String(POSITIONS_MAX), nullable=True),
    Column("who", String(WHO_MAX), nullable=False),
    Column("at", TIME, nullable=False),
    Column("revision", U64, nullable=False),
    Index("room_marks_by_room", "room_id", "id"),
    **_TABLE,
)  # fmt: skip

job_controls = Table(
    "job_controls", metadata,
    Column("job", String(JOB_NAME_MAX), primary_key=True),
    Column("state", String(PHASE_WIDTH), nullable=False),  # text, as phases are (see above)
    Column("rate", DOUBLE(asdecimal=False), nullable=True),  # messages/s; NULL: the job's own
    Column("who", String(WHO_MAX), nullable=False),
    Column("why", String(WHY_MAX), nullable=False),
    Column("at", TIME, nullable=False),
    **_TABLE,
)  # fmt: skip

job_reports = Table(
    "job_reports", metadata,
    Column("job", String(JOB_NAME_MAX), primary_key=True),
    Column("kind", String(KIND_MAX), nullable=False),
    Column("detail", MEDIUMTEXT, nullable=False),  # JSON text, at most REPORT_MAX characters
    Column("at", TIME, nullable=False),
    **_TABLE,
)  # fmt: skip

kill_switch_history = Table(
    "kill_switch_history", metadata,
    Column("id", U64, primary_key=True, autoincrement=True),
    Column("switched_on", Boolean, nullable=False),
    Column("who", String(WHO_MAX), nullable=False),
    Column("why", String(WHY_MAX), nullable=False),
    Column("at", TIME, nullable=False),
    Column("revision", U64, nullable=False),
    **_TABLE,
)  # fmt: skip

shadow_records = Table(
    "shadow_records", metadata,
    Column("room_id", U32, primary_key=True, autoincrement=False),
    Column("same", U64, nullable=False),
    Column("different", U64, nullable=False),
    Column("late", U64, nullable=False),
    Column("last_same_at", TIME, nullable=True),
    Column("last_different_at", TIME, nullable=True),
    Column("last_late_at", TIME, nullable=True),
    Column("updated_at", TIME, nullable=False),
    **_TABLE,
)  # fmt: skip

# The monolith's own tables: a database holding them is the monolith's, never the control
# store's (a MIG_CONTROL_DB_NAME set to the monolith's database).
_MONOLITH_TABLES = frozenset({"messages", "room_cursors", "api_tokens", "room_members"})

# Server errors an operator must fix (retrying cannot help): access denied to the database or
# a table, no such database, no such table or column (no schema, or another version's).
_MISCONFIGURED_ERRNOS = frozenset({1044, 1045, 1049, 1142, 1146, 1054})
_DB_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def control_engine(
    server: LegacyDatabaseSettings, db_name: str = DEFAULT_DB_NAME, *, pool_size: int = 5
) -> Engine:
    """An engine towards the control store's database on the monolith's server: the legacy
    engine (utf8mb4, READ COMMITTED, pre-ping) with the control store's database name.
    Connects on first use, not here. ValueError for a name that is not letters, digits and _,
    or that is the monolith's database."""
    if not _DB_NAME.match(db_name):
        raise ValueError(f"control store database {db_name!r}: letters, digits and _ only")
    if db_name == server.db_name:
        raise ValueError(
            f"control store database {db_name!r} is the monolith's: it needs a database of its own"
        )
    return make_engine(server.model_copy(update={"db_name": db_name}), pool_size=pool_size)


def translate(
    exc: SQLAlchemyError, doing: str
) -> ControlStoreUnavailable | ControlStoreMisconfigured:
    """The driver's error as ours: Misconfigured for what an operator must fix (grants, a
    missing database, table or column), Unavailable for the rest (connection refused or lost,
    lock wait timeout, deadlock, server gone): those may pass if tried again later."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    detail = f"{exc.__class__.__name__}: {orig if orig is not None else exc}"
    if errno in _MISCONFIGURED_ERRNOS:
        return ControlStoreMisconfigured(
            f"control store, {doing}: {detail} (does the database exist with this version's "
            "schema? deploy/mariadb.sh start creates the database, ensure_schema its tables)"
        )
    return ControlStoreUnavailable(f"control store, {doing}: {detail}")


def check_meta(row: tuple[object, ...] | None) -> None:
    """Refuses a control_meta row this version cannot work with (missing, another version)."""
    if row is None:
        raise ControlStoreMisconfigured(
            f"control store table control_meta, row id={META_ID}: missing (the schema was "
            "never completed: run ensure_schema)"
        )
    if row[0] != SCHEMA_VERSION:
        raise ControlStoreMisconfigured(
            f"control store table control_meta, row id={META_ID}: schema version {row[0]!r}, "
            f"this version reads version {SCHEMA_VERSION} only"
        )


def ensure_schema(engine: Engine) -> None:
    """Creates what is missing of the control store's tables and its meta row, then checks
    that what is there is this version's schema. Idempotent; concurrent callers are safe
    (every statement is IF NOT EXISTS or INSERT IGNORE). The database itself must exist
    (deploy/mariadb.sh creates it: the `chat` user may not create databases).

    The first revision is taken from the clock (microseconds since the epoch), so a store
    created anew does not start at a number a running gateway remembers from the old one.

    Raises ControlStoreMisconfigured when the database is the monolith's, holds a control
    store of another version, or cannot be created in; ControlStoreUnavailable when the server
    cannot be reached.
    """
    try:
        with engine.begin() as conn:
            _refuse_the_monolith(conn)
            for table in metadata.sorted_tables:
                conn.execute(CreateTable(table, if_not_exists=True))
                for index in sorted(table.indexes, key=lambda i: str(i.name)):
                    conn.execute(CreateIndex(index, if_not_exists=True))
            conn.execute(
                mysql_insert(control_meta)
                .prefix_with("IGNORE")
                .values(
                    id=META_ID, schema_version=SCHEMA_VERSION, revision=time.time_ns() // 1000,
                    kill_switch_on=False, created_at=_server_now(conn),
                )
            )  # fmt: skip
            _check_columns(conn)
            check_meta(_meta_row(conn))
    except SQLAlchemyError as exc:
        raise translate(exc, "ensure_schema") from exc


def _server_now(conn: Connection) -> object:
    return conn.exec_driver_sql("SELECT UTC_TIMESTAMP(6)").scalar_one()


def _meta_row(conn: Connection) -> tuple[object, ...] | None:
    row = conn.execute(
        select(control_meta.c.schema_version).where(control_meta.c.id == META_ID)
    ).one_or_none()
    return None if row is None else tuple(row)


def _refuse_the_monolith(conn: Connection) -> None:
    found = _MONOLITH_TABLES & set(inspect(conn).get_table_names())
    if found:
        database = conn.exec_driver_sql("SELECT DATABASE()").scalar_one()
        raise ControlStoreMisconfigured(
            f"control store database {database!r} holds the monolith's tables "
            f"({', '.join(sorted(found))}): the control store needs a database of its own "
            "(MIG_CONTROL_DB_NAME)"
        )


def _check_columns(conn: Connection) -> None:
    live = inspect(conn)
    for table in metadata.sorted_tables:
        have = {column["name"] for column in live.get_columns(table.name)}
        missing = sorted({column.name for column in table.columns} - have)
        if missing:
            raise ControlStoreMisconfigured(
                f"control store table {table.name}: columns {', '.join(missing)} missing "
                "(a table of another version, or made by hand)"
            )
