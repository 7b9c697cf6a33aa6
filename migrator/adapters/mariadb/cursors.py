"""`RoomCursors` on the monolith's MariaDB: a room's read cursors (`room_cursors`) in pages by
account id, one short READ COMMITTED read per page on the table's primary key (room_id,
account_id): never one long transaction, never a lock. Read-only. Every database error becomes
MonolithUnavailable.

Parity reads a page per room (thousands of rooms a run): the statement is compiled once from
the typed mapping and run as driver SQL, as the monolith reader's hot reads are (building and
compiling a SQLAlchemy select per call cost about a millisecond of CPU)."""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.dialects.mysql import pymysql as mysql_pymysql
from sqlalchemy.exc import SQLAlchemyError

from legacy_adapters.adapters.mariadb.schema import LegacyCursor
from newcore.domain.model import ReadCursor
from newcore.errors import MonolithUnavailable

# Parameters room_id, after, limit.
CURSORS_SQL = str(
    select(
        LegacyCursor.room_id, LegacyCursor.account_id,
        LegacyCursor.last_read_message_id, LegacyCursor.last_fetched_message_id,
    )
    .where(
        LegacyCursor.room_id == bindparam("room_id"),
        LegacyCursor.account_id > bindparam("after"),
    )
    .order_by(LegacyCursor.account_id)
    .limit(bindparam("limit"))
    .compile(dialect=mysql_pymysql.dialect(paramstyle="pyformat"))
)  # fmt: skip


class MariaDbRoomCursors:
    def __init__(self, engine: Engine) -> None:
        """`engine`: the monolith's (legacy_adapters' make_engine: READ COMMITTED)."""
        self._engine = engine

    def cursors(self, room_id: int, after_account: int, limit: int) -> list[ReadCursor]:
        if limit < 1:
            raise ValueError(f"a page of cursors holds at least one, got limit {limit}")
        try:
            with self._engine.connect() as connection:
                rows = connection.exec_driver_sql(
                    CURSORS_SQL, {"room_id": room_id, "after": after_account, "limit": limit}
                ).all()
        except SQLAlchemyError as exc:
            raise MonolithUnavailable(
                f"monolith database (room_cursors): {exc.__class__.__name__}: "
                f"{getattr(exc, 'orig', None) or exc}"
            ) from exc
        return [ReadCursor(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]
