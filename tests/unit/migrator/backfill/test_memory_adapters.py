"""The in-memory checkpoint store and room history hold their ports' contracts (the MariaDB
adapters run the same suites in tests/integration/migrator/backfill/)."""

from __future__ import annotations

import pytest

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from legacy_adapters.domain.translation import LegacyMessageRow
from migrator.adapters.embedded.memory_checkpoints import MemoryCheckpointStore
from migrator.adapters.embedded.memory_history import MemoryRoomHistory
from tests.contracts.checkpoint_store import CheckpointStoreContract, Store
from tests.contracts.room_history import RoomHistoryContract, World


class TestMemoryCheckpointStore(CheckpointStoreContract):
    @pytest.fixture
    def stores(self) -> tuple[Store, Store]:
        store = MemoryCheckpointStore()
        return store, store


class MemoryRows:
    def __init__(self, monolith: InMemoryMonolith) -> None:
        self._monolith = monolith
        self._next_room = 100

    def room(self) -> int:
        self._next_room += 1
        self._monolith.add_room(self._next_room)
        return self._next_room

    def message(
        self, room_id: int, message_id: int, send_time: int | None, deleted: int = 0
    ) -> None:
        self._monolith.put(
            LegacyMessageRow(
                message_id, room_id, 1, "body", None, None, send_time, 0, None, deleted
            )
        )

    def purge(self, message_id: int) -> None:
        self._monolith.purge(message_id)


class TestMemoryRoomHistory(RoomHistoryContract):
    @pytest.fixture
    def world(self) -> World:
        monolith = InMemoryMonolith()
        return World(MemoryRoomHistory(monolith), MemoryRows(monolith), base=1000)
