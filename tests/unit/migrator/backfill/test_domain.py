"""The backfill's pure rules: room order, chunks, the checkpoint's encoding and its refusals,
the throttle's decisions and the pacing."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrator.domain.backfill import (
    FLOOR_SHARE,
    Limits,
    Order,
    Plan,
    PlannedRoom,
    Progress,
    Reading,
    RoomProgress,
    RoomState,
    check_chunk_rows,
    check_job_key,
    chunk_ranges,
    chunk_rows_counted,
    decode_plan,
    decode_progress,
    digest,
    order_rooms,
    parse_order,
    pause_after,
    plan_key,
    throttle,
)
from migrator.domain.selection import Selection
from migrator.errors import CheckpointMismatch, OperatorError, UnreadableCheckpoint

R = PlannedRoom


# -- order -----------------------------------------------------------------------------------


def test_hot_rooms_first_then_the_smaller_then_by_id() -> None:
    rooms = [R(1, 1, 900, 900), R(2, 1, 50, 50), R(3, 1, 10, 10), R(4, 1, 10, 10), R(5, 0, 0, 0)]
    activity = {1: 30, 2: 30, 3: 5}
    assert [r.room_id for r in order_rooms(rooms, Order.HOT, activity)] == [2, 1, 3, 5, 4]


def test_size_is_smallest_first_and_id_ascending() -> None:
    rooms = [R(9, 1, 5, 5), R(3, 1, 50, 50), R(7, 1, 5, 5), R(1, 1, 500, 500)]
    assert [r.room_id for r in order_rooms(rooms, Order.SIZE, {9: 99})] == [7, 9, 3, 1]
    assert [r.room_id for r in order_rooms(rooms, Order.ID, {9: 99})] == [1, 3, 7, 9]


def test_an_order_is_parsed_or_refused_with_the_known_ones() -> None:
    assert parse_order(" Size ") is Order.SIZE
    with pytest.raises(OperatorError, match="hot, size, id"):
        parse_order("biggest")


# -- chunks ----------------------------------------------------------------------------------


def test_chunk_ranges_follow_each_other_without_gap() -> None:
    assert chunk_ranges(0, [4, 10, 20]) == [(1, 4), (5, 10), (11, 20)]
    assert chunk_ranges(10, []) == []
    with pytest.raises(ValueError):
        chunk_ranges(10, [10])
    with pytest.raises(ValueError):
        chunk_ranges(0, [5, 3])


@given(st.integers(0, 10**6), st.lists(st.integers(1, 1000), min_size=1, max_size=30))
def test_chunk_ranges_cover_exactly_after_to_the_last_end(after: int, steps: list[int]) -> None:
    ends = []
    at = after
    for step in steps:
        at += step
        ends.append(at)
    ranges = chunk_ranges(after, ends)
    assert ranges[0][0] == after + 1 and ranges[-1][1] == ends[-1]
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert first == last + 1


def test_chunk_rows_may_not_exceed_the_capturers_range_page() -> None:
    assert check_chunk_rows(1000, 1000) == 1000
    with pytest.raises(OperatorError, match=r"range page \(1000, MIG_CAPTURER_RANGE_PAGE\)"):
        check_chunk_rows(1001, 1000)
    for bad in (0, -1, True, 2.5):
        with pytest.raises(OperatorError, match="at least 1"):
            check_chunk_rows(bad, 1000)  # type: ignore[arg-type]


def test_chunks_count_messages_up_to_the_rows_measured() -> None:
    room = R(1, 1, 100, 25)
    assert chunk_rows_counted(room, 0, 10, last=False) == 10
    assert chunk_rows_counted(room, 20, 10, last=False) == 5
    assert chunk_rows_counted(room, 20, 10, last=True) == 5
    assert chunk_rows_counted(room, 30, 10, last=True) == 0


# -- the checkpoint ------------------------------------------------------------------------


def a_plan(selection: Selection | None = None) -> Plan:
    return Plan(
        job="backfill",
        fingerprint="mariadb:abc/chat",
        target="chat.hints/16",
        selection=selection or Selection(ids=(12, 34)),
        order=Order.HOT,
        rooms=(R(34, 3, 2**63, 7), R(12, 0, 0, 0)),
        created_unix=1_700_000_000.5,
    )


@pytest.mark.parametrize(
    "selection",
    [Selection(ids=(12, 34)), Selection(percent=12.5), Selection(everything=True)],
)
def test_a_plan_comes_back_as_it_was(selection: Selection) -> None:
    plan = a_plan(selection)
    assert decode_plan("backfill", plan.encode()) == plan
    assert plan.rows == 7


def test_a_progress_comes_back_as_it_was() -> None:
    progress = Progress(
        plan_digest=digest(a_plan().encode()),
        next=2,
        rooms={
            34: RoomProgress(34, RoomState.WAITING, 2**63, 7, 12345, 1.5),
            12: RoomProgress(12, RoomState.SENDING, 0, 0),
        },
        done_rooms=0,
        done_rows=0,
        total_rooms=2,
        total_rows=7,
    )
    assert decode_progress("backfill", progress.encode()) == progress
    assert progress.sent_rows == 7 and not progress.finished
    done = progress.done(34).done(12)
    assert done.finished and done.done_rooms == 2 and done.sent_rows == 7


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "not JSON"),
        ("[]", "schema 'list'"),
        ('{"schema": "chat-migration/parity", "version": 1}', "schema 'chat-migration/parity'"),
        ('{"schema": "chat-migration/backfill-progress", "version": 2}', "version 2"),
        ('{"schema": "chat-migration/backfill-progress", "version": 1}', "not a backfill progress"),
    ],
)
def test_another_version_or_anything_else_is_refused_saying_what_to_do(
    text: str, says: str
) -> None:
    with pytest.raises(UnreadableCheckpoint, match=says) as refused:
        decode_progress("backfill", text)
    assert "--restart" in str(refused.value)


def test_a_damaged_plan_or_progress_is_refused() -> None:
    data = json.loads(a_plan().encode())
    data["rooms"] = [[34, 5, 3, 7]]  # low above high
    with pytest.raises(UnreadableCheckpoint, match="planned room"):
        decode_plan("backfill", json.dumps(data))
    data = json.loads(a_plan().encode())
    data["version"] = 2
    with pytest.raises(UnreadableCheckpoint, match="version 2"):
        decode_plan("backfill", json.dumps(data))
    progress = json.loads(Progress(plan_digest="d", next=1, total_rooms=1).encode())
    progress["rooms"] = [{"room_id": 5, "state": "waiting", "sent_to": 3, "sent_rows": 1}]
    with pytest.raises(UnreadableCheckpoint, match="waiting room"):
        decode_progress("backfill", json.dumps(progress))
    progress["next"] = 5
    with pytest.raises(UnreadableCheckpoint):
        decode_progress("backfill", json.dumps(progress))


def test_a_plan_of_another_data_set_topic_or_selection_is_refused() -> None:
    plan = a_plan()
    plan.refuse_other("mariadb:abc/chat", "chat.hints/16", Selection(ids=(12, 34)))
    plan.refuse_other("mariadb:abc/chat", "chat.hints/16", Selection(ids=(34, 12)))
    with pytest.raises(CheckpointMismatch, match=r"another data set.*--restart"):
        plan.refuse_other("mariadb:xyz/chat", "chat.hints/16", Selection(ids=(12, 34)))
    with pytest.raises(CheckpointMismatch, match="hints topic"):
        plan.refuse_other("mariadb:abc/chat", "other.hints/16", Selection(ids=(12, 34)))
    with pytest.raises(CheckpointMismatch, match=r"rooms '12,34'.*'12'"):
        plan.refuse_other("mariadb:abc/chat", "chat.hints/16", Selection(ids=(12,)))
    with pytest.raises(CheckpointMismatch, match=r"rooms '12,34'.*'all'"):
        plan.refuse_other("mariadb:abc/chat", "chat.hints/16", Selection(everything=True))
    percent = a_plan(Selection(percent=10))
    percent.refuse_other("mariadb:abc/chat", "chat.hints/16", Selection(percent=10.0))
    with pytest.raises(CheckpointMismatch, match=r"'10%'.*'20%'"):
        percent.refuse_other("mariadb:abc/chat", "chat.hints/16", Selection(percent=20))


def test_the_plan_lives_beside_the_progress_under_a_name_no_job_has() -> None:
    assert plan_key("backfill") == "backfill/plan"
    check_job_key(plan_key("x" * 64))


# -- the throttle ----------------------------------------------------------------------------

LIMITS = Limits(max_probe_ms=50, max_threads_running=16, max_capture_lag=20_000)
CALM = Reading(probe_ms=5, threads_running=2, capture_lag=0)


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (Reading(51, 2, 0), "probe_latency"),
        (Reading(5, 17, 0), "threads_running"),
        (Reading(5, 2, 20_001), "capture_lag"),
    ],
)
def test_any_measure_over_its_bound_halves_and_waits(reading: Reading, reason: str) -> None:
    decision = throttle(1000, 1000, reading, LIMITS)
    assert decision.wait and decision.rate == 500 and decision.reasons == (reason,)


def test_every_reason_is_named() -> None:
    decision = throttle(1000, 1000, Reading(99, 99, 99_999), LIMITS)
    assert decision.reasons == ("probe_latency", "threads_running", "capture_lag")


def test_at_the_bounds_is_not_over() -> None:
    assert not throttle(1000, 1000, Reading(50, 16, 20_000), LIMITS).wait


def test_halving_stops_at_the_floor_and_healthy_grows_back_step_by_step() -> None:
    rate = 1000.0
    for _ in range(20):
        rate = throttle(rate, 1000, Reading(99, 2, 0), LIMITS).rate
    assert rate == 1000 * FLOOR_SHARE
    steps = 0
    while rate < 1000:
        decision = throttle(rate, 1000, CALM, LIMITS)
        assert not decision.wait and decision.rate > rate
        rate = decision.rate
        steps += 1
    assert rate == 1000 and 10 <= steps <= 17


def test_a_lowered_target_applies_at_once_a_raised_one_step_by_step() -> None:
    assert throttle(1000, 100, CALM, LIMITS).rate == 100
    raised = throttle(100, 1600, CALM, LIMITS).rate
    assert raised == 200  # one step of 1600/16
    assert throttle(1600, 1600, CALM, LIMITS).rate == 1600


@given(
    st.floats(0.001, 1e7),
    st.floats(0.001, 1e7),
    st.floats(0, 1000),
    st.integers(0, 100),
    st.integers(0, 10**6),
)
def test_the_rate_stays_between_the_floor_and_the_target(
    current: float, target: float, probe: float, threads: int, lag: int
) -> None:
    decision = throttle(current, target, Reading(probe, threads, lag), LIMITS)
    assert target * FLOOR_SHARE <= decision.rate <= target
    assert decision.wait == bool(decision.reasons)


def test_pacing_spreads_messages_over_time() -> None:
    assert pause_after(1000, 2000, 0.1) == pytest.approx(0.4)
    assert pause_after(1000, 2000, 0.9) == 0
    with pytest.raises(ValueError):
        pause_after(1, 0, 0)
