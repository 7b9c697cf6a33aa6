"""RoomHistory on the monolith's MariaDB, read-only, in short statements.

Every read goes through the `(room_id, message_id)` index (`ix_messages_room`): it holds both
columns (InnoDB's secondary indexes carry the primary key), so bounds and chunk ends never
touch a row. No statement reads more than a page of index entries (`count_page` for the row
count, `chunk_rows` for a chunk end), each runs on its own at READ COMMITTED (the engine's
level): a room of a hundred million messages is measured in many short statements, never one
long scan holding a read view on the monolith's server.

`activity` is the one read that needs a row column (`send_time`): it walks each room back from
its newest id, a page at a time, and stops at the first message sent before `since` (ids and
send times grow together within a room), so it costs what the room sent lately, not its
history. Old rows without a send time (before 2016) count as old.

The fingerprint is the server's own id (`@@server_uid` on MariaDB, `@@server_uuid` on MySQL)
and the schema's name: a checkpoint made on another server or another schema is refused.
Driver errors become MonolithUnavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.domain.phases import check_room_id
from migrator.ports import RoomBounds
from newcore.errors import MonolithUnavailable

COUNT_PAGE = 100_000
WALK_PAGE = 1000

_MIN = "SELECT MIN(message_id) FROM messages WHERE room_id = %s"
_COUNT_PAGE = (
    "SELECT COUNT(*), MAX(message_id) FROM (SELECT message_id FROM messages"
    " WHERE room_id = %s AND message_id > %s ORDER BY message_id LIMIT %s) AS page"
)
_NTH = (
    "SELECT message_id FROM messages WHERE room_id = %s AND message_id > %s"
    " AND message_id <= %s ORDER BY message_id LIMIT 1 OFFSET %s"
)
_LAST = (
    "SELECT MAX(message_id) FROM messages WHERE room_id = %s AND message_id > %s"
    " AND message_id <= %s"
)
_NEWEST = (
    "SELECT message_id, send_time FROM messages WHERE room_id = %s"
    " ORDER BY message_id DESC LIMIT %s"
)
_OLDER = (
    "SELECT message_id, send_time FROM messages WHERE room_id = %s AND message_id < %s"
    " ORDER BY message_id DESC LIMIT %s"
)


def _unavailable(exc: SQLAlchemyError, doing: str) -> MonolithUnavailable:
    orig = getattr(exc, "orig", None)
    return MonolithUnavailable(
        f"monolith database, {doing}: {exc.__class__.__name__}: {orig if orig is not None else exc}"
    )


def _scalar(conn: Connection, sql: str, *args: Any) -> Any:
    return conn.exec_driver_sql(sql, tuple(args)).scalar()


class MariaDbRoomHistory:
    """RoomHistory over `engine`, the monolith's engine (legacy_adapters' make_engine), which
    its owner disposes of."""

    def __init__(
        self, engine: Engine, *, count_page: int = COUNT_PAGE, walk_page: int = WALK_PAGE
    ) -> None:
        if count_page < 1 or walk_page < 1:
            raise ValueError(f"pages are at least 1, got {count_page}, {walk_page}")
        self._engine = engine
        self._count_page = count_page
        self._walk_page = walk_page

    def fingerprint(self) -> str:
        try:
            with self._engine.connect() as conn:
                schema = _scalar(conn, "SELECT DATABASE()")
                server = None
                for variable in ("@@server_uid", "@@server_uuid"):  # MariaDB, MySQL
                    try:
                        server = _scalar(conn, f"SELECT {variable}")
                        break
                    except SQLAlchemyError:
                        conn.rollback()
        except SQLAlchemyError as exc:
            raise _unavailable(exc, "fingerprint") from exc
        if server is None:
            raise MonolithUnavailable(
                "monolith database, fingerprint: the server has neither @@server_uid nor "
                "@@server_uuid"
            )
        return f"mariadb:{server}/{schema}"

    def bounds(self, room_id: int) -> RoomBounds | None:
        room_id = check_room_id(room_id)
        try:
            with self._engine.connect() as conn:
                low = _scalar(conn, _MIN, room_id)
                if low is None:
                    return None
                rows, high, after = 0, int(low), int(low) - 1
                while True:
                    counted, last = conn.exec_driver_sql(
                        _COUNT_PAGE, (room_id, after, self._count_page)
                    ).one()
                    rows += int(counted)
                    if last is not None:
                        high = after = int(last)
                    if int(counted) < self._count_page:
                        break
        except SQLAlchemyError as exc:
            raise _unavailable(exc, f"bounds of room {room_id}") from exc
        if rows == 0:  # every row purged between the two statements
            return None
        return RoomBounds(room_id, int(low), high, rows)

    def chunk_ends(self, room_id: int, after: int, high: int, rows: int, count: int) -> list[int]:
        room_id = check_room_id(room_id)
        if rows < 1 or count < 1 or after < 0:
            raise ValueError(
                f"rows and count are at least 1, after 0, got {rows}, {count}, {after}"
            )
        ends: list[int] = []
        try:
            with self._engine.connect() as conn:
                while len(ends) < count and after < high:
                    end = _scalar(conn, _NTH, room_id, after, high, rows - 1)
                    if end is None:
                        end = _scalar(conn, _LAST, room_id, after, high)
                        if end is not None:
                            ends.append(int(end))
                        break
                    after = int(end)
                    ends.append(after)
        except SQLAlchemyError as exc:
            raise _unavailable(exc, f"chunks of room {room_id}") from exc
        return ends

    def activity(self, room_ids: Sequence[int], since_unix: int) -> dict[int, int]:
        found: dict[int, int] = {}
        try:
            with self._engine.connect() as conn:
                for room_id in room_ids:
                    sent = self._recent(conn, check_room_id(room_id), since_unix)
                    if sent:
                        found[room_id] = sent
        except SQLAlchemyError as exc:
            raise _unavailable(exc, "activity of rooms") from exc
        return found

    def _recent(self, conn: Connection, room_id: int, since: int) -> int:
        sent = 0
        page = conn.exec_driver_sql(_NEWEST, (room_id, self._walk_page)).all()
        while True:
            for _, send_time in page:
                if send_time is None or int(send_time) < since:
                    return sent
                sent += 1
            if len(page) < self._walk_page:
                return sent
            page = conn.exec_driver_sql(_OLDER, (room_id, page[-1][0], self._walk_page)).all()
