"""The shadow record (counts by outcome, when each was last seen) and the guards that read it:
new_primary names every condition still missing; a direction refuses a move the other way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.phases import (
    ORDER,
    Direction,
    Phase,
    RoomRecord,
    check_shadow_batch,
    guard,
    plan_move,
)
from gateway.domain.shadow_record import ShadowCounts, ShadowTally, why_not_clean

L, DW, SR, NP, NO = ORDER
ENTERED = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
NOW = ENTERED + timedelta(hours=2)


def in_shadow_read(*, parity_at: datetime | None = None) -> RoomRecord:
    return RoomRecord(
        7, SR, backfilled_at=ENTERED - timedelta(hours=1), parity_clean_at=parity_at,
        parity_positions=None if parity_at is None else "binlog@1:4", changed_at=ENTERED,
    )  # fmt: skip


def tally(**kwargs: object) -> ShadowTally:
    return ShadowTally(7, **kwargs)  # type: ignore[arg-type]


# -- counts ----------------------------------------------------------------------------------


def test_counts_add_and_are_made_from_one_outcome() -> None:
    assert ShadowCounts.of("same") + ShadowCounts.of("late") == ShadowCounts(1, 0, 1)
    assert (ShadowCounts(2, 1, 0) + ShadowCounts.of("different")).total == 4
    with pytest.raises(ValueError, match="one of same, different, late"):
        ShadowCounts.of("error")


@pytest.mark.parametrize("bad", [-1, 1.0, True, "1", 2**63])
def test_a_count_is_a_non_negative_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="shadow count"):
        ShadowCounts(same=bad)  # type: ignore[arg-type]


def test_a_recording_adds_and_stamps_only_the_outcomes_counted() -> None:
    first = ShadowTally.absent(7).added(ShadowCounts(same=2), ENTERED)
    assert first == tally(same=2, last_same_at=ENTERED, updated_at=ENTERED)
    later = ENTERED + timedelta(minutes=1)
    second = first.added(ShadowCounts(late=1), later)
    assert second.last_same_at == ENTERED and second.last_late_at == later
    assert second.updated_at == later and second.last_different_at is None
    assert second.added(ShadowCounts(), NOW) == second


def test_a_batch_is_checked_whole_and_empty_counts_left_out() -> None:
    assert check_shadow_batch({1: ShadowCounts(same=1), 2: ShadowCounts()}) == {
        1: ShadowCounts(same=1)
    }
    with pytest.raises(ValueError, match="room id"):
        check_shadow_batch({1: ShadowCounts(same=1), 0: ShadowCounts(same=1)})
    with pytest.raises(ValueError, match="mapping"):
        check_shadow_batch([(1, ShadowCounts(same=1))])


# -- clean ---------------------------------------------------------------------------------


def test_clean_needs_a_same_since_entering_and_no_difference_since() -> None:
    assert why_not_clean(tally(same=1, last_same_at=NOW), ENTERED) is None
    assert (
        why_not_clean(
            tally(same=1, different=4, last_same_at=NOW, last_different_at=ENTERED - timedelta(1)),
            ENTERED,
        )
        is None
    )  # the differences were in an earlier shadow_read stint


@pytest.mark.parametrize(
    ("record", "words"),
    [
        (None, "no shadow read came out same since the room entered shadow_read at 2024-05-01"),
        (tally(late=9, last_late_at=NOW), "no shadow read came out same"),
        (tally(same=3, last_same_at=ENTERED - timedelta(seconds=1)), "no shadow read came out"),
        (
            tally(same=3, different=1, last_same_at=NOW, last_different_at=ENTERED),
            "a shadow read came out different at 2024-05-01T09:00:00+00:00",
        ),
    ],
)
def test_not_clean_says_why(record: ShadowTally | None, words: str) -> None:
    assert words in (why_not_clean(record, ENTERED) or "")


def test_an_unknown_entry_counts_every_comparison() -> None:
    assert "different" in (
        why_not_clean(tally(same=1, different=1, last_same_at=NOW, last_different_at=ENTERED), None)
        or ""
    )
    assert why_not_clean(tally(same=1, last_same_at=ENTERED), None) is None


# -- the guard of new_primary --------------------------------------------------------------


def test_new_primary_names_both_missing_conditions() -> None:
    reason = guard(in_shadow_read(), NP, now=NOW) or ""
    assert reason.startswith("new_primary is not built in this version; it would also need ")
    assert "a clean parity check of the room within 24 h (none is recorded)" in reason
    assert "; and a clean shadow record: no shadow read came out same" in reason


def test_new_primary_names_a_stale_parity_with_its_age() -> None:
    record = in_shadow_read(parity_at=NOW - timedelta(hours=30))
    clean = tally(same=1, last_same_at=NOW)
    reason = guard(record, NP, shadow=clean, now=NOW) or ""
    assert "within 24 h (the last one ran at 2024-04-30T05:00:00+00:00, 30 h ago)" in reason
    assert "shadow" not in reason
    assert "conditions are met" in (
        guard(record, NP, shadow=clean, now=NOW, parity_max_age_s=31 * 3600) or ""
    )


def test_plan_move_judges_each_room_with_its_own_shadow_record() -> None:
    clean, dirty = 7, 8
    records = [
        RoomRecord(r, SR, ENTERED, NOW - timedelta(minutes=5), "p", ENTERED) for r in (clean, dirty)
    ]
    shadows = {
        clean: ShadowTally(clean, same=1, last_same_at=NOW),
        dirty: ShadowTally(dirty, same=1, different=1, last_same_at=NOW, last_different_at=NOW),
    }
    report = plan_move(records, NP, "ops", "why", NOW, shadows=shadows)
    assert "conditions are met" in report.refused[clean]
    assert "different" in report.refused[dirty]


# -- direction -----------------------------------------------------------------------------


@pytest.mark.parametrize(("here", "to"), [(SR, DW), (SR, L), (DW, L), (NP, SR)])
def test_forward_only_refuses_a_move_back_naming_rollback(here: Phase, to: Phase) -> None:
    record = RoomRecord(7, here, backfilled_at=ENTERED, changed_at=ENTERED)
    reason = guard(record, to, direction=Direction.FORWARD) or ""
    assert f"the room is in {here}, and {to} is behind it" in reason
    assert f"chat-migrate rollback ... --to {to}" in reason
    assert guard(record, to, direction=Direction.BACK) is None
    assert guard(record, to) is None


@pytest.mark.parametrize(("here", "to"), [(L, DW), (DW, SR), (L, SR)])
def test_back_only_refuses_a_move_forward_naming_cutover(here: Phase, to: Phase) -> None:
    record = RoomRecord(7, here, backfilled_at=ENTERED, changed_at=ENTERED)
    reason = guard(record, to, direction=Direction.BACK) or ""
    assert f"{to} is ahead of it: a rollback only moves back" in reason
    assert f"chat-migrate cutover ... --to {to}" in reason


def test_a_direction_does_not_lift_the_other_guards() -> None:
    assert "backfill" in (guard(RoomRecord(7, DW), SR, direction=Direction.FORWARD) or "")
    assert "final" in (guard(RoomRecord(7, NO), L, direction=Direction.BACK) or "")
    assert guard(RoomRecord(7, DW), DW, direction=Direction.BACK) is None
