"""The MariaDB reader holds the MonolithReader contract, and its mappings match the schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, insert, inspect

from legacy_adapters.monolith_reader import MariaDbMonolithReader
from legacy_adapters.schema import Legacy, LegacyCursor, LegacyMessage, Room
from legacy_adapters.settings import LegacyDatabaseSettings
from legacy_adapters.translation import LegacyMessageRow
from newcore.ports import MonolithUnavailable
from tests.contracts.monolith_reader import Monolith, MonolithReaderContract


class SqlArranger:
    """Writes rows as the monolith stores them, through the typed mappings."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add_room(self, room_id: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(Room).values(room_id=room_id, name="r", type="group", last_update_time=0)
            )

    def put(self, row: LegacyMessageRow) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(LegacyMessage).values(**{f: getattr(row, f) for f in row.__slots__})
            )

    def purge(self, message_id: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(LegacyMessage).where(LegacyMessage.message_id == message_id))

    def move_cursor(self, room_id: int, account_id: int, last_read: int, last_fetched: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(LegacyCursor).values(
                    room_id=room_id, account_id=account_id,
                    last_read_message_id=last_read, last_fetched_message_id=last_fetched,
                )
            )  # fmt: skip


class TestMariaDbMonolithReader(MonolithReaderContract):
    @pytest.fixture
    def monolith(self, scratch: tuple[LegacyDatabaseSettings, Engine]) -> Iterator[Monolith]:
        _, engine = scratch
        yield MariaDbMonolithReader(engine), SqlArranger(engine)


def test_the_typed_mappings_match_the_live_schema(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    _, engine = scratch
    live = inspect(engine)
    for table in Legacy.metadata.sorted_tables:
        columns = {c["name"]: c["nullable"] for c in live.get_columns(table.name)}
        mapped = {c.name: c.nullable for c in table.columns if not c.primary_key}
        assert {name: columns[name] for name in mapped} == mapped, table.name
        assert set(mapped) | {c.name for c in table.primary_key} <= set(columns), table.name


def test_a_missing_database_is_monolith_unavailable(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    from legacy_adapters.database import make_engine

    settings, _ = scratch
    reader = MariaDbMonolithReader(make_engine(settings.model_copy(update={"mariadb_port": 1})))
    with pytest.raises(MonolithUnavailable, match="monolith database: OperationalError"):
        reader.read_messages([(1, 1)])
