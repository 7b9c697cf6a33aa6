"""Phases, guards and the sticky selection of rooms (pure logic)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.phases import (
    INSPECTED,
    MAX_ROOM_ID,
    ORDER,
    ControlSnapshot,
    Phase,
    RoomRecord,
    Transition,
    bucket,
    check_room_id,
    check_who,
    check_why,
    guard,
    in_percentage,
    parse_phase,
    percentage_threshold,
    plan_move,
    select_percentage,
)

L, DW, SR, NP, NO = ORDER
AT = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def record(phase: Phase, *, backfilled: bool = False, parity: bool = False) -> RoomRecord:
    return RoomRecord(
        room_id=7,
        phase=phase,
        backfilled_at=AT if backfilled else None,
        parity_clean_at=AT if parity else None,
        parity_positions="p" if parity else None,
        changed_at=AT,
    )


# -- phases --------------------------------------------------------------------------------


def test_the_phases_in_their_order_and_their_stored_names() -> None:
    assert [p.value for p in ORDER] == [
        "legacy", "dual_write", "shadow_read", "new_primary", "new_only",
    ]  # fmt: skip
    assert {DW, SR, NP} == INSPECTED
    assert parse_phase("shadow_read") is SR
    with pytest.raises(ValueError, match="unknown phase 'Legacy' \\(known: legacy, dual_write"):
        parse_phase("Legacy")


# -- guards --------------------------------------------------------------------------------


def test_legacy_to_dual_write_always() -> None:
    assert guard(record(L), DW) is None


def test_shadow_read_needs_the_backfill() -> None:
    assert "backfill" in (guard(record(DW), SR) or "")
    assert guard(record(DW, backfilled=True), SR) is None


@pytest.mark.parametrize("parity", [False, True])
def test_new_primary_is_not_built_and_would_need_clean_parity(parity: bool) -> None:
    reason = guard(record(SR, backfilled=True, parity=parity), NP)
    assert reason is not None
    assert "not built in this version" in reason and "clean parity" in reason
    assert ("none is recorded" in reason) is not parity


@pytest.mark.parametrize(("here", "to"), [(L, SR), (L, NP), (L, NO), (DW, NP), (DW, NO), (SR, NO)])
def test_forward_is_one_step_at_a_time(here: Phase, to: Phase) -> None:
    reason = guard(record(here, backfilled=True, parity=True), to)
    assert reason is not None and "one step at a time" in reason
    assert f"{here} goes to {ORDER[ORDER.index(here) + 1]} first" in reason


def test_new_primary_to_new_only_is_the_next_step() -> None:
    """The README's rules name no guard for it (a room cannot reach new_primary in this
    version anyway)."""
    assert guard(record(NP), NO) is None


@pytest.mark.parametrize("to", [L, DW, SR, NP])
def test_new_only_is_final(to: Phase) -> None:
    assert "final" in (guard(record(NO), to) or "")


@pytest.mark.parametrize(
    ("here", "to"), [(a, b) for a in (DW, SR, NP) for b in ORDER if ORDER.index(b) < ORDER.index(a)]
)
def test_rollback_to_any_earlier_phase_needs_nothing(here: Phase, to: Phase) -> None:
    assert guard(record(here), to) is None


@pytest.mark.parametrize("phase", ORDER)
def test_the_same_phase_passes_the_guard(phase: Phase) -> None:
    assert guard(record(phase), phase) is None


def test_a_plan_reports_moved_unchanged_and_refused_in_order() -> None:
    rooms = [
        RoomRecord(3, DW, backfilled_at=AT),
        RoomRecord(1, SR),
        RoomRecord.absent(2),
        RoomRecord(4, DW),
    ]
    report = plan_move(rooms, SR, "ops", "wave", AT)
    assert report.moved == [Transition(3, DW, SR, "ops", "wave", AT)]
    assert report.unchanged == [1]
    assert list(report.refused) == [2, 4]
    assert "one step" in report.refused[2] and "backfill" in report.refused[4]


# -- the snapshot --------------------------------------------------------------------------


def test_a_snapshot_answers_legacy_for_absent_rooms_and_under_the_kill_switch() -> None:
    phases = {1: DW, 2: SR, 3: NP, 4: L, 5: NO}
    snapshot = ControlSnapshot(revision=9, kill_switch=False, phases=phases)
    assert [snapshot.phase_of(r) for r in (1, 2, 3, 4, 5, 6)] == [DW, SR, NP, L, NO, L]
    assert snapshot.inspected_rooms() == {1, 2, 3}
    killed = ControlSnapshot(revision=10, kill_switch=True, phases=phases)
    assert all(killed.phase_of(r) == L for r in phases)
    assert killed.inspected_rooms() == frozenset()
    assert dict(killed.phases) == phases


def test_a_snapshot_keeps_its_own_copy_of_the_phases() -> None:
    phases = {1: DW}
    snapshot = ControlSnapshot(revision=1, kill_switch=False, phases=phases)
    phases[2] = SR
    assert snapshot.phase_of(2) == L


# -- selection -----------------------------------------------------------------------------


def test_the_bucket_is_crc32_of_8_big_endian_bytes_mod_10000() -> None:
    assert bucket(1) == zlib.crc32(b"\x00\x00\x00\x00\x00\x00\x00\x01") % 10_000
    assert bucket(MAX_ROOM_ID) == zlib.crc32(bytes([0, 0, 0, 0, 255, 255, 255, 255])) % 10_000
    # Fixed values: another process, another version, another language agree on them.
    assert [bucket(r) for r in (1, 2, 1000, 123_456)] == [
        zlib.crc32(r.to_bytes(8, "big")) % 10_000 for r in (1, 2, 1000, 123_456)
    ]


@given(st.integers(1, MAX_ROOM_ID))
def test_a_room_in_1_percent_stays_in_10_and_in_100(room_id: int) -> None:
    if in_percentage(room_id, 1):
        assert in_percentage(room_id, 10)
    if in_percentage(room_id, 10):
        assert in_percentage(room_id, 50)
    assert in_percentage(room_id, 100)


def test_rooms_in_1_percent_stay_in_10_percent_over_many_ids() -> None:
    universe = range(1, 100_001)
    one, ten = set(select_percentage(universe, 1)), set(select_percentage(universe, 10))
    assert one and one < ten


@pytest.mark.parametrize("percent", [0.01, 0.5, 1, 10, 33.33, 50, 99.99, 100])
def test_a_percentage_selects_close_to_its_share_of_100000_ids(percent: float) -> None:
    chosen = select_percentage(range(1, 100_001), percent)
    expected = 100_000 * percent / 100
    # Five standard deviations of a binomial draw: a wrong hash or threshold is far outside.
    spread = 5 * (100_000 * percent / 100 * (1 - percent / 100)) ** 0.5 + 1
    assert abs(len(chosen) - expected) <= spread, (percent, len(chosen))


def test_select_percentage_keeps_the_universe_order() -> None:
    universe = [50_000, 3, 77, 12_345, 9]
    assert select_percentage(universe, 100) == universe
    assert select_percentage(reversed(universe), 100) == universe[::-1]


def test_percentage_thresholds_are_exact_in_steps_of_a_hundredth() -> None:
    assert percentage_threshold(1) == 100
    assert percentage_threshold(1.1) == 110  # not 110.00000000000001
    assert percentage_threshold(0.01) == 1
    assert percentage_threshold(100) == 10_000


@pytest.mark.parametrize(
    ("percent", "message"),
    [
        (0, "above 0 and at most 100"),
        (-5, "above 0 and at most 100"),
        (100.5, "above 0 and at most 100"),
        (float("nan"), "above 0 and at most 100"),
        (float("inf"), "above 0 and at most 100"),
        (0.001, "steps of 0.01"),
        (12.345, "steps of 0.01"),
        ("10", "a number"),
        (True, "a number"),
    ],
)
def test_a_bad_percentage_is_refused_before_any_room_is_read(percent: object, message: str) -> None:
    def universe() -> Iterator[int]:
        raise AssertionError("the universe was read")
        yield 0

    with pytest.raises(ValueError, match=message):
        select_percentage(universe(), percent)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        in_percentage(1, percent)  # type: ignore[arg-type]


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("room_id", [1, 2**31, MAX_ROOM_ID])
def test_room_ids_of_the_monolith_are_accepted(room_id: int) -> None:
    assert check_room_id(room_id) == room_id


@pytest.mark.parametrize("room_id", [0, -1, 2**32, 2**64, "1", 1.0, True, None])
def test_room_ids_the_monolith_cannot_have_are_refused(room_id: object) -> None:
    with pytest.raises(ValueError, match="room id"):
        check_room_id(room_id)
    with pytest.raises(ValueError, match="room id"):
        bucket(room_id)  # type: ignore[arg-type]


def test_who_and_why_are_checked() -> None:
    assert check_who("ops:alice") == "ops:alice"
    assert check_why("今日の移行 😀\nticket MIG-12") == "今日の移行 😀\nticket MIG-12"
    bad_who: list[tuple[object, str]] = [
        ("", "empty"), (" \t", "empty"), ("a" * 101, "at most 100"), ("a\tb", "one line"),
        (None, "text"),
    ]  # fmt: skip
    for who, message in bad_who:
        with pytest.raises(ValueError, match=message):
            check_who(who)
    bad_why: list[tuple[object, str]] = [("", "empty"), ("a" * 1001, "at most 1000"), (3, "text")]
    for why, message in bad_why:
        with pytest.raises(ValueError, match=message):
            check_why(why)
