"""The in-memory control store holds the PhaseStore contract; the memory room catalog answers
like the monolith's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore, MemoryRoomCatalog
from gateway.domain.phases import Phase
from gateway.ports import PhaseStore, RoomCatalog
from tests.contracts.phase_store import PhaseStoreContract


class TestMemoryPhaseStore(PhaseStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[PhaseStore]:
        store = MemoryPhaseStore()
        yield store
        store.close()


def test_the_clock_stamps_each_change() -> None:
    ticks = iter(datetime(2024, 5, 1, 9, 0, s, tzinfo=UTC) for s in range(10))
    store = MemoryPhaseStore(clock=lambda: next(ticks))
    moved = store.move([7], Phase.DUAL_WRITE, "ops", "start").moved[0]
    assert moved.at == datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
    record = store.mark_backfilled(7, "backfill")
    assert record.backfilled_at == moved.at + timedelta(seconds=1)
    assert record.changed_at == moved.at


def test_the_room_catalog_lists_ascending_and_answers_which_exist() -> None:
    catalog: RoomCatalog = MemoryRoomCatalog([30, 10, 20, 10])
    assert list(catalog.room_ids()) == [10, 20, 30]
    assert catalog.exists([20, 21, 10]) == {10, 20}
    assert catalog.exists([]) == set()
    with pytest.raises(ValueError, match="room id"):
        catalog.exists([0])
    with pytest.raises(ValueError, match="room id"):
        MemoryRoomCatalog([2**32])
