"""The read store on HBase, through its Thrift 1 server with happybase.

`apply` groups events by capture position and sends one batch per position with that position
as the cells' timestamp (Thrift 1 has one timestamp per batch): range captures (backfill) share
a position, so a batch of thousands of messages is a handful of calls. Grouping must not
reorder one room's events (`batches`): a reader that polls "after the last id I saw" would skip
a message that became visible after a later one, for good. Every Thrift or socket
error becomes ReadStoreUnavailable; the pool replaces the connection, and the caller retries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import happybase
from happybase.util import bytes_increment
from thriftpy2.thrift import TException

from newcore.adapters.hbase import schema
from newcore.domain.events import Event, MessageDeleted, MessageUpserted
from newcore.domain.model import MAX_ID, Message, ReadCursor
from newcore.ports import ReadStoreUnavailable
from newcore.settings import HBaseSettings

_LIVE, _TOMBSTONE = b"\x00", b"\x01"


def _admin_connection(settings: HBaseSettings) -> happybase.Connection:
    try:
        return happybase.Connection(
            settings.host, settings.thrift_port, timeout=settings.timeout_ms,
            table_prefix=settings.table_prefix,
        )  # fmt: skip
    except (TException, OSError) as exc:
        raise ReadStoreUnavailable(
            f"HBase Thrift at {settings.host}:{settings.thrift_port}: {exc}"
        ) from exc


def ensure_tables(settings: HBaseSettings) -> list[str]:
    """Creates the tables that are missing; returns the names created. Idempotent."""
    connection = _admin_connection(settings)
    try:
        existing = {name.decode() for name in connection.tables()}
        created = []
        for table, families in schema.FAMILIES.items():
            if table not in existing:
                connection.create_table(table, families)
                created.append(f"{settings.table_prefix}_{table}")
        return created
    except (TException, OSError) as exc:
        raise ReadStoreUnavailable(
            f"HBase Thrift at {settings.host}:{settings.thrift_port}: {exc}"
        ) from exc
    finally:
        connection.close()


def drop_tables(settings: HBaseSettings) -> None:
    """Deletes our tables (tests and resets only)."""
    connection = _admin_connection(settings)
    try:
        existing = {name.decode() for name in connection.tables()}
        for table in schema.FAMILIES:
            if table in existing:
                connection.delete_table(table, disable=True)
    finally:
        connection.close()


def message_cells(m: Message) -> dict[bytes, bytes]:
    """The cells of a live message's row (the layout in newcore/README.md)."""
    return {
        schema.ACCOUNT: schema.u64(m.account_id),
        schema.BODY: m.body.encode("utf-8"),
        schema.SEND_TIME: schema.u64(m.send_time),
        schema.UPDATE_TIME: schema.u64(m.update_time),
        schema.DELETED: _LIVE,
    }


def _row(event: Event) -> tuple[str, bytes, dict[bytes, bytes]]:
    """The table, row key and cells an event writes."""
    if isinstance(event, MessageUpserted):
        m = event.message
        return schema.MESSAGES, schema.message_key(m.room_id, m.message_id), message_cells(m)
    if isinstance(event, MessageDeleted):
        key = schema.message_key(event.room_id, event.message_id)
        return schema.MESSAGES, key, {schema.DELETED: _TOMBSTONE}
    c = event.cursor
    cells = {
        schema.LAST_READ: schema.u64(c.last_read_message_id),
        schema.LAST_FETCHED: schema.u64(c.last_fetched_message_id),
    }
    return schema.CURSORS, schema.cursor_key(c.room_id, c.account_id), cells


@dataclass
class Batch:
    """Rows put in one call, all with `position` as their timestamp."""

    table: str
    position: int
    rows: dict[bytes, dict[bytes, bytes]] = field(default_factory=dict)


def batches(events: Sequence[Event]) -> list[Batch]:
    """The events as few batches as possible (one per position, where order allows), to be
    sent in list order.

    Promised: each room's events land in batches in their order in `events` (an event never
    goes to an earlier batch than the room's previous event), so what a reader sees of a room
    while they are sent is always a prefix of them. Positions are offsets of the hints'
    partitions, so one poll of several partitions holds equal positions of different rooms
    and a room's later position can come first: merging every equal position into one batch
    made a room's later messages visible before its earlier ones (the bench's observer, which
    polls `after`, missed runs of 15-20 messages that way).
    """
    found: list[Batch] = []
    latest: dict[tuple[str, int], int] = {}  # (table, position) -> index of its last batch
    room_floor: dict[int, int] = {}  # room -> index of the batch of its last event so far
    for event in events:
        table, key, cells = _row(event)
        index = latest.get((table, event.position))
        if index is None or index < room_floor.get(event.room_id, -1):
            index = len(found)
            found.append(Batch(table, event.position))
            latest[(table, event.position)] = index
        found[index].rows[key] = cells  # equal positions: the later state wins, as in HBase
        room_floor[event.room_id] = index
    return found


def _message(key: bytes, row: dict[bytes, bytes]) -> Message:
    return Message(
        room_id=schema.from_u64(key[1:9]),
        message_id=schema.id_of_key(key),
        account_id=schema.from_u64(row[schema.ACCOUNT]),
        body=row[schema.BODY].decode("utf-8"),
        send_time=schema.from_u64(row[schema.SEND_TIME]),
        update_time=schema.from_u64(row[schema.UPDATE_TIME]),
    )


def _live(row: dict[bytes, bytes]) -> bool:
    return row.get(schema.DELETED) == _LIVE and schema.BODY in row


def _first_live(scan: Iterator[tuple[bytes, dict[bytes, bytes]]], limit: int) -> list[Message]:
    """The first `limit` live messages of a scan, skipping tombstones; closes the scanner."""
    found: list[Message] = []
    try:
        for key, row in scan:
            if _live(row):
                found.append(_message(key, row))
                if len(found) == limit:
                    break
    finally:
        close = getattr(scan, "close", None)
        if close is not None:
            close()
    return found


class HBaseReadStore:
    def __init__(self, settings: HBaseSettings) -> None:
        self._settings = settings
        self._pool: happybase.ConnectionPool | None = None
        self._pool_lock = threading.Lock()

    def _connections(self) -> happybase.ConnectionPool:
        """The pool, made on first use: happybase's pool connects when it is built, and a store
        made while HBase is down must still be made (its calls then raise ReadStoreUnavailable
        until HBase is back)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = happybase.ConnectionPool(
                    self._settings.pool_size, host=self._settings.host,
                    port=self._settings.thrift_port, timeout=self._settings.timeout_ms,
                    table_prefix=self._settings.table_prefix,
                )  # fmt: skip
            return self._pool

    @contextmanager
    def _tables(self) -> Iterator[Any]:
        try:
            with self._connections().connection() as connection:
                yield connection
        except (TimeoutError, TException, OSError) as exc:
            raise ReadStoreUnavailable(
                f"HBase Thrift at {self._settings.host}:{self._settings.thrift_port}: {exc!r}"
            ) from exc

    def apply(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._tables() as connection:
            for batch in batches(events):
                with connection.table(batch.table).batch(timestamp=batch.position) as puts:
                    for key, cells in batch.rows.items():
                        puts.put(key, cells)

    def message(self, room_id: int, message_id: int) -> Message | None:
        key = schema.message_key(room_id, message_id)
        with self._tables() as connection:
            row = connection.table(schema.MESSAGES).row(key)
        return _message(key, row) if row and _live(row) else None

    def latest(self, room_id: int, limit: int) -> list[Message]:
        found: list[Message] = []
        if limit <= 0:
            return found
        with self._tables() as connection:
            scan = connection.table(schema.MESSAGES).scan(
                row_prefix=schema.room_prefix(room_id),
                reverse=True,
                batch_size=min(limit + 10, 1000),
            )
            found = _first_live(scan, limit)
        found.reverse()
        return found

    def after(self, room_id: int, after_message_id: int, limit: int) -> list[Message]:
        found: list[Message] = []
        if limit <= 0 or after_message_id >= MAX_ID:
            return found
        prefix = schema.room_prefix(room_id)
        with self._tables() as connection:
            scan = connection.table(schema.MESSAGES).scan(
                row_start=prefix + schema.u64(after_message_id + 1),
                row_stop=bytes_increment(prefix),
                batch_size=min(limit + 10, 1000),
            )
            return _first_live(scan, limit)

    def cursor(self, room_id: int, account_id: int) -> ReadCursor | None:
        with self._tables() as connection:
            row = connection.table(schema.CURSORS).row(schema.cursor_key(room_id, account_id))
        if not row:
            return None
        return ReadCursor(
            room_id,
            account_id,
            schema.from_u64(row[schema.LAST_READ]),
            schema.from_u64(row[schema.LAST_FETCHED]),
        )

    def close(self) -> None:
        # happybase's pool has no close(); connections close when collected. Open connections
        # are closed here explicitly so that a stopped process leaves no Thrift session behind.
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            queue = pool._queue  # no public way to reach the idle connections
            while not queue.empty():
                queue.get_nowait().close()
