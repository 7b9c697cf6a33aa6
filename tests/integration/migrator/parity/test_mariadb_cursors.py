"""The MariaDB RoomCursors holds the RoomCursors contract on a scratch monolith database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.dialects.mysql import insert

from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.adapters.mariadb.schema import LegacyCursor
from legacy_adapters.settings import LegacyDatabaseSettings
from migrator.adapters.mariadb.cursors import MariaDbRoomCursors
from newcore.errors import MonolithUnavailable
from tests.contracts.room_cursors import Cursors, RoomCursorsContract
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def scratch(stack: Stack) -> Iterator[Engine]:
    with scratch_database(stack) as (_, engine):
        yield engine


class Upserts:
    """Moves cursors as the PHP app does: one row per (room, account), updated in place."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def move_cursor(self, room_id: int, account_id: int, last_read: int, last_fetched: int) -> None:
        values = {"last_read_message_id": last_read, "last_fetched_message_id": last_fetched}
        with self._engine.begin() as conn:
            conn.execute(
                insert(LegacyCursor)
                .values(room_id=room_id, account_id=account_id, **values)
                .on_duplicate_key_update(**values)
            )


class TestMariaDbRoomCursors(RoomCursorsContract):
    @pytest.fixture
    def cursors(self, scratch: Engine) -> Iterator[Cursors]:
        yield MariaDbRoomCursors(scratch), Upserts(scratch)


def test_a_database_that_does_not_answer_is_unavailable(stack: Stack) -> None:
    nowhere = make_engine(
        LegacyDatabaseSettings(
            mariadb_host=stack.host, mariadb_port=1, db_name="x", db_user="x",
            db_password=SecretStr("x"),
        )
    )  # fmt: skip
    try:
        with pytest.raises(MonolithUnavailable, match="room_cursors"):
            MariaDbRoomCursors(nowhere).cursors(1, 0, 10)
    finally:
        nowhere.dispose()
