"""The memory RoomCursors holds the RoomCursors contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from migrator.adapters.embedded.memory_cursors import MemoryRoomCursors
from tests.contracts.room_cursors import Cursors, RoomCursorsContract


class TestMemoryRoomCursors(RoomCursorsContract):
    @pytest.fixture
    def cursors(self) -> Iterator[Cursors]:
        monolith = InMemoryMonolith()
        yield MemoryRoomCursors(monolith), monolith
