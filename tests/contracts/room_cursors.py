"""The RoomCursors contract (migrator/ports.py): one suite for the MariaDB adapter and the
memory one.

A subclass provides the `cursors` fixture: (port, arranger), where the arranger moves cursors
as the monolith stores them (`move_cursor(room, account, last_read, last_fetched)`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Protocol

import pytest

from migrator.ports import RoomCursors
from newcore.domain.model import ReadCursor


class CursorArranger(Protocol):
    def move_cursor(
        self, room_id: int, account_id: int, last_read: int, last_fetched: int
    ) -> None: ...


Cursors = tuple[RoomCursors, CursorArranger]


def fresh_room() -> int:
    return random.randrange(3_000_000_000, 4_000_000_000)


class RoomCursorsContract:
    @pytest.fixture
    def cursors(self) -> Iterator[Cursors]:
        raise NotImplementedError

    def test_a_room_s_cursors_in_pages_by_account(self, cursors: Cursors) -> None:
        port, arrange = cursors
        room, other = fresh_room(), fresh_room()
        big = 2**64 - 1
        for account in (30, 7, 12, 4_294_967_295):
            arrange.move_cursor(room, account, account * 10, big)
        arrange.move_cursor(other, 8, 1, 1)
        assert port.cursors(room, 0, 2) == [
            ReadCursor(room, 7, 70, big), ReadCursor(room, 12, 120, big)
        ]  # fmt: skip
        assert port.cursors(room, 12, 2) == [
            ReadCursor(room, 30, 300, big), ReadCursor(room, 4_294_967_295, 42_949_672_950, big)
        ]  # fmt: skip
        assert port.cursors(room, 4_294_967_295, 2) == []
        assert port.cursors(room, 0, 100) == port.cursors(room, 0, 2) + port.cursors(room, 12, 2)

    def test_a_room_without_cursors_and_a_bad_limit(self, cursors: Cursors) -> None:
        port, _ = cursors
        assert port.cursors(fresh_room(), 0, 10) == []
        with pytest.raises(ValueError, match="limit"):
            port.cursors(fresh_room(), 0, 0)

    def test_a_page_reads_what_is_committed_now(self, cursors: Cursors) -> None:
        port, arrange = cursors
        room = fresh_room()
        arrange.move_cursor(room, 5, 1, 1)
        assert port.cursors(room, 0, 10) == [ReadCursor(room, 5, 1, 1)]
        arrange.move_cursor(room, 5, 9, 10)
        assert port.cursors(room, 0, 10) == [ReadCursor(room, 5, 9, 10)]
