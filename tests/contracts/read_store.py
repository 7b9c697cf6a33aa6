"""The ReadStore contract: one suite, run unchanged against every adapter of the port.

A subclass provides the `store` fixture and `reopen` (a new instance on the same storage, as
after a restart of the process).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from newcore.domain.events import CursorMoved, MessageDeleted, MessageUpserted
from newcore.domain.model import MAX_ID, Message, ReadCursor
from newcore.ports import ReadStore


def fresh_room() -> int:
    """Rooms differ per test, so suites on a shared real store never see each other's rows."""
    return random.randrange(1, 2**32)


def msg(
    room: int, mid: int, body: str = "本文", *, account: int = 7, update_time: int = 0
) -> Message:
    return Message(
        room, mid, account, body, send_time=1_700_000_000 + mid % 1000, update_time=update_time
    )


def up(message: Message, position: int) -> MessageUpserted:
    return MessageUpserted(message, position, captured_at_ms=1)


def gone(room: int, mid: int, position: int) -> MessageDeleted:
    return MessageDeleted(room, mid, position, captured_at_ms=1)


class ReadStoreContract:
    @pytest.fixture
    def store(self) -> Iterator[ReadStore]:
        raise NotImplementedError

    def reopen(self, store: ReadStore) -> ReadStore:
        raise NotImplementedError

    def test_an_empty_store_answers_empty(self, store: ReadStore) -> None:
        room = fresh_room()
        store.apply([])
        assert store.message(room, 1) is None
        assert store.latest(room, 100) == []
        assert store.after(room, 0, 100) == []
        assert store.cursor(room, 7) is None

    def test_applied_messages_read_back_exactly(self, store: ReadStore) -> None:
        room = fresh_room()
        body = "[To:12]佐藤さん\n絵文字 😀👍🏽 [info][title]お知らせ[/title]本文[/info] \ufffd"
        m = msg(room, 123456789012345678, body, update_time=1_700_000_123)
        store.apply([up(m, 5)])
        assert store.message(room, m.message_id) == m
        assert store.message(room, m.message_id + 1) is None

    def test_latest_is_the_highest_ids_oldest_first(self, store: ReadStore) -> None:
        room = fresh_room()
        ids = [1, 2, 255, 256, 65_536, 2**31, 10**17, 123456789012345678, MAX_ID]
        store.apply([up(msg(room, mid), 1) for mid in reversed(ids)])
        assert [m.message_id for m in store.latest(room, 4)] == ids[-4:]
        assert [m.message_id for m in store.latest(room, 100)] == ids
        assert store.latest(room, 0) == []

    def test_after_pages_forward_by_numeric_id(self, store: ReadStore) -> None:
        room = fresh_room()
        ids = [3, 255, 256, 257, 70_000, 10**17, MAX_ID]
        store.apply([up(msg(room, mid), 1) for mid in ids])
        assert [m.message_id for m in store.after(room, 0, 3)] == [3, 255, 256]
        assert [m.message_id for m in store.after(room, 256, 3)] == [257, 70_000, 10**17]
        assert [m.message_id for m in store.after(room, 10**17, 10)] == [MAX_ID]
        assert store.after(room, MAX_ID, 10) == []

    def test_rooms_never_mix(self, store: ReadStore) -> None:
        room = fresh_room()
        neighbours = [room + 1, room + 256, room - 1 if room > 1 else room + 2]
        store.apply([up(msg(room, 10), 1)] + [up(msg(other, 11), 1) for other in neighbours])
        assert [m.message_id for m in store.latest(room, 100)] == [10]
        assert [m.message_id for m in store.after(room, 0, 100)] == [10]
        assert store.message(room, 11) is None

    def test_the_highest_position_wins_in_any_order(self, store: ReadStore) -> None:
        room = fresh_room()
        old, new = msg(room, 40, "old"), msg(room, 40, "new", update_time=1_700_000_500)
        store.apply([up(new, 9)])
        store.apply([up(old, 3)])
        assert store.message(room, 40) == new
        store.apply([up(old, 2), up(new, 10), up(old, 4)])
        assert store.message(room, 40) == new

    def test_on_equal_positions_the_last_applied_wins(self, store: ReadStore) -> None:
        """One capture batch stamps all its states alike; a batch captured again after a crash
        reads newer states with the same stamp, and those come later in the log."""
        room = fresh_room()
        first, second = msg(room, 45, "first read"), msg(room, 45, "read again later")
        store.apply([up(first, 8)])
        store.apply([up(second, 8)])
        assert store.message(room, 45) == second
        store.apply([up(first, 8), gone(room, 45, 8)])
        assert store.message(room, 45) is None

    def test_redelivery_changes_nothing(self, store: ReadStore) -> None:
        room = fresh_room()
        event = up(msg(room, 50, "once"), 7)
        store.apply([event])
        store.apply([event, event])
        assert store.latest(room, 10) == [event.message]

    def test_a_deletion_hides_and_an_older_upsert_cannot_bring_it_back(
        self, store: ReadStore
    ) -> None:
        room = fresh_room()
        store.apply([up(msg(room, 60, "v1"), 3), up(msg(room, 61), 3)])
        store.apply([gone(room, 60, 5)])
        assert store.message(room, 60) is None
        store.apply([up(msg(room, 60, "late v2"), 4)])
        assert store.message(room, 60) is None
        assert [m.message_id for m in store.latest(room, 10)] == [61]
        assert [m.message_id for m in store.after(room, 0, 10)] == [61]
        store.apply([up(msg(room, 60, "restored"), 6)])
        assert store.message(room, 60) == msg(room, 60, "restored")

    def test_a_deletion_of_a_message_never_seen_stays_a_deletion(self, store: ReadStore) -> None:
        room = fresh_room()
        store.apply([gone(room, 70, 8)])
        store.apply([up(msg(room, 70), 7)])
        assert store.message(room, 70) is None
        assert store.latest(room, 10) == []

    def test_latest_and_after_skip_deleted_and_still_fill_the_page(self, store: ReadStore) -> None:
        room = fresh_room()
        store.apply([up(msg(room, mid), 1) for mid in range(1, 31)])
        store.apply([gone(room, mid, 2) for mid in range(11, 31)])
        assert [m.message_id for m in store.latest(room, 5)] == [6, 7, 8, 9, 10]
        assert [m.message_id for m in store.after(room, 7, 5)] == [8, 9, 10]

    def test_cursors_keep_the_highest_position_per_account(self, store: ReadStore) -> None:
        room = fresh_room()
        newer, older = ReadCursor(room, 7, 500, 600), ReadCursor(room, 7, 100, 100)
        store.apply([CursorMoved(newer, 12, 1), CursorMoved(older, 11, 1)])
        store.apply([CursorMoved(ReadCursor(room, 8, 0, MAX_ID), 1, 1)])
        assert store.cursor(room, 7) == newer
        assert store.cursor(room, 8) == ReadCursor(room, 8, 0, MAX_ID)
        assert store.cursor(room, 9) is None
        store.apply([CursorMoved(ReadCursor(room, 7, 450, 600), 13, 1)])  # "unread" moves back
        assert store.cursor(room, 7) == ReadCursor(room, 7, 450, 600)

    def test_what_apply_returned_from_survives_a_reopen(self, store: ReadStore) -> None:
        room = fresh_room()
        store.apply(
            [up(msg(room, 80, "durable"), 1), CursorMoved(ReadCursor(room, 7, 80, 80), 1, 1)]
        )
        again = self.reopen(store)
        try:
            assert again.message(room, 80) == msg(room, 80, "durable")
            assert again.cursor(room, 7) == ReadCursor(room, 7, 80, 80)
        finally:
            again.close()

    # -- room_position: how far the read model has applied a room -----------------------------

    def test_room_position_is_none_for_a_room_never_applied(self, store: ReadStore) -> None:
        room = fresh_room()
        assert store.room_position(room) is None
        store.apply([])
        assert store.room_position(room) is None

    def test_room_position_is_the_highest_applied_and_never_goes_down(
        self, store: ReadStore
    ) -> None:
        room = fresh_room()
        store.apply([up(msg(room, 1), 5), up(msg(room, 2), 3)])
        assert store.room_position(room) == 5  # visible as soon as apply returns
        store.apply([gone(room, 1, 9)])
        assert store.room_position(room) == 9
        store.apply([up(msg(room, 3), 2), up(msg(room, 4), 7)])  # a lower batch, later
        assert store.room_position(room) == 9
        assert store.message(room, 3) == msg(room, 3)  # its data is applied all the same
        store.apply([CursorMoved(ReadCursor(room, 7, 4, 4), 12, 1)])  # every kind of event counts
        assert store.room_position(room) == 12
        store.apply([up(msg(room, 4), 12)])  # the same position again
        assert store.room_position(room) == 12

    def test_room_position_is_per_room(self, store: ReadStore) -> None:
        room = fresh_room()
        other = room + 1
        store.apply([up(msg(room, 1), 4), up(msg(other, 1), 40), up(msg(room, 2), 6)])
        assert store.room_position(room) == 6
        assert store.room_position(other) == 40
        assert store.room_position(room + 2) is None

    def test_room_position_never_shows_as_a_cursor(self, store: ReadStore) -> None:
        """The position is kept apart from every account's cursor, account 0 included."""
        room = fresh_room()
        store.apply([up(msg(room, 1), 2**40)])
        assert store.cursor(room, 0) is None
        store.apply([CursorMoved(ReadCursor(room, 0, 1, 1), 3, 1)])
        assert store.cursor(room, 0) == ReadCursor(room, 0, 1, 1)
        assert store.room_position(room) == 2**40

    def test_room_position_survives_a_reopen(self, store: ReadStore) -> None:
        room = fresh_room()
        store.apply([up(msg(room, 1), 31)])
        again = self.reopen(store)
        try:
            assert again.room_position(room) == 31
        finally:
            again.close()
