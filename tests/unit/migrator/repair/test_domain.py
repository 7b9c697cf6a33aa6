"""The repair's rules: which hint each parity difference becomes, merged per row and deduplicated
with a bound; range hints over a lost room's chunks; which lost rooms may be forgotten."""

from __future__ import annotations

import pytest

from migrator.domain.parity import Kind
from migrator.domain.repair import (
    HintsFromDifferences,
    PlannedHint,
    RepairTally,
    describe_lost,
    hint_for,
    lost_rooms_to_forget,
    range_hints,
)
from migrator.ports import LostRoom
from newcore.domain.hints import CursorHint, MessageHint, RangeHint
from tests.unit.migrator.repair.documents import cursor, message


@pytest.mark.parametrize(
    "kind", [Kind.MISSING_IN_NEW, Kind.EXTRA_IN_NEW, Kind.STALE, Kind.FIELD_DIFFERS]
)
def test_a_message_difference_becomes_a_message_hint(kind: Kind) -> None:
    assert hint_for(message(12, 345, kind)) == MessageHint(12, 345)


@pytest.mark.parametrize("kind", [Kind.CURSOR_MISSING, Kind.CURSOR_DIFFERS])
def test_a_cursor_difference_becomes_a_cursor_hint(kind: Kind) -> None:
    assert hint_for(cursor(12, 77, kind)) == CursorHint(12, 77)


def test_an_unreadable_legacy_row_gets_no_hint() -> None:
    assert hint_for(message(12, 345, Kind.UNREADABLE_LEGACY)) is None


def run(differences: list, remembered: int = 100) -> tuple[list[PlannedHint], RepairTally]:  # type: ignore[type-arg]
    tally = RepairTally()
    planner = HintsFromDifferences(tally, remembered)
    planned = [p for d in differences for p in planner.add(d)]
    planned.extend(planner.finish())
    return planned, tally


def test_differences_of_one_row_are_one_hint_naming_every_field() -> None:
    planned, tally = run(
        [
            message(12, 1, Kind.STALE, "body"),
            message(12, 1, Kind.STALE, "update_time"),
            message(12, 2, Kind.MISSING_IN_NEW, "message"),
            cursor(12, 7),
            message(12, 3, Kind.UNREADABLE_LEGACY, "body"),
            message(34, 1, Kind.EXTRA_IN_NEW, "message"),
            message(12, 1, Kind.FIELD_DIFFERS, "body"),  # room 12 again: a new room's run
        ]
    )
    assert [(p.hint, p.why) for p in planned] == [
        (MessageHint(12, 1), "stale: body, stale: update_time"),
        (MessageHint(12, 2), "missing_in_new: message"),
        (CursorHint(12, 7), "cursor_differs: last_read_message_id"),
        (MessageHint(34, 1), "extra_in_new: message"),
        (MessageHint(12, 1), "field_differs: body"),
    ]
    assert (tally.rooms[12].messages, tally.rooms[12].cursors, tally.rooms[12].unreadable) == (
        3, 1, 1,
    )  # fmt: skip
    assert tally.hints == 5
    assert planned[0].describe() == "room 12: message 1 (stale: body, stale: update_time)"
    assert planned[2].describe().startswith("room 12: cursor of account 7")


def test_a_row_met_again_later_in_its_room_is_dropped_while_remembered() -> None:
    again = [message(12, 1, Kind.STALE), message(12, 2, Kind.STALE), message(12, 1, Kind.STALE)]
    planned, _ = run(again)
    assert [p.hint for p in planned] == [MessageHint(12, 1), MessageHint(12, 2)]
    # Beyond the bound the oldest key is forgotten: the duplicate is sent (harmless).
    planned, _ = run(again, remembered=1)
    assert [p.hint for p in planned] == [MessageHint(12, 1), MessageHint(12, 2), MessageHint(12, 1)]


LOST = LostRoom(12, 3, 1_714_550_400.0, 1_714_550_460.5)


def test_range_hints_cover_the_room_chunk_by_chunk_from_its_first_id() -> None:
    planned = range_hints(LOST, 0, [100, 250, 251])
    assert [p.hint for p in planned] == [
        RangeHint(12, 1, 100), RangeHint(12, 101, 250), RangeHint(12, 251, 251),
    ]  # fmt: skip
    assert planned[0].why == (
        "lost hints: 3 hint(s) lost between 2024-05-01 08:00:00 UTC and 2024-05-01 08:01:00 UTC"
    )
    assert [p.hint for p in range_hints(LOST, 251, [400])] == [RangeHint(12, 252, 400)]
    assert planned[1].describe() == f"room 12: range 101..250 ({planned[1].why})"
    assert describe_lost(LOST).startswith("3 hint(s) lost")


def test_a_lost_room_is_forgotten_only_if_it_lost_nothing_since_it_was_read() -> None:
    same = LostRoom(1, 2, 10.0, 20.1234)
    rounded = LostRoom(2, 2, 10.0, 20.123)  # the file's millisecond rounding of 20.1234
    more = LostRoom(3, 2, 10.0, 20.0)
    later = LostRoom(4, 2, 10.0, 20.0)
    gone = LostRoom(5, 1, 10.0, 10.0)
    now = [
        LostRoom(1, 2, 10.0, 20.1234), LostRoom(2, 2, 10.0, 20.1234), LostRoom(3, 3, 10.0, 21.0),
        LostRoom(4, 2, 10.0, 25.0), LostRoom(6, 1, 30.0, 30.0),
    ]  # fmt: skip
    forget, keep = lost_rooms_to_forget([same, rounded, more, later, gone], now)
    assert (forget, keep) == ([1, 2], [3, 4])
