"""`RoomCursors` over the in-memory monolith (legacy_adapters' InMemoryMonolith): held to the
same contract as the MariaDB adapter (`tests/contracts/room_cursors.py`)."""

from __future__ import annotations

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from newcore.domain.model import ReadCursor


class MemoryRoomCursors:
    def __init__(self, monolith: InMemoryMonolith) -> None:
        self._monolith = monolith

    def cursors(self, room_id: int, after_account: int, limit: int) -> list[ReadCursor]:
        if limit < 1:
            raise ValueError(f"a page of cursors holds at least one, got limit {limit}")
        accounts = sorted(
            account
            for room, account in self._monolith.cursors
            if room == room_id and account > after_account
        )[:limit]
        return [
            ReadCursor(room_id, account, *self._monolith.cursors[(room_id, account)])
            for account in accounts
        ]
