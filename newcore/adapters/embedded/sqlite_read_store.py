"""The embedded read store: one SQLite file, for unit tests and small installs (the updater
writes it, the Read API and the migrator's jobs read it, each a process of its own, with
`MIG_ENGINE=embedded`).

Durable across a restart of the process (WAL journal, synchronous=FULL): what `apply` returned
from is on disk. Keeps the port's rule with a conditional upsert: a row changes only when the
incoming capture position is at least the one it holds. A deletion is a tombstone row. A room's
applied position is a row of `room_positions`, raised in the same transaction as the events it
covers (so it is never visible before them) and never lowered.

Several processes on one file: SQLite's own locking. In WAL mode readers never wait for the
writer and see the last committed `apply` whole (each read is one statement: one snapshot);
writers take turns (`BEGIN IMMEDIATE`), a writer that finds the file locked waits up to
`busy_timeout_ms` before `ReadStoreUnavailable` (retry later). A process killed in the middle of
an `apply` leaves nothing of it: SQLite rolls the transaction back at the next open.

Nothing is opened until first use (or `open`): the file and its folder are made then, and a path
that cannot be is a `ReadStoreUnavailable` naming it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from newcore.domain.events import CursorMoved, Event, MessageDeleted, MessageUpserted
from newcore.domain.model import Message, ReadCursor
from newcore.ports import ReadStoreUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
  room_id INTEGER NOT NULL, message_id TEXT NOT NULL, account_id INTEGER NOT NULL,
  body TEXT NOT NULL, send_time INTEGER NOT NULL, update_time INTEGER NOT NULL,
  deleted INTEGER NOT NULL, position INTEGER NOT NULL,
  PRIMARY KEY (room_id, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
  room_id INTEGER NOT NULL, account_id INTEGER NOT NULL,
  last_read TEXT NOT NULL, last_fetched TEXT NOT NULL, position INTEGER NOT NULL,
  PRIMARY KEY (room_id, account_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS room_positions (
  room_id INTEGER NOT NULL PRIMARY KEY, position INTEGER NOT NULL
) WITHOUT ROWID;
"""

_UPSERT = """
INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, 0, ?)
ON CONFLICT (room_id, message_id) DO UPDATE SET
  account_id = excluded.account_id, body = excluded.body, send_time = excluded.send_time,
  update_time = excluded.update_time, deleted = 0, position = excluded.position
WHERE excluded.position >= messages.position
"""
_DELETE = """
INSERT INTO messages VALUES (?, ?, 0, '', 0, 0, 1, ?)
ON CONFLICT (room_id, message_id) DO UPDATE SET deleted = 1, position = excluded.position
WHERE excluded.position >= messages.position
"""
_CURSOR = """
INSERT INTO cursors VALUES (?, ?, ?, ?, ?)
ON CONFLICT (room_id, account_id) DO UPDATE SET
  last_read = excluded.last_read, last_fetched = excluded.last_fetched, position = excluded.position
WHERE excluded.position >= cursors.position
"""
_ROOM_POSITION = """
INSERT INTO room_positions VALUES (?, ?)
ON CONFLICT (room_id) DO UPDATE SET position = excluded.position
WHERE excluded.position > room_positions.position
"""
_COLUMNS = "room_id, message_id, account_id, body, send_time, update_time"


def _key(message_id: int) -> str:
    """Ids up to 2^64 do not fit SQLite's signed integers: stored as fixed-width digits,
    whose text order is their numeric order."""
    return f"{message_id:020d}"


def _message(row: tuple[int, str, int, str, int, int]) -> Message:
    return Message(row[0], int(row[1]), row[2], row[3], row[4], row[5])


class SqliteReadStore:
    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self._path = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Opens the file now (made with its tables if missing). Raises ReadStoreUnavailable."""
        with self._lock:
            self._opened()

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, opened on first use (under `_lock`)."""
        return self._opened()

    def _opened(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        db: sqlite3.Connection | None = None
        try:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            # First: every statement below may meet another process's lock.
            db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise ReadStoreUnavailable(
                f"cannot open the embedded read store at {self._path}: {exc}"
            ) from exc
        self._connection = db
        return db

    def apply(self, events: Sequence[Event]) -> None:
        if not events:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for event in events:
                    if isinstance(event, MessageUpserted):
                        m = event.message
                        self._db.execute(
                            _UPSERT,
                            (m.room_id, _key(m.message_id), m.account_id, m.body,
                             m.send_time, m.update_time, event.position),
                        )  # fmt: skip
                    elif isinstance(event, MessageDeleted):
                        self._db.execute(
                            _DELETE, (event.room_id, _key(event.message_id), event.position)
                        )
                    elif isinstance(event, CursorMoved):
                        c = event.cursor
                        self._db.execute(
                            _CURSOR,
                            (c.room_id, c.account_id, _key(c.last_read_message_id),
                             _key(c.last_fetched_message_id), event.position),
                        )  # fmt: skip
                highest: dict[int, int] = {}
                for event in events:
                    highest[event.room_id] = max(event.position, highest.get(event.room_id, -1))
                self._db.executemany(_ROOM_POSITION, highest.items())
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._connection is not None and self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise ReadStoreUnavailable(f"embedded read store: {exc}") from exc

    def _select(self, sql: str, parameters: tuple[object, ...]) -> list[Any]:
        """The rows of one read statement (one snapshot: the last committed `apply` whole)."""
        with self._lock:
            try:
                return self._db.execute(sql, parameters).fetchall()
            except sqlite3.Error as exc:
                raise ReadStoreUnavailable(f"embedded read store: {exc}") from exc

    def message(self, room_id: int, message_id: int) -> Message | None:
        rows = self._select(
            f"SELECT {_COLUMNS} FROM messages WHERE room_id = ? AND message_id = ? AND deleted = 0",  # noqa: S608
            (room_id, _key(message_id)),
        )
        return _message(rows[0]) if rows else None

    def latest(self, room_id: int, limit: int) -> list[Message]:
        rows = self._select(
            f"SELECT {_COLUMNS} FROM messages WHERE room_id = ? AND deleted = 0"  # noqa: S608
            " ORDER BY message_id DESC LIMIT ?",
            (room_id, limit),
        )
        return [_message(row) for row in reversed(rows)]

    def after(self, room_id: int, after_message_id: int, limit: int) -> list[Message]:
        rows = self._select(
            f"SELECT {_COLUMNS} FROM messages WHERE room_id = ? AND message_id > ?"  # noqa: S608
            " AND deleted = 0 ORDER BY message_id LIMIT ?",
            (room_id, _key(after_message_id), limit),
        )
        return [_message(row) for row in rows]

    def room_position(self, room_id: int) -> int | None:
        rows = self._select("SELECT position FROM room_positions WHERE room_id = ?", (room_id,))
        return int(rows[0][0]) if rows else None

    def cursor(self, room_id: int, account_id: int) -> ReadCursor | None:
        rows = self._select(
            "SELECT last_read, last_fetched FROM cursors WHERE room_id = ? AND account_id = ?",
            (room_id, account_id),
        )
        return ReadCursor(room_id, account_id, int(rows[0][0]), int(rows[0][1])) if rows else None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
