"""The monolith's binlog as hints: every committed change to `messages` or `room_cursors`,
whoever made it (the PHP app, its cron jobs, a manual SQL fix), says "look here".

Row-based logging with full images and full row metadata is database configuration
(deploy/mariadb.sh), not a change of the monolith. A row event gives the keys of the rows it
changed; the hint carries only those keys, and the capturer reads the current row. So nothing
of the row's body is trusted or needed here (bodies that do not decode are ignored).

Positions are `(file, pos)` at the end of a committed transaction (an XID event): resuming there
never starts inside a transaction. What cannot become a hint (a row without its keys, a
statement that changed a watched table without row events, such as TRUNCATE) is reported with
the reason, never skipped in silence.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import HeartbeatLogEvent, QueryEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from legacy_adapters.domain.binlog_rows import (
    DDL,
    KEYS,
    WATCHED,
    BinlogBatch,
    BinlogPosition,
    BinlogProblem,
    hints_from_row,
    logging_refusal,
)
from legacy_adapters.errors import BinlogMisconfigured, BinlogUnavailable
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.domain.hints import Hint


def row_images(
    event: WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent,
) -> list[list[Mapping[str, Any]]]:
    """The images of each row an event changed: both sides of an update, since a row can
    move to another room or account."""
    if isinstance(event, UpdateRowsEvent):
        return [[row["before_values"], row["after_values"]] for row in event.rows]
    return [[row["values"]] for row in event.rows]


class BinlogReader:
    """A replication client of the monolith's MariaDB, from a position, blocking on a thread.

    `read` returns at a transaction boundary once `max_hints` are collected or `max_wait`
    seconds passed with something to say, or after an idle heartbeat. Hints of an unfinished
    transaction are held until its commit arrives.
    """

    def __init__(
        self, settings: LegacyDatabaseSettings, start: BinlogPosition, server_id: int
    ) -> None:
        self._settings = settings
        self._server_id = server_id
        self._stream: BinLogStreamReader | None = None
        self._start = start
        self._pending: dict[Hint, None] = {}
        self._pending_problems: list[BinlogProblem] = []
        self._pending_rows = 0

    def _connection(self) -> dict[str, Any]:
        s = self._settings
        return {
            "host": s.mariadb_host, "port": s.mariadb_port, "user": s.db_user,
            "passwd": s.db_password.get_secret_value(), "connect_timeout": 5,
        }  # fmt: skip

    def _open(self) -> BinLogStreamReader:
        if self._stream is None:
            self._stream = BinLogStreamReader(
                connection_settings=self._connection(), server_id=self._server_id,
                resume_stream=True, log_file=self._start.file, log_pos=self._start.pos,
                blocking=True, slave_heartbeat=1,
                only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent,
                             QueryEvent, HeartbeatLogEvent, RotateEvent],
                only_schemas=[self._settings.db_name], only_tables=list(KEYS),
                # A table map is parsed once per table id (the parse cost 0.6 ms per
                # transaction: the reader topped out near 1,000 rows/s). DDL drops the cache.
                freeze_schema=True, ignore_decode_errors=True,
                enable_logging=False,
            )  # fmt: skip
        return self._stream

    def read(self, max_hints: int, max_wait: float) -> BinlogBatch:
        batch = BinlogBatch()
        started = time.monotonic()
        try:
            stream = self._open()
            while True:
                event = stream.fetchone()
                if event is None:  # the server ended the stream
                    raise BinlogUnavailable("the server closed the replication stream")
                batch.last_event_at = max(batch.last_event_at, int(event.timestamp or 0))
                if isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
                    self._rows(event, stream)
                elif isinstance(event, QueryEvent):
                    if self._statement(event, stream):  # DDL commits by itself, no XID
                        stream.table_map.clear()  # columns may have changed: parse again
                        self._commit(batch, BinlogPosition(stream.log_file, stream.log_pos))
                elif isinstance(event, XidEvent):
                    self._commit(batch, BinlogPosition(stream.log_file, stream.log_pos))
                    if len(batch.hints) >= max_hints:
                        return batch
                if batch.position is not None and (
                    isinstance(event, HeartbeatLogEvent) or time.monotonic() - started >= max_wait
                ):
                    return batch
                if isinstance(event, HeartbeatLogEvent) and not self._pending:
                    return batch  # idle: let the caller look around (stop, health)
        except pymysql.err.OperationalError as exc:
            self.close()
            code = exc.args[0] if exc.args else 0
            if code == 1236:  # ER_MASTER_FATAL_ERROR_READING_BINLOG: position gone or bad
                raise BinlogMisconfigured(
                    f"cannot read the binlog from {self._start}: {exc.args[1] if len(exc.args) > 1 else exc}. "
                    "Changes since then may be lost: run a repair of the affected rooms"
                ) from exc
            raise BinlogUnavailable(f"MariaDB replication stream: {exc!r}") from exc
        except (pymysql.err.MySQLError, OSError) as exc:
            self.close()
            raise BinlogUnavailable(f"MariaDB replication stream: {exc!r}") from exc

    def _rows(
        self, event: WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent, stream: BinLogStreamReader
    ) -> None:
        if event.table not in KEYS:
            return
        for images in row_images(event):
            self._pending_rows += 1
            found = [hints_from_row(event.table, image) for image in images]
            for hint in found:
                if not isinstance(hint, str):
                    self._pending[hint] = None
            reasons = [hint for hint in found if isinstance(hint, str)]
            if reasons:  # one problem per row, even when both images of an update lack keys
                self._pending_problems.append(
                    BinlogProblem(event.table, f"{stream.log_file}:{stream.log_pos}", reasons[0])
                )

    def _statement(self, event: QueryEvent, stream: BinLogStreamReader) -> bool:
        """Reports a statement that changed a watched table without row events (DDL such as
        TRUNCATE, or a statement-logged write); True when the statement is DDL, which commits
        by itself."""
        raw = event.query
        query = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if query.strip().upper() in ("BEGIN", "COMMIT", "ROLLBACK"):
            return False
        match = WATCHED.search(query)
        if match is not None:
            self._pending_problems.append(
                BinlogProblem(
                    match.group(1).lower(),
                    f"{stream.log_file}:{stream.log_pos}",
                    f"a statement changed {match.group(1)} without row events; a repair of "
                    f"that table is needed: {query[:300]}",
                )
            )
        return query.lstrip().upper().startswith(DDL)

    def _commit(self, batch: BinlogBatch, position: BinlogPosition) -> None:
        seen = set(batch.hints)
        batch.hints += [h for h in self._pending if h not in seen]
        batch.problems += self._pending_problems
        batch.rows += self._pending_rows
        batch.position = position
        self._pending, self._pending_problems, self._pending_rows = {}, [], 0
        self._start = position

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(pymysql.err.MySQLError, OSError):
                self._stream.close()
            self._stream = None
        self._pending, self._pending_problems, self._pending_rows = {}, [], 0


def current_position(settings: LegacyDatabaseSettings) -> BinlogPosition:
    """Where the binlog ends now (SHOW MASTER STATUS): where a first start begins; history
    before it is the backfill's."""
    with _control(settings) as cursor:
        cursor.execute("SHOW MASTER STATUS")
        row = cursor.fetchone()
    if row is None:
        raise BinlogMisconfigured("binary logging is off on the monolith's MariaDB (log_bin)")
    return BinlogPosition(str(row[0]), int(row[1]))


def check_logging(settings: LegacyDatabaseSettings) -> None:
    """Refuses a server whose binlog cannot give a hint for every change."""
    with _control(settings) as cursor:
        cursor.execute(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata,"
            " @@log_bin_compress"
        )
        row = cursor.fetchone()
    assert row is not None
    refusal = logging_refusal(row)
    if refusal is not None:
        raise BinlogMisconfigured(refusal)


@contextlib.contextmanager
def _control(settings: LegacyDatabaseSettings) -> Iterator[Any]:
    """A cursor on a short control connection (not the replication stream)."""
    try:
        connection = pymysql.connect(
            host=settings.mariadb_host, port=settings.mariadb_port, user=settings.db_user,
            password=settings.db_password.get_secret_value(), connect_timeout=5,
        )  # fmt: skip
    except pymysql.err.MySQLError as exc:
        raise BinlogUnavailable(f"MariaDB at {settings.describe()}: {exc!r}") from exc
    try:
        yield connection.cursor()
    except pymysql.err.MySQLError as exc:
        raise BinlogUnavailable(f"MariaDB at {settings.describe()}: {exc!r}") from exc
    finally:
        connection.close()


class MariaDbBinlog:
    """The Binlog port on the monolith's MariaDB (`legacy_adapters/ports.py`)."""

    def __init__(self, settings: LegacyDatabaseSettings, server_id: int) -> None:
        self._settings = settings
        self._server_id = server_id

    def check(self) -> None:
        check_logging(self._settings)

    def end(self) -> BinlogPosition:
        return current_position(self._settings)

    def stream(self, start: BinlogPosition) -> BinlogReader:
        return BinlogReader(self._settings, start, self._server_id)
