"""A room's read cursors are history too (the monolith's `room_cursors`: how far each account
has read and fetched): the backfill sends a `CursorHint` per cursor before the room's closing
hint, so a room in shadow_read answers force=0 reads from the same place as the monolith.

Regression: `chat-migrate parity` on a fresh read model after `chat-migrate backfill` reported
`cursor_missing` for every account of the backfilled rooms: the backfill replayed the messages
only. Over the in-memory world (tests/unit/migrator/backfill/rig.py); every mark checks that the
room's messages and cursors are visible at that moment (`Phases.mark_backfilled`)."""

from __future__ import annotations

import pytest

from migrator.domain.backfill import RoomState, decode_progress
from migrator.errors import NotVisible, SourceNeverRan
from migrator.ports import RoomCursors
from migrator.service.backfill import BackfillMetrics, Tuning
from newcore.domain.hints import CursorHint, MessageHint, RangeHint
from newcore.domain.model import ReadCursor
from tests.unit.migrator.backfill.rig import Killed, World


def a_world() -> tuple[World, dict[str, int]]:
    world = World()
    rooms = {
        "messages and cursors": world.room(25),
        "cursors only": world.room(0),  # a force=0 GET on an empty room made its rows
        "nothing": world.room(0),
        "messages only": world.room(4),
    }
    talk = rooms["messages and cursors"]
    for account in range(1, 8):  # more than a page of cursors (cursor_page=3 below)
        world.cursor(talk, account, 1000 + account, 1000 + 2 * account)
    world.cursor(rooms["cursors only"], 42, 0, 0)
    world.cursor(rooms["cursors only"], 7, 0, 0)
    return world, rooms


TUNING = Tuning(cursor_page=3)


def assert_cursors_converged(world: World) -> None:
    for room in world.rooms:
        assert world.read_cursors(room) == world.monolith_cursors(room), f"room {room}"
        assert world.read_model(room) == world.monolith_rows(room), f"room {room}"
        assert world.marks(room) >= 1, f"room {room} not marked"


def test_every_cursor_of_the_backfilled_rooms_reaches_the_read_model() -> None:
    world, rooms = a_world()
    metrics = BackfillMetrics("backfill")
    outcome = world.run(tuning=TUNING, metrics=metrics)
    assert_cursors_converged(world)
    assert sorted(world.phases.marked_when_visible) == sorted(world.rooms)
    assert outcome.cursors == 9
    count = metrics.registry.get_sample_value(
        "migrator_backfill_hints_total", {"job": "backfill", "kind": "cursor"}
    )
    assert count == 9
    # One cursor hint per cursor row, by account, in the same append as the closing hint and
    # right before it (same room, same partition: applied before the closing hint's position).
    talk = rooms["messages and cursors"]
    closing = [a for a in world.log.appends if MessageHint(talk, world.next_id - 4) in a]
    assert len(closing) == 1
    ours = [h for h in closing[0] if h.room_id == talk]
    assert ours[-8:-1] == [CursorHint(talk, account) for account in range(1, 8)]
    assert isinstance(ours[-1], MessageHint) and isinstance(ours[0], RangeHint)
    assert world.cursor_hints(rooms["messages only"]) == []
    # A room with cursors and no message: its cursor hints and nothing else.
    only = rooms["cursors only"]
    assert world.cursor_hints(only) == [CursorHint(only, 7), CursorHint(only, 42)]
    assert world.range_hints(only) == [] and world.closing_hints(only) == []
    # A room with neither: no hint at all, marked at once.
    nothing = rooms["nothing"]
    assert not any(h.room_id == nothing for h in world.log.hints())
    assert world.marks(nothing) == 1
    detail = world.board.reports()[0].detail
    assert '"cursor_hints":9' in detail.replace(" ", "")


def test_a_room_with_only_cursors_is_not_marked_before_they_are_visible() -> None:
    world = World()
    room = world.room(0)
    world.cursor(room, 5, 0, 0)
    world.pipe.running = False
    with pytest.raises(NotVisible, match=rf"room\(s\) {room} within 30 s"):
        world.run()
    assert world.marks(room) == 0 and world.read_cursors(room) == {}
    # The pipeline comes back: nothing is sent again, the room is marked once visible.
    world.pipe.running = True
    appended = len(world.log.appends)
    world.run()
    assert len(world.log.appends) == appended
    assert world.marks(room) == 1 and world.read_cursors(room) == {5: (0, 0)}


def test_an_empty_room_whose_cursors_vanished_before_the_sending_is_marked_at_once() -> None:
    world = World()
    room = world.room(0)
    world.cursor(room, 5, 0, 0)

    class Vanishing:
        """The row is seen when the room starts, gone when its cursors are read to be sent."""

        def __init__(self, inner: RoomCursors) -> None:
            self.inner, self.reads = inner, 0

        def cursors(self, room_id: int, after_account: int, limit: int) -> list[ReadCursor]:
            self.reads += 1
            if self.reads == 2:
                world.monolith.cursors.clear()
            return self.inner.cursors(room_id, after_account, limit)

    world.room_cursors = Vanishing(world.room_cursors)
    outcome = world.run()
    assert world.marks(room) == 1 and outcome.cursors == 0 and world.log.appends == []


def side_effects_of_a_whole_run() -> int:
    world, _ = a_world()
    world.run(tuning=TUNING)
    return world.fuse.count


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_a_run_killed_at_any_side_effect_still_ends_with_every_cursor(before: bool) -> None:
    steps = side_effects_of_a_whole_run()
    for at in range(1, steps + 1):
        world, _ = a_world()
        world.fuse.at, world.fuse.before = at, before
        with pytest.raises(Killed):
            world.run(tuning=TUNING)
        saved = world.checkpoints.load("backfill")
        appends_before = len(world.log.appends)
        world.fuse.at = None
        world.run(tuning=TUNING)
        assert_cursors_converged(world)
        if saved is None:
            continue
        # A room whose closing append was saved (waiting or done) gets no cursor hint again.
        again = world.log.appends[appends_before:]
        for room, state in decode_progress("backfill", saved[1]).rooms.items():
            if state.state is RoomState.WAITING:
                assert world.cursor_hints(room, again) == [], (world.fuse.where, room)


def test_a_job_does_not_start_while_the_binlog_source_never_checkpointed() -> None:
    """A source that never ran starts, the first time, at the binlog's end then: what is
    written between the job's plan and that start would be nobody's, and the rooms marked over
    the gap. So the job waits for a source with a checkpoint: refused, nothing changed."""
    world, _ = a_world()
    world.pipe.source_at = None
    with pytest.raises(SourceNeverRan, match="never checkpointed: start the capture pipeline"):
        world.run(tuning=TUNING)
    assert world.log.appends == []
    assert all(world.marks(room) == 0 for room in world.rooms)
    assert world.checkpoints.jobs() == []
    world.pipe.source_at = "mariadb-bin.000001:4"
    world.run(tuning=TUNING)
    assert_cursors_converged(world)
