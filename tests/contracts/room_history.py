"""The RoomHistory contract: one suite, run unchanged against every adapter of the port.

A subclass provides the `world` fixture: a `History` (the adapter) over a monolith the test
writes to through `Rows` (rooms and message rows with the ids and send times it chooses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pytest

from migrator.ports import RoomBounds, RoomHistory


class Rows(Protocol):
    def room(self) -> int:
        """A new room, with no message."""
        ...

    def message(
        self, room_id: int, message_id: int, send_time: int | None, deleted: int = 0
    ) -> None:
        """A message row with this id (ids ascend within a test)."""
        ...

    def purge(self, message_id: int) -> None:
        """Hard-deletes the row."""
        ...


@dataclass
class World:
    history: RoomHistory
    rows: Rows
    base: int  # message ids of a test start above this


class RoomHistoryContract:
    @pytest.fixture
    def world(self) -> World:
        raise NotImplementedError

    def fill(self, world: World, room: int, ids: list[int], send_time: int | None = 1) -> None:
        for message_id in ids:
            world.rows.message(room, world.base + message_id, send_time)

    def test_the_fingerprint_is_stable_text(self, world: World) -> None:
        first = world.history.fingerprint()
        assert isinstance(first, str) and first
        assert world.history.fingerprint() == first

    def test_a_room_without_messages_has_no_bounds(self, world: World) -> None:
        assert world.history.bounds(world.rows.room()) is None

    def test_bounds_count_every_row_soft_deleted_ones_too(self, world: World) -> None:
        b = world.base
        room, other = world.rows.room(), world.rows.room()
        self.fill(world, room, [3, 5])
        world.rows.message(room, b + 8, 1, deleted=1)
        self.fill(world, other, [9])
        self.fill(world, room, [12])
        assert world.history.bounds(room) == RoomBounds(room, b + 3, b + 12, 4)
        assert world.history.bounds(other) == RoomBounds(other, b + 9, b + 9, 1)
        world.rows.purge(b + 12)
        assert world.history.bounds(room) == RoomBounds(room, b + 3, b + 8, 3)

    def test_chunks_cut_the_range_in_pieces_of_at_most_rows(self, world: World) -> None:
        b = world.base
        room, other = world.rows.room(), world.rows.room()
        ids = [1, 2, 4, 7, 8, 10, 11, 15, 16, 20]
        self.fill(world, room, ids)
        self.fill(world, other, [3, 5, 6, 9])  # interleaved ids of another room never count
        ends = world.history.chunk_ends(room, b, b + 20, 3, 10)
        assert ends == [b + 4, b + 10, b + 16, b + 20]
        # The next chunks after a given end; fewer than asked when the range runs out.
        assert world.history.chunk_ends(room, b + 4, b + 20, 3, 2) == [b + 10, b + 16]
        assert world.history.chunk_ends(room, b + 16, b + 20, 3, 2) == [b + 20]
        assert world.history.chunk_ends(room, b + 20, b + 20, 3, 2) == []
        # `high` bounds the range: ids above it are not the backfill's.
        assert world.history.chunk_ends(room, b, b + 9, 3, 10) == [b + 4, b + 8]
        # A range whose rows divide evenly ends on its last full chunk, with no empty one.
        assert world.history.chunk_ends(room, b, b + 20, 5, 10) == [b + 8, b + 20]
        assert world.history.chunk_ends(room, b, b + 20, 1, 3) == [b + 1, b + 2, b + 4]

    def test_chunks_after_purges_end_at_the_highest_id_left(self, world: World) -> None:
        b = world.base
        room = world.rows.room()
        self.fill(world, room, [1, 2, 3, 4, 5, 6])
        world.rows.purge(b + 5)
        world.rows.purge(b + 6)
        assert world.history.chunk_ends(room, b, b + 6, 4, 5) == [b + 4]
        for message_id in (1, 2, 3, 4):
            world.rows.purge(b + message_id)
        assert world.history.chunk_ends(room, b, b + 6, 4, 5) == []

    def test_bad_chunk_arguments_are_refused(self, world: World) -> None:
        room = world.rows.room()
        for rows, count in ((0, 1), (1, 0)):
            with pytest.raises(ValueError):
                world.history.chunk_ends(room, 0, 10, rows, count)
        with pytest.raises(ValueError):
            world.history.bounds(0)

    def test_activity_counts_messages_sent_since(self, world: World) -> None:
        b = world.base
        hot, warm, cold, empty = (world.rows.room() for _ in range(4))
        # Old rows first (no send time: before 2016, or long ago), then recent ones.
        world.rows.message(hot, b + 1, None)
        world.rows.message(hot, b + 2, 100)
        for message_id in range(3, 8):
            world.rows.message(hot, b + message_id, 1000 + message_id)
        world.rows.message(warm, b + 8, 500)
        world.rows.message(warm, b + 9, 1000)
        world.rows.message(cold, b + 10, 999)
        found = world.history.activity([hot, warm, cold, empty], 1000)
        assert found == {hot: 5, warm: 1}
        assert world.history.activity([], 1000) == {}
        assert world.history.activity([hot], 0) == {hot: 6}
