"""The control follower: the snapshot every request is routed by, and the room map the front
door reads; the last snapshot stays when the store is away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore
from gateway.domain.phases import ControlSnapshot, Phase
from gateway.errors import ControlStoreUnavailable
from gateway.service.control import ControlFollower, routed_rooms
from newcore.errors import Unavailable

LOG = logging.getLogger("test")


class RoomMap:
    def __init__(self) -> None:
        self.published: list[list[int]] = []
        self.down = False

    def publish(self, room_ids: Iterable[int]) -> bool:
        if self.down:
            raise Unavailable("front door pid file missing")
        self.published.append(list(room_ids))
        return True


class Flaky(MemoryPhaseStore):
    def __init__(self) -> None:
        super().__init__()
        self.away = False

    def revision(self) -> int:
        if self.away:
            raise ControlStoreUnavailable("gone")
        return super().revision()


def test_routed_rooms_are_the_inspected_ones_and_none_under_the_kill_switch() -> None:
    phases = {1: Phase.DUAL_WRITE, 2: Phase.SHADOW_READ, 3: Phase.LEGACY}
    assert routed_rooms(ControlSnapshot(1, False, phases)) == [1, 2]
    assert routed_rooms(ControlSnapshot(1, True, phases)) == []


def test_a_move_reaches_the_snapshot_and_the_room_map_at_the_next_poll() -> None:
    async def go() -> None:
        store, room_map = MemoryPhaseStore(), RoomMap()
        follower = ControlFollower(store, 0.01, LOG, room_map)
        await follower.load()
        assert room_map.published == [[]]
        store.move([7], Phase.DUAL_WRITE, "ops", "first room")
        assert follower.snapshot.phase_of(7) is Phase.LEGACY
        await follower.poll_once()
        assert follower.snapshot.phase_of(7) is Phase.DUAL_WRITE
        assert room_map.published[-1] == [7]
        await follower.poll_once()  # nothing changed: nothing published again
        assert len(room_map.published) == 2
        store.set_kill_switch(True, "ops", "incident")
        await follower.poll_once()
        assert follower.snapshot.phase_of(7) is Phase.LEGACY and room_map.published[-1] == []

    asyncio.run(go())


def test_the_last_snapshot_stays_while_the_store_is_away() -> None:
    async def go() -> None:
        store = Flaky()
        store.move([7], Phase.DUAL_WRITE, "ops", "first room")
        follower = ControlFollower(store, 0.01, LOG, RoomMap())
        await follower.load()
        store.away = True
        await follower.poll_once()
        assert follower.snapshot.phase_of(7) is Phase.DUAL_WRITE
        age = follower.age_s()
        assert age is not None and age >= 0
        store.away = False
        store.move([7], Phase.LEGACY, "ops", "rollback")
        await follower.poll_once()
        assert follower.snapshot.phase_of(7) is Phase.LEGACY

    asyncio.run(go())


def test_a_front_door_that_cannot_be_told_is_told_at_the_next_poll() -> None:
    async def go() -> None:
        store, room_map = MemoryPhaseStore(), RoomMap()
        room_map.down = True
        follower = ControlFollower(store, 0.01, LOG, room_map)
        store.move([7], Phase.DUAL_WRITE, "ops", "first room")
        await follower.load()
        assert room_map.published == []
        room_map.down = False
        await follower.poll_once()
        assert room_map.published == [[7]]

    asyncio.run(go())
