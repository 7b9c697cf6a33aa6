"""The room catalog reads the monolith's rooms (a scratch monolith database): every room once,
ascending, across pages; which of some ids are rooms."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from gateway.adapters.mariadb.room_catalog import MariaDbRoomCatalog
from gateway.domain.phases import MAX_ROOM_ID, select_percentage
from gateway.ports import RoomCatalog
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.errors import MonolithUnavailable
from tests.support.arranger import SqlArranger
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack

ROOMS = [1, 2, 3, 255, 256, 1000, 65_536, 2**31, MAX_ROOM_ID]


@pytest.fixture
def scratch(stack: Stack) -> Iterator[tuple[LegacyDatabaseSettings, Engine]]:
    with scratch_database(stack) as database:
        yield database


def arranged(engine: Engine) -> None:
    arranger = SqlArranger(engine)
    for room_id in ROOMS:
        arranger.add_room(room_id)


def test_room_ids_lists_every_room_once_ascending_across_pages(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    _, engine = scratch
    arranged(engine)
    for page_size in (1, 2, 4, 9, 10, 10_000):
        assert list(MariaDbRoomCatalog(engine, page_size=page_size).room_ids()) == ROOMS


def test_an_empty_monolith_has_no_rooms(scratch: tuple[LegacyDatabaseSettings, Engine]) -> None:
    _, engine = scratch
    assert list(MariaDbRoomCatalog(engine).room_ids()) == []
    assert MariaDbRoomCatalog(engine).exists([1, 2]) == set()


def test_exists_answers_which_ids_are_rooms(scratch: tuple[LegacyDatabaseSettings, Engine]) -> None:
    _, engine = scratch
    arranged(engine)
    catalog: RoomCatalog = MariaDbRoomCatalog(engine)
    assert catalog.exists([4, 3, MAX_ROOM_ID, 257]) == {3, MAX_ROOM_ID}
    assert catalog.exists(list(range(1, 2500))) == {1, 2, 3, 255, 256, 1000}
    assert catalog.exists([]) == set()
    with pytest.raises(ValueError, match="room id"):
        catalog.exists([0])


def test_a_percentage_selects_from_the_catalog(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    _, engine = scratch
    arranged(engine)
    assert select_percentage(MariaDbRoomCatalog(engine).room_ids(), 100) == ROOMS


def test_an_unreachable_monolith_is_monolith_unavailable(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    settings, _ = scratch
    engine = make_engine(settings.model_copy(update={"mariadb_port": 1}))
    catalog = MariaDbRoomCatalog(engine)
    try:
        with pytest.raises(MonolithUnavailable, match="monolith database, rooms"):
            list(catalog.room_ids())
        with pytest.raises(MonolithUnavailable, match="monolith database, rooms"):
            catalog.exists([1])
    finally:
        engine.dispose()
