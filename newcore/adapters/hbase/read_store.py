"""The read store on HBase, through its Thrift 1 server with happybase.

A message is one packed cell (`cell.py`) at its capture position; `ensure_tables` creates the
tables pre-split at the salt boundaries with HBase's own Admin API (Thrift 1 cannot split),
through deploy/jvm/hbase/create-tables.sh: the one way our tables are made.

`apply` groups events by capture position and sends one batch per position with that position
as the cells' timestamp (Thrift 1 has one timestamp per batch): range captures (backfill) share
a position, so a batch of thousands of messages is a handful of calls. Grouping must not
reorder one room's events (`batches`): a reader that polls "after the last id I saw" would skip
a message that became visible after a later one, for good. Then, and only then, each room's
applied position (`room_position_batches`): one more cell per room, after the data it covers. Every Thrift or socket
error becomes ReadStoreUnavailable; the pool replaces the connection, and the caller retries.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import happybase
from happybase.util import bytes_increment
from thriftpy2.thrift import TException

from newcore.adapters.hbase import cell, schema
from newcore.domain.events import Event, MessageDeleted, MessageUpserted
from newcore.domain.model import MAX_ID, Message, ReadCursor
from newcore.errors import ReadStoreMisconfigured, UnreadableCell
from newcore.ports import ReadStoreUnavailable
from newcore.settings import HBaseSettings

CREATE_TABLES = (
    Path(__file__).resolve().parents[3] / "deploy" / "jvm" / "hbase" / "create-tables.sh"
)
CREATE_TIMEOUT_S = 300


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


def ensure_tables(settings: HBaseSettings, tool: Path = CREATE_TABLES) -> list[str]:
    """Creates the tables that are missing, pre-split at the salt boundaries; returns the names
    created. Idempotent, and safe when several callers race (a table another made meanwhile is
    not ours to report). Then checks that every one of our tables starts a region at each salt
    boundary. Raises ReadStoreUnavailable (HBase cannot be reached; retry) or
    ReadStoreMisconfigured (the tool cannot run, or a table is not split at the salts)."""
    connection = _admin_connection(settings)
    try:
        existing = {name.decode() for name in connection.tables()}
        missing = [table for table in schema.FAMILIES if table not in existing]
        created = _create(settings, tool, missing) if missing else []
        for table in schema.FAMILIES:
            starts = {region["start_key"] for region in connection.table(table).regions()}
            lacking = [key for key in schema.SPLIT_KEYS if key not in starts]
            if lacking:
                raise ReadStoreMisconfigured(
                    f"HBase table {settings.table_prefix}_{table} has no region starting at "
                    f"{', '.join(key.hex() for key in lacking)}: it was not created by "
                    "ensure_tables (pre-split at the 16 salts, packed cells). Drop it and "
                    "rebuild the read model (chat-read-model-init, then a backfill)"
                )
        return created
    except (TException, OSError) as exc:
        raise ReadStoreUnavailable(
            f"HBase Thrift at {settings.host}:{settings.thrift_port}: {exc}"
        ) from exc
    finally:
        connection.close()


def _create(settings: HBaseSettings, tool: Path, tables: list[str]) -> list[str]:
    """Runs the creation tool for `tables`; the full names it created."""
    specs = []
    for table in tables:
        ((family, options),) = schema.FAMILIES[table].items()
        specs.append(f"{settings.table_prefix}_{table}:{family}:{options['max_versions']}")
    splits = ",".join(key.hex() for key in schema.SPLIT_KEYS)
    try:
        done = subprocess.run(  # noqa: S603 (our own script; the arguments are our names)
            [str(tool), splits, *specs], capture_output=True, text=True,
            timeout=CREATE_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise ReadStoreUnavailable(
            f"creating HBase tables took more than {CREATE_TIMEOUT_S} s ({tool.name})"
        ) from exc
    except OSError as exc:
        raise ReadStoreMisconfigured(f"cannot run {tool}: {exc}") from exc
    said = " ".join(done.stderr.split())[-1000:]  # the end says why
    if done.returncode == 4:
        raise ReadStoreUnavailable(f"creating HBase tables ({tool.name}): {said}")
    if done.returncode != 0:
        raise ReadStoreMisconfigured(
            f"creating HBase tables ({tool.name}) exited {done.returncode}: {said}"
        )
    made = {line[8:] for line in done.stdout.splitlines() if line.startswith("created ")}
    return [name for name in (spec.split(":")[0] for spec in specs) if name in made]


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
    """The cells of a live message's row (the layout in newcore/README.md): one packed cell."""
    return {schema.PACKED: cell.encode(m)}


def tombstone_cells() -> dict[bytes, bytes]:
    """The cells of a deleted message's row: the packed cell's tombstone."""
    return {schema.PACKED: cell.TOMBSTONE}


def _row(event: Event) -> tuple[str, bytes, dict[bytes, bytes]]:
    """The table, row key and cells an event writes."""
    if isinstance(event, MessageUpserted):
        m = event.message
        return schema.MESSAGES, schema.message_key(m.room_id, m.message_id), message_cells(m)
    if isinstance(event, MessageDeleted):
        key = schema.message_key(event.room_id, event.message_id)
        return schema.MESSAGES, key, tombstone_cells()
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


def room_position_batches(events: Sequence[Event]) -> list[Batch]:
    """The rooms' applied positions the events move: per room, the highest position among its
    events, as a cell whose timestamp is that position (so HBase keeps the highest whatever the
    order of writes: the position never goes down, with no read before the write). Rooms whose
    highest positions are equal share a batch: one call per distinct position."""
    highest: dict[int, int] = {}
    for event in events:
        if event.position > highest.get(event.room_id, -1):
            highest[event.room_id] = event.position
    found: dict[int, Batch] = {}
    for room_id, position in highest.items():
        batch = found.setdefault(position, Batch(schema.CURSORS, position))
        batch.rows[schema.room_position_key(room_id)] = {schema.ROOM_POSITION: schema.u64(position)}
    return list(found.values())


def _message(key: bytes, row: dict[bytes, bytes]) -> Message | None:
    """The message a row of the messages table holds, None for a tombstone; raises
    UnreadableCell."""
    room_id, message_id = schema.from_u64(key[1:9]), schema.id_of_key(key)
    packed = row.get(schema.PACKED)
    if packed is None:
        raise UnreadableCell(room_id, message_id, f"no packed cell, columns {sorted(row)}")
    try:
        return cell.decode(room_id, message_id, packed)
    except cell.CellRefused as exc:
        raise UnreadableCell(room_id, message_id, exc.reason) from exc


def _first_live(scan: Iterator[tuple[bytes, dict[bytes, bytes]]], limit: int) -> list[Message]:
    """The first `limit` live messages of a scan, skipping tombstones; closes the scanner."""
    found: list[Message] = []
    try:
        for key, row in scan:
            message = _message(key, row)
            if message is not None:
                found.append(message)
                if len(found) == limit:
                    break
    finally:
        close = getattr(scan, "close", None)
        if close is not None:
            close()
    return found


class ConnectionPool:
    """At most `size` happybase connections, each used by one thread at a time. A connection
    whose call failed is closed and dropped, and a fresh one is made on next use (HBase or its
    Thrift server restarted). Ours rather than happybase's `ConnectionPool` because that one
    cannot be closed: a stopped process would leave Thrift sessions behind. Connections are
    made on first use, so a store made while HBase is down is still made."""

    def __init__(self, settings: HBaseSettings) -> None:
        self._settings = settings
        self._slots = threading.BoundedSemaphore(settings.pool_size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[Any]:
        with self._slots:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                s = self._settings
                connection = happybase.Connection(
                    host=s.host, port=s.thrift_port, timeout=s.timeout_ms,
                    table_prefix=s.table_prefix,
                )  # fmt: skip
            try:
                yield connection
            except BaseException:
                connection.close()
                raise
            with self._lock:
                if self._closed:
                    connection.close()
                else:
                    self._idle.append(connection)

    def close(self) -> None:
        """Closes the idle connections now, the busy ones when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class HBaseReadStore:
    def __init__(self, settings: HBaseSettings) -> None:
        self._settings = settings
        self._pool = ConnectionPool(settings)

    @contextmanager
    def _tables(self) -> Iterator[Any]:
        try:
            with self._pool.connection() as connection:
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
            # Only once every batch above is in: a reader that sees a room's position sees
            # everything up to it (a failure before this line leaves the position behind, and
            # the caller applies the same events again).
            for batch in room_position_batches(events):
                with connection.table(batch.table).batch(timestamp=batch.position) as puts:
                    for key, cells in batch.rows.items():
                        puts.put(key, cells)

    def message(self, room_id: int, message_id: int) -> Message | None:
        key = schema.message_key(room_id, message_id)
        with self._tables() as connection:
            row = connection.table(schema.MESSAGES).row(key)
        return _message(key, row) if row else None

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

    def room_position(self, room_id: int) -> int | None:
        with self._tables() as connection:
            row = connection.table(schema.CURSORS).row(
                schema.room_position_key(room_id), columns=[schema.ROOM_POSITION]
            )
        cell = row.get(schema.ROOM_POSITION)
        return None if cell is None else schema.from_u64(cell)

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
        """Closes the store's Thrift connections: a stopped process leaves no session behind."""
        self._pool.close()
