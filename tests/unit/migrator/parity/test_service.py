"""migrator/service/parity.py on in-memory adapters: the monolith (InMemoryMonolith), the read
model (the SQLite read store), the pipeline (MemoryPipeline, played here), the control store
(MemoryPhaseStore). What is proven: a clean room is clean and marked; differences made behind
the pipeline's back are confirmed and classified; a row that changed after the frontier is
re-checked and never reported; a row that keeps changing leaves the room late; a pipeline
that does not reach a frontier makes rooms late; nothing is written on either side; big rooms
stream (range re-checks for a room missing its messages, a read per message for a few)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from migrator.adapters.embedded.memory_cursors import MemoryRoomCursors
from migrator.adapters.embedded.memory_pipeline import MemoryPipeline
from migrator.domain.parity import (
    ABSENT,
    DELETED,
    Kind,
    ParityResult,
    Verdict,
)
from migrator.ports import Frontier, RoomBounds
from migrator.service.parity import (
    ParityCheck,
    ScanPool,
    ahead,
    legacy_rows,
)
from migrator.settings import ParitySettings
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.domain.model import Message
from newcore.domain.row_problems import RowProblem
from newcore.errors import ReadStoreUnavailable
from tests.unit.migrator.parity.rig import FAST, OTHER, ROOM, World, row, sides_of


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def kinds(result: ParityResult, room: int = ROOM) -> list[tuple[Kind, int | None, str]]:
    (report,) = [r for r in result.rooms if r.result.room_id == room]
    return [(d.kind, d.message_id or d.account_id, d.field) for d in report.differences]


def test_a_clean_room_is_clean_and_marked_with_its_frontier(world: World) -> None:
    world.put(*(row(i) for i in range(1, 30)), row(30, deleted=1))
    world.monolith.move_cursor(ROOM, 1, 29, 29)
    world.carry()
    outcome, result = world.run([ROOM, OTHER])
    assert [r.result.verdict for r in result.rooms] == [Verdict.CLEAN, Verdict.CLEAN]
    room = result.rooms[0].result
    assert (room.legacy_rows, room.new_messages, room.cursors) == (30, 29, 1)
    assert room.marked_clean and room.compared_at == result.header.frontier
    record = world.phases.room(ROOM)
    assert record.parity_clean_at is not None
    assert record.parity_positions == room.positions()
    assert "compared at binlog memory-bin.000001:" in room.positions()
    assert (
        outcome.summary.rooms[Verdict.CLEAN] == 2 and sum(outcome.summary.differences.values()) == 0
    )
    assert world.metrics.messages._value.get() == 30


def test_differences_behind_the_pipeline_s_back_are_found_and_classified(world: World) -> None:
    world.put(*(row(i) for i in range(1, 11)))
    world.monolith.move_cursor(ROOM, 1, 5, 5)
    world.monolith.move_cursor(ROOM, 2, 6, 6)
    world.carry()
    # Behind the pipeline's back (the read model never hears of these):
    world.monolith.put(row(2, "edited", update_time=1_700_000_500))  # stale
    world.monolith.put(row(3, "<b>same time</b>"))  # field_differs
    world.monolith.put(row(4, deleted=1))  # soft delete: extra in new
    world.monolith.purge(5)  # hard delete: extra in new
    world.monolith.put(row(11))  # missing in new
    world.monolith.put(row(12, body=None, body_raw=b"\xff\xfe"))  # unreadable and missing
    world.monolith.move_cursor(ROOM, 1, 9, 9)  # cursor_differs
    world.monolith.move_cursor(ROOM, 3, 1, 1)  # cursor_missing
    world.pipeline.write()
    world.pipeline.carry()  # every stage reaches every frontier; the read model is unchanged
    outcome, result = world.run()
    assert kinds(result) == [
        (Kind.UNREADABLE_LEGACY, 12, "body"),
        (Kind.STALE, 2, "body"), (Kind.STALE, 2, "update_time"),
        (Kind.FIELD_DIFFERS, 3, "body"),
        (Kind.EXTRA_IN_NEW, 4, "message"), (Kind.EXTRA_IN_NEW, 5, "message"),
        (Kind.MISSING_IN_NEW, 11, "message"), (Kind.MISSING_IN_NEW, 12, "message"),
        (Kind.CURSOR_DIFFERS, 1, "last_read_message_id"),
        (Kind.CURSOR_DIFFERS, 1, "last_fetched_message_id"),
        (Kind.CURSOR_MISSING, 3, "cursor"),
    ]  # fmt: skip
    differences = result.rooms[0].differences
    by = {(d.message_id or d.account_id, d.field): d for d in differences}
    assert (by[(2, "body")].legacy, by[(2, "body")].new) == ("edited", "本文 [To:1] 😀")
    assert (by[(4, "message")].legacy, by[(5, "message")].legacy) == (DELETED, ABSENT)
    assert by[(11, "message")].new == ABSENT
    assert by[(1, "last_read_message_id")].legacy == "9"
    room = result.rooms[0].result
    assert room.verdict is Verdict.DIFFERENT and not room.marked_clean
    assert world.phases.room(ROOM).parity_clean_at is None
    assert outcome.summary.differences[Kind.STALE] == 2


def test_unreadable_legacy_rows_alone_leave_a_room_clean(world: World) -> None:
    world.put(row(1, body=None, body_raw=b"caf\xe9"), row(2, send_time=None, created_at=None))
    world.carry()
    _, result = world.run()
    assert [k for k, _, _ in kinds(result)] == [Kind.UNREADABLE_LEGACY] * 2
    assert result.rooms[0].result.verdict is Verdict.CLEAN


class HookedPipeline(MemoryPipeline):
    """The memory pipeline, with a hook just after each mark (but the first) and one after the
    first frontier is reached: what the world does meanwhile."""

    def __init__(self, on_mark: Callable[[int], None], after_first: Callable[[], None]) -> None:
        super().__init__()
        self.marks = 0
        self._on_mark = on_mark
        self._after_first = after_first
        self._first_done = False

    async def mark(self) -> Frontier:
        frontier = await super().mark()
        self.marks += 1
        if self.marks > 1:
            self._on_mark(self.marks)  # just after the frontier was marked
        return frontier

    async def reached(self, frontier: Frontier) -> bool:
        done = await super().reached(frontier)
        if done and not self._first_done:
            self._first_done = True
            self._after_first()
        return done


def hooked(world: World, on_mark: Callable[[int], None], after_first: Callable[[], None]) -> None:
    pipeline = HookedPipeline(on_mark, after_first)
    pipeline.binlog_end = world.pipeline.binlog_end
    pipeline.carry()
    world.pipeline = pipeline


def test_a_row_written_after_the_frontier_is_rechecked_not_reported(world: World) -> None:
    world.put(*(row(i) for i in range(1, 6)))
    world.carry()

    def written_after_the_frontier() -> None:  # the read model has not got it yet
        world.put(row(3, "edited later", update_time=1_700_009_999), row(6))
        world.monolith.purge(4)

    hooked(world, on_mark=lambda _: world.carry(), after_first=written_after_the_frontier)
    _, result = world.run()
    room = result.rooms[0].result
    assert room.verdict is Verdict.CLEAN and kinds(result) == []
    assert room.rechecked == 3 and room.settled_at is not None
    assert world.metrics.rechecks["settled"]._value.get() == 3


def test_a_row_changing_through_every_recheck_leaves_the_room_late(world: World) -> None:
    world.put(*(row(i) for i in range(1, 4)))
    world.carry()
    edits = iter(range(1, 100))

    def edit() -> None:
        world.put(row(2, f"edit {next(edits)}", update_time=1_700_000_000 + next(edits)))

    def carry_then_edit(_: int) -> None:  # the read model always one edit behind
        world.carry()
        edit()

    hooked(world, on_mark=carry_then_edit, after_first=edit)
    _, result = world.run()
    room = result.rooms[0].result
    assert room.verdict is Verdict.LATE and kinds(result) == []
    assert room.unsettled == 1 and room.reason is not None and "kept changing" in room.reason
    assert room.rechecked == world.settings.recheck_rounds
    assert not room.marked_clean and world.phases.room(ROOM).parity_clean_at is None


def test_a_row_that_changed_then_held_its_difference_is_confirmed(world: World) -> None:
    world.put(*(row(i) for i in range(1, 4)))
    world.carry()

    def on_mark(mark: int) -> None:
        if mark == 2:  # changed once more during the first re-check's frontier
            world.put(row(2, "second edit", update_time=1_700_000_900))
        world.pipeline.carry()  # positions move; the read model never gets the edits

    hooked(world, on_mark=on_mark, after_first=lambda: world.put(row(2, "first edit")))
    _, result = world.run()
    assert kinds(result) == [(Kind.STALE, 2, "body"), (Kind.STALE, 2, "update_time")]
    (body, _) = result.rooms[0].differences
    assert body.legacy == "second edit"


def test_a_pipeline_that_does_not_reach_the_frontier_makes_every_room_late(world: World) -> None:
    world.put(row(1))
    world.carry()
    world.put(row(2))  # the binlog moves on; the pipeline does not follow
    _, result = world.run([ROOM, OTHER])
    assert [r.result.verdict for r in result.rooms] == [Verdict.LATE, Verdict.LATE]
    room = result.rooms[0].result
    assert room.reason is not None and "did not reach binlog" in room.reason
    assert room.legacy_rows == 0 and room.compared_at is None and kinds(result) == []
    assert world.phases.room(ROOM).parity_clean_at is None


def test_a_recheck_frontier_not_reached_makes_the_room_late(world: World) -> None:
    world.put(row(1), row(2))
    world.carry()

    def move_on(_: int) -> None:
        world.pipeline.write()

    hooked(world, on_mark=move_on, after_first=lambda: world.put(row(3)))
    _, result = world.run()
    room = result.rooms[0].result
    assert room.verdict is Verdict.LATE and kinds(result) == []
    assert room.reason is not None and "1 row(s) of the room could not be re-checked" in room.reason


def test_no_mark_leaves_the_control_store_alone(world: World) -> None:
    world.put(row(1))
    world.carry()
    _, result = world.run(mark=False)
    assert result.rooms[0].result.verdict is Verdict.CLEAN
    assert not result.rooms[0].result.marked_clean
    assert world.phases.room(ROOM).parity_clean_at is None


class Watched:
    """A read store that counts reads and refuses any write."""

    def __init__(self, inner: SqliteReadStore) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "apply":
            raise AssertionError("parity wrote to the read model")
        self.calls[name] = self.calls.get(name, 0) + 1
        return getattr(self.inner, name)


def test_nothing_is_written_on_either_side(world: World) -> None:
    world.put(*(row(i) for i in range(1, 20)))
    world.monolith.move_cursor(ROOM, 4, 3, 3)
    world.carry()
    world.monolith.put(row(5, "behind the back"))
    before_monolith = (dict(world.monolith.messages), dict(world.monolith.cursors))
    before_position = world.store.room_position(ROOM)
    before_cursor = world.store.cursor(ROOM, 4)
    watched = Watched(world.store)
    check = ParityCheck(
        world.monolith, watched, MemoryRoomCursors(world.monolith), world.pipeline, world.phases,
        world.settings, tuning=FAST,
    )  # fmt: skip
    world.run(check=check)
    assert (dict(world.monolith.messages), dict(world.monolith.cursors)) == before_monolith
    assert world.store.room_position(ROOM) == before_position
    assert world.store.cursor(ROOM, 4) == before_cursor


def test_a_room_missing_its_messages_is_rechecked_by_range_reads(world: World) -> None:
    world.settings = ParitySettings(page=100, frontier_timeout_s=0.5)
    world.put(*(row(i) for i in range(1, 3001)))
    world.pipeline.carry()  # positions only: the read model holds none of it
    watched = Watched(world.store)
    check = ParityCheck(
        world.monolith, watched, MemoryRoomCursors(world.monolith), world.pipeline, world.phases,
        world.settings, tuning=FAST,
    )  # fmt: skip
    outcome, result = world.run(check=check)
    assert outcome.summary.differences[Kind.MISSING_IN_NEW] == 3000
    assert watched.calls.get("message", 0) == 0  # no read per message
    assert result.rooms[0].result.rechecked == 3000


def test_a_few_candidates_in_a_big_room_are_rechecked_one_by_one(world: World) -> None:
    world.settings = ParitySettings(page=100, frontier_timeout_s=0.5)
    world.put(*(row(i) for i in range(1, 2001)))
    world.carry()
    for mid in (10, 900, 1900):
        world.monolith.put(row(mid, "behind the back"))
    world.pipeline.write()
    world.pipeline.carry()
    watched = Watched(world.store)
    check = ParityCheck(
        world.monolith, watched, MemoryRoomCursors(world.monolith), world.pipeline, world.phases,
        world.settings, tuning=FAST,
    )  # fmt: skip
    _, result = world.run(check=check)
    assert [m for _, m, _ in kinds(result)] == [10, 900, 1900]
    assert watched.calls["message"] == 3
    assert watched.calls["after"] <= 2000 // 100 + 2  # the scan's pages, no range re-read


class History:
    def bounds(self, room_id: int) -> RoomBounds | None:
        return RoomBounds(room_id, 1, 5, 5) if room_id == ROOM else None

    def fingerprint(self) -> str:
        return "test"

    def chunk_ends(self, room_id: int, after: int, high: int, rows: int, count: int) -> list[int]:
        return []

    def activity(self, room_ids: Sequence[int], since_unix: int) -> dict[int, int]:
        return {}


class Bar:
    def __init__(self) -> None:
        self.totals: list[int | None] = []
        self.done = 0
        self.closed = False

    def start(self, total: int | None) -> None:
        self.totals.append(total)

    def total(self, total: int) -> None:
        self.totals.append(total)

    def advance(self, rows: int) -> None:
        self.done += rows

    def note(self, fields: dict[str, str]) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_progress_counts_monolith_rows_against_the_rooms_measured(world: World) -> None:
    world.put(*(row(i) for i in range(1, 6)))
    world.carry()
    bar = Bar()
    world.run([ROOM, OTHER], check=world.check(history=History(), progress=bar))
    assert bar.totals == [None, 5] and bar.done == 5 and bar.closed


def test_legacy_rows_of_a_page_in_id_order_with_their_problems() -> None:
    live = [Message(ROOM, 5, 1, "a", 1, 0), Message(ROOM, 2, 1, "b", 1, 0)]
    problems = [RowProblem("messages", ROOM, 5, "why"), RowProblem("room_cursors", ROOM, 3, "x")]
    rows = legacy_rows(live, [3], problems)
    assert [(r.message_id, r.message is None, r.problems) for r in rows] == [
        (2, False, ()), (3, True, ()), (5, False, ("why",))
    ]  # fmt: skip


def test_pages_are_read_one_ahead_and_a_read_s_error_is_raised() -> None:
    asked: list[int] = []

    def read(place: int) -> tuple[list[int], int | None]:
        asked.append(place)
        if place == 3:
            raise RuntimeError("the store went away")
        return [place], place + 1

    with ThreadPoolExecutor(2) as pool:
        pages = ahead(read, 1, pool)
        assert next(pages) == [1]
        assert next(pages) == [2]
        with pytest.raises(RuntimeError, match="went away"):
            next(pages)
        assert asked == [1, 2, 3]
        assert list(ahead(lambda p: ([p], None if p == 2 else p + 1), 0, pool)) == [[0], [1], [2]]


class HotRow(MemoryPipeline):
    """A row edited faster than the pipeline's lag: edited right after each frontier is marked,
    carried into the read model on the second look, and edited again just after: the read
    model never shows the state the monolith has when it is read."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.edits = 0
        self.looks_at: dict[Frontier, int] = {}

    def edit(self) -> None:
        self.edits += 1
        self.world.put(row(2, f"edit {self.edits}", update_time=1_700_000_000 + self.edits))

    async def mark(self) -> Frontier:
        frontier = await super().mark()
        if self.looks_at:  # a re-check's frontier
            self.edit()
        return frontier

    async def reached(self, frontier: Frontier) -> bool:
        first = not self.looks_at
        looks = self.looks_at[frontier] = self.looks_at.get(frontier, 0) + 1
        if first:
            self.world.carry()
            done = await super().reached(frontier)
            self.edit()  # after the scan's frontier: the scan sees it, the read model not
            return done
        if looks == 1:
            return False
        await asyncio.sleep(0.2)  # the sampler (every 50 ms) has seen the edit by now
        self.world.carry()
        done = await super().reached(frontier)
        self.edit()
        return done


def test_a_row_changing_faster_than_the_pipeline_settles_on_a_state_seen_after_the_frontier(
    world: World,
) -> None:
    world.put(*(row(i) for i in range(1, 4)))
    world.carry()
    hot = HotRow(world)
    hot.binlog_end = world.pipeline.binlog_end
    world.pipeline = hot
    _, result = world.run()
    room = result.rooms[0].result
    assert kinds(result) == [] and room.verdict is Verdict.CLEAN, room
    assert room.rechecked == 1
    assert world.monolith.read_messages([(ROOM, 2)]).live[(ROOM, 2)] != world.store.message(ROOM, 2)


def test_rooms_scanned_by_processes_give_the_same_result(world: World, tmp_path: Path) -> None:
    """Several rooms at once, each scanned by a process of a pool (its own clients): the same
    rooms, differences and verdicts as scanned here, and the same marks."""
    rooms = [ROOM, OTHER, 9, 10, 11, 12, 13, 14]  # 4 rooms a process at least
    for room in rooms[2:]:
        world.monolith.add_room(room)
    for room in rooms:
        world.put(*(row(i + room * 1000, room=room) for i in range(1, 60)))
    world.monolith.move_cursor(OTHER, 3, 5, 5)
    world.carry(rooms)
    world.monolith.put(row(9005, "behind the back", room=9))  # field_differs
    world.monolith.purge(10010)  # extra_in_new
    world.monolith.put(row(11070, room=11))  # missing_in_new
    world.monolith.move_cursor(OTHER, 3, 7, 7)  # cursor_differs
    world.pipeline.write()
    world.pipeline.carry()
    _, here = world.run(rooms, mark=False)
    factory = functools.partial(sides_of, world.monolith, world.read_model_path)
    pool = ScanPool(factory, 2)
    try:
        outcome, there = world.run(rooms, check=world.check(scan_pool=pool))
    finally:
        pool.close()
    assert [(r.result.room_id, r.result.verdict, r.differences) for r in there.rooms] == [
        (r.result.room_id, r.result.verdict, r.differences) for r in here.rooms
    ]
    assert [kinds(there, room) for room in rooms] == [
        [], [(Kind.CURSOR_DIFFERS, 3, "last_read_message_id"),
             (Kind.CURSOR_DIFFERS, 3, "last_fetched_message_id")],
        [(Kind.FIELD_DIFFERS, 9005, "body")], [(Kind.EXTRA_IN_NEW, 10010, "message")],
        [(Kind.MISSING_IN_NEW, 11070, "message")], [], [], [],
    ]  # fmt: skip
    assert [r.result.legacy_rows for r in there.rooms] == [59, 59, 59, 58, 60, 59, 59, 59]
    assert world.metrics.messages._value.get() == 2 * sum(r.result.legacy_rows for r in there.rooms)
    assert world.phases.room(ROOM).parity_clean_at is not None
    assert outcome.summary.rooms[Verdict.DIFFERENT] == 4


def test_a_scanning_process_that_fails_fails_the_run_with_the_error_s_kind(
    world: World, tmp_path: Path
) -> None:
    world.put(row(1))
    world.carry()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    pool = ScanPool(functools.partial(sides_of, world.monolith, a_file / "read-model.db"), 1)
    for room in (9, 10):
        world.monolith.add_room(room)
    try:
        with pytest.raises(ReadStoreUnavailable, match="read store"):
            world.run([ROOM, OTHER, 9, 10], check=world.check(scan_pool=pool))
    finally:
        pool.close()


class CountedMarks(MemoryPipeline):
    def __init__(self) -> None:
        super().__init__()
        self.marks = 0

    async def mark(self) -> Frontier:
        self.marks += 1
        return await super().mark()


def test_many_rooms_candidates_are_rechecked_at_one_frontier(world: World) -> None:
    """A frontier awaited per round for a batch of rooms, not one per room: the wait is the
    re-check's cost (the pipeline's lag)."""
    rooms = list(range(100, 120))
    for room in rooms:
        world.monolith.add_room(room)
        world.put(row(room * 10, room=room))
    world.carry(rooms)
    for room in rooms:
        world.monolith.put(row(room * 10 + 1, room=room))  # behind the back: missing in new
    counted = CountedMarks()
    counted.binlog_end = world.pipeline.binlog_end + 100
    counted.carry()
    world.pipeline = counted
    outcome, result = world.run(
        rooms, check=world.check(tuning=dataclasses.replace(FAST, rooms_per_frontier=8))
    )
    assert outcome.summary.differences[Kind.MISSING_IN_NEW] == 20
    assert [r.result.room_id for r in result.rooms] == rooms
    assert counted.marks == 1 + 3  # the first frontier, then one per batch of 8 rooms
