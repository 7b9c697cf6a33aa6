"""RoomCatalog on the monolith's MariaDB: its `rooms` table, read-only (the typed mapping in
legacy_adapters/adapters/mariadb/schema.py).

The room list is read in pages by key (room_id > the last one seen), each page its own short
statement: a percentage over millions of rooms never holds a long transaction or a large
result on the monolith's server.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.domain.phases import check_room_ids
from legacy_adapters.adapters.mariadb.schema import Room
from newcore.errors import MonolithUnavailable

PAGE = 10_000
CHUNK = 1000  # ids per IN (...) list


def _unavailable(exc: SQLAlchemyError) -> MonolithUnavailable:
    orig = getattr(exc, "orig", None)
    return MonolithUnavailable(
        f"monolith database, rooms: {exc.__class__.__name__}: {orig if orig is not None else exc}"
    )


class MariaDbRoomCatalog:
    """RoomCatalog over `engine`, the monolith's engine (legacy_adapters' make_engine), which
    its owner disposes of."""

    def __init__(self, engine: Engine, *, page_size: int = PAGE) -> None:
        if page_size < 1:
            raise ValueError(f"page_size is at least 1, got {page_size}")
        self._engine = engine
        self._page_size = page_size

    def room_ids(self) -> Iterator[int]:
        last = 0
        while True:
            try:
                with self._engine.connect() as conn:
                    page = list(
                        conn.execute(
                            select(Room.room_id)
                            .where(Room.room_id > last)
                            .order_by(Room.room_id)
                            .limit(self._page_size)
                        ).scalars()
                    )
            except SQLAlchemyError as exc:
                raise _unavailable(exc) from exc
            yield from page
            if len(page) < self._page_size:
                return
            last = page[-1]

    def exists(self, room_ids: Sequence[int]) -> set[int]:
        wanted = check_room_ids(room_ids)
        found: set[int] = set()
        try:
            with self._engine.connect() as conn:
                for start in range(0, len(wanted), CHUNK):
                    chunk = wanted[start : start + CHUNK]
                    found.update(
                        conn.execute(select(Room.room_id).where(Room.room_id.in_(chunk))).scalars()
                    )
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from exc
        return found
