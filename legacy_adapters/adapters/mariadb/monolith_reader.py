"""MonolithReader on the real MariaDB: SQLAlchemy Core over the typed mappings, batched.

One statement serves many hints ((room_id, message_id) IN (...) in chunks of CHUNK keys), each
call in its own READ COMMITTED transaction (the engine's isolation level), and every database
error becomes MonolithUnavailable.

The two message reads are the capturer's hot path (every migrated message passes through one
of them), so their statements are compiled once from the typed mappings and run as driver SQL,
parameters bound by PyMySQL: SQLAlchemy's per-row result processing, and PyMySQL turning
`created_at` into a datetime that we turned back into text, doubled the CPU per row (28 µs
against 12 µs, `bench/pipeline.py`'s capturer). `created_at` is read as text by the database
(CAST), which is also the only way a zero date survives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import CHAR, Connection, Engine, bindparam, cast, select, tuple_
from sqlalchemy.dialects.mysql import pymysql as mysql_pymysql
from sqlalchemy.exc import SQLAlchemyError

from legacy_adapters.adapters.mariadb.schema import LegacyCursor, LegacyMessage, Room
from legacy_adapters.domain.translation import LegacyMessageRow, translate_message
from newcore.domain.model import Message, ReadCursor
from newcore.domain.row_problems import RowProblem
from newcore.ports import MessageRead, MonolithUnavailable, RangeRead

CHUNK = 1000
_COLUMNS = (
    LegacyMessage.message_id, LegacyMessage.room_id, LegacyMessage.account_id, LegacyMessage.body,
    LegacyMessage.body_v1, LegacyMessage.body_raw, LegacyMessage.send_time,
    LegacyMessage.update_time, cast(LegacyMessage.created_at, CHAR).label("created_at"),
    LegacyMessage.deleted,
)  # fmt: skip
_DIALECT = mysql_pymysql.dialect(paramstyle="pyformat")  # named binds for RANGE_SQL
# The range read, as the driver gets it: public so that the bench can time the same query
# with bare PyMySQL (parameters room_id, first, last, limit).
RANGE_SQL = str(
    select(*_COLUMNS)
    .where(
        LegacyMessage.room_id == bindparam("room_id"),
        LegacyMessage.message_id.between(bindparam("first"), bindparam("last")),
    )
    .order_by(LegacyMessage.message_id)
    .limit(bindparam("limit"))
    .compile(dialect=_DIALECT)
)
# Followed by "(%s, %s), ..." for the keys of one chunk (positional parameters: pyformat
# also reads them).
_KEYS_SQL_HEAD = (
    str(select(*_COLUMNS).compile(dialect=_DIALECT))
    + " WHERE (messages.room_id, messages.message_id) IN "
)


def _chunks(keys: Sequence[tuple[int, int]]) -> Iterator[Sequence[tuple[int, int]]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]


class MariaDbMonolithReader:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise MonolithUnavailable(
                f"monolith database: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}"
            ) from exc

    def read_messages(self, keys: Sequence[tuple[int, int]]) -> MessageRead:
        live: dict[tuple[int, int], Message] = {}
        problems: list[RowProblem] = []
        wanted = list(dict.fromkeys(keys))
        with self._read() as connection:
            for chunk in _chunks(wanted):
                rows = connection.exec_driver_sql(
                    _KEYS_SQL_HEAD + "(" + ", ".join(["(%s, %s)"] * len(chunk)) + ")",
                    tuple(number for key in chunk for number in key),
                )
                for row in rows:
                    message, found = translate_message(LegacyMessageRow(*row))
                    problems += found
                    if message is not None:
                        live[(message.room_id, message.message_id)] = message
        return MessageRead(
            live=live, gone={key for key in wanted if key not in live}, problems=problems
        )

    def read_range(self, room_id: int, first: int, last: int, limit: int) -> RangeRead:
        with self._read() as connection:
            rows = connection.exec_driver_sql(
                RANGE_SQL, {"room_id": room_id, "first": first, "last": last, "limit": limit}
            ).all()
        live: list[Message] = []
        deleted: list[int] = []
        problems: list[RowProblem] = []
        for row in rows:
            message, found = translate_message(LegacyMessageRow(*row))
            problems += found
            if message is None:
                deleted.append(row.message_id)
            else:
                live.append(message)
        return RangeRead(live, deleted, problems, rows[-1].message_id if rows else None)

    def read_cursors(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], ReadCursor]:
        found: dict[tuple[int, int], ReadCursor] = {}
        with self._read() as connection:
            for chunk in _chunks(list(dict.fromkeys(keys))):
                rows = connection.execute(
                    select(
                        LegacyCursor.room_id, LegacyCursor.account_id,
                        LegacyCursor.last_read_message_id, LegacyCursor.last_fetched_message_id,
                    ).where(tuple_(LegacyCursor.room_id, LegacyCursor.account_id).in_(chunk))
                )  # fmt: skip
                for room, account, last_read, last_fetched in rows:
                    found[(room, account)] = ReadCursor(room, account, last_read, last_fetched)
        return found

    def existing_rooms(self, room_ids: Sequence[int]) -> set[int]:
        wanted = list(dict.fromkeys(room_ids))
        found: set[int] = set()
        with self._read() as connection:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                found.update(
                    connection.execute(
                        select(Room.room_id).where(Room.room_id.in_(chunk))
                    ).scalars()
                )
        return found
