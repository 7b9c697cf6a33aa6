"""RoomHistory over the in-memory monolith (legacy_adapters' InMemoryMonolith): for unit tests
of the backfill and a first look without MariaDB. Held to the same contract suite as the
MariaDB adapter (tests/contracts/room_history.py)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.domain.phases import check_room_id
from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from migrator.ports import RoomBounds


class MemoryRoomHistory:
    def __init__(self, monolith: InMemoryMonolith, fingerprint: str = "memory:monolith") -> None:
        self._monolith = monolith
        self._fingerprint = fingerprint

    def _ids(self, room_id: int) -> list[int]:
        check_room_id(room_id)
        return sorted(
            mid for mid, row in list(self._monolith.messages.items()) if row.room_id == room_id
        )

    def fingerprint(self) -> str:
        return self._fingerprint

    def bounds(self, room_id: int) -> RoomBounds | None:
        ids = self._ids(room_id)
        return RoomBounds(room_id, ids[0], ids[-1], len(ids)) if ids else None

    def chunk_ends(self, room_id: int, after: int, high: int, rows: int, count: int) -> list[int]:
        if rows < 1 or count < 1 or after < 0:
            raise ValueError(
                f"rows and count are at least 1, after 0, got {rows}, {count}, {after}"
            )
        ids = [mid for mid in self._ids(room_id) if after < mid <= high]
        ends = ids[rows - 1 :: rows][:count]
        if len(ends) < count and ids and (not ends or ends[-1] != ids[-1]):
            ends.append(ids[-1])
        return ends

    def activity(self, room_ids: Sequence[int], since_unix: int) -> dict[int, int]:
        found: dict[int, int] = {}
        for room_id in room_ids:
            sent = 0
            for mid in reversed(self._ids(room_id)):
                send_time = self._monolith.messages[mid].send_time
                if send_time is None or send_time < since_unix:
                    break
                sent += 1
            if sent:
                found[room_id] = sent
        return found
