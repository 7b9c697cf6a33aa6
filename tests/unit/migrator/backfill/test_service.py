"""The backfill job over in-memory adapters (tests/unit/migrator/backfill/rig.py): the real
capturer reads the in-memory monolith for every hint the job appends, and the read model is an
embedded store. What must hold: the read model ends with exactly the monolith's rows, every room
is marked only once its history is visible, a run killed at any side effect resumes with no
gap and without resending what it saved, and bad input changes nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import urllib.request

import pytest

from gateway.domain.jobs import JobState
from migrator.domain.backfill import KIND, Order, decode_plan, decode_progress, plan_key
from migrator.domain.selection import Selection
from migrator.errors import (
    CheckpointMismatch,
    JobRunning,
    NotVisible,
    OperatorError,
    PanicStop,
    UnknownRooms,
    UnreadableCheckpoint,
)
from migrator.ports import HealthSample
from migrator.service.backfill import (
    BackfillMetrics,
    BackfillOutcome,
    BackfillRequest,
    Tuning,
    metrics_endpoint,
)
from migrator.settings import BackfillSettings
from newcore.domain.hints import MessageHint, RangeHint
from newcore.errors import EventLogUnavailable
from tests.unit.migrator.backfill.rig import NOW, Killed, World, run_async


def a_world() -> World:
    world = World()
    world.room(35)  # four chunks of 10
    world.room(20)  # exactly two chunks
    world.room(3)
    world.room(0)  # no history
    world.room(12, step=7)  # sparse ids
    return world


def assert_converged(world: World) -> None:
    for room in world.rooms:
        assert world.read_model(room) == world.monolith_rows(room), f"room {room}"
        assert world.marks(room) >= 1, f"room {room} not marked"


def test_history_reaches_the_read_model_and_rooms_are_marked_when_visible() -> None:
    world = a_world()
    outcome = world.run()
    assert_converged(world)
    assert outcome.rooms == 5 and outcome.messages == 70 and outcome.marked == 5
    assert outcome.sent == 70 and not outcome.resumed
    assert sorted(world.phases.marked_when_visible) == sorted(world.rooms)
    # Chunks of at most chunk_rows, consecutive, covering [1, high] of each room.
    for room in world.rooms:
        rows = sorted(world.monolith_rows(room))
        ranges = world.range_hints(room)
        if not rows:
            assert ranges == [] and world.closing_hints(room) == []
            continue
        assert ranges[0].first_message_id == 1 and ranges[-1].last_message_id == rows[-1]
        for one, other in itertools.pairwise(ranges):
            assert other.first_message_id == one.last_message_id + 1
        for hint in ranges:
            inside = [m for m in rows if hint.first_message_id <= m <= hint.last_message_id]
            assert 1 <= len(inside) <= 10
        # One closing hint, after the room's last chunk, for its highest id.
        assert world.closing_hints(room) == [MessageHint(room, rows[-1])]
    # The checkpoint says the job is done.
    saved = world.checkpoints.load("backfill")
    assert saved is not None and saved[0] == KIND
    progress = decode_progress("backfill", saved[1])
    assert progress.finished and progress.done_rooms == 5 and progress.done_rows == 70


def test_chunks_of_several_rooms_share_each_append() -> None:
    world = a_world()
    world.run(
        settings=BackfillSettings(chunk_rows=10, rooms_in_parallel=3, rate=1000), order=Order.ID
    )
    first = world.log.appends[0]
    assert sorted({hint.room_id for hint in first}) == sorted(world.rooms[:3])
    assert all(len({h.room_id for h in append if isinstance(h, RangeHint)}) <= 3
               for append in world.log.appends)  # fmt: skip


def test_a_rerun_of_a_finished_job_sends_nothing() -> None:
    world = a_world()
    world.run()
    appended = len(world.log.appends)
    outcome = world.run()
    assert outcome.resumed and outcome.sent == 0 and len(world.log.appends) == appended


def test_rooms_are_taken_hottest_first_by_default() -> None:
    world = World()
    cold = world.room(5, send_time=NOW - 60 * 86_400)
    hot = world.room(5, send_time=NOW - 3600)
    warm = world.room(2, send_time=NOW - 3600)
    world.settings = BackfillSettings(chunk_rows=10, rooms_in_parallel=1, rate=1000)
    world.run()
    firsts = [append[0].room_id for append in world.log.appends]
    assert firsts == [hot, warm, cold]


@pytest.mark.parametrize(("order", "expected"), [(Order.SIZE, [2, 1, 0]), (Order.ID, [0, 1, 2])])
def test_rooms_by_size_or_id(order: Order, expected: list[int]) -> None:
    world = World()
    world.room(9, send_time=NOW)
    world.room(5)
    world.room(2)
    world.settings = BackfillSettings(chunk_rows=10, rooms_in_parallel=1, rate=1000)
    world.run(order=order)
    assert [append[0].room_id for append in world.log.appends] == [world.rooms[i] for i in expected]


def test_a_last_chunk_purged_after_the_plan_still_ends_visible() -> None:
    """The last chunk's rows were all hard-deleted between the plan and their hint: its range
    gives the capturer nothing to emit, but the closing hint (a message hint for the room's
    highest id, now gone) gives a delete event whose position reaches the read model."""
    world = World()
    room = world.room(25)
    ids = sorted(world.monolith_rows(room))

    def purge_the_tail(measured: int) -> None:
        for message_id in ids[20:]:
            world.monolith.purge(message_id)

    world.history.after_bounds = purge_the_tail
    world.run()
    assert world.marks(room) == 1
    assert world.read_model(room) == world.monolith_rows(room)
    assert sorted(world.read_model(room)) == ids[:20]
    assert world.closing_hints(room) == [MessageHint(room, ids[-1])]


def test_the_whole_room_purged_after_the_plan_is_marked_too() -> None:
    world = World()
    room = world.room(5)

    def purge_all(measured: int) -> None:
        for message_id in list(world.monolith_rows(measured)):
            world.monolith.purge(message_id)

    world.history.after_bounds = purge_all
    world.run()
    assert world.marks(room) == 1 and world.range_hints(room) == []
    assert world.read_model(room) == {}


def test_soft_deleted_rows_are_history_too() -> None:
    world = World()
    room = world.room(4)
    gone = world.message(room, send_time=NOW, deleted=1)
    world.message(room, send_time=NOW)
    world.run()
    assert gone not in world.read_model(room)
    assert world.read_model(room) == world.monolith_rows(room)


# -- kill -9 at every step -------------------------------------------------------------------


def side_effects_of_a_whole_run() -> int:
    world = a_world()
    world.run()
    return world.fuse.count


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_a_run_killed_at_any_side_effect_resumes_with_no_gap_and_no_resend(before: bool) -> None:
    steps = side_effects_of_a_whole_run()
    assert steps > 20
    seen = {"planned again": 0, "not resent": 0, "resumed mid-room": 0}
    for at in range(1, steps + 1):
        world = a_world()
        world.fuse.at, world.fuse.before = at, before
        with pytest.raises(Killed):
            world.run()
        where = world.fuse.where
        saved = world.checkpoints.load("backfill")
        appends_before = len(world.log.appends)
        world.fuse.at = None
        outcome = world.run()
        assert_converged(world)
        resumed_appends = world.log.appends[appends_before:]
        if saved is None:  # killed before the first progress was saved: planned again
            assert not outcome.resumed, where
            seen["planned again"] += 1
            continue
        assert outcome.resumed, where
        progress = decode_progress("backfill", saved[1])
        plan = world.checkpoints.load(plan_key("backfill"))
        assert plan is not None
        started = [room.room_id for room in decode_plan("backfill", plan[1]).rooms][: progress.next]
        done_before = set(started) - set(progress.rooms)
        for room in world.rooms:
            again = world.range_hints(room, resumed_appends)
            state = progress.rooms.get(room)
            if room in done_before or (state is not None and state.state.value == "waiting"):
                # Done, or every hint appended and saved: nothing of it is sent again.
                assert again == [], (where, room)
                seen["not resent"] += 1
            elif state is not None and again:
                # Resumes right after its last saved chunk: no gap, nothing saved resent.
                assert again[0].first_message_id == state.sent_to + 1, (where, room)
                seen["resumed mid-room"] += state.sent_to > 0
    assert all(seen.values()), seen  # every case came up


def test_several_kills_in_a_row_still_converge() -> None:
    world = a_world()
    for at in (3, 2, 5, 1, 4, 7):
        world.fuse.count, world.fuse.at = 0, at
        with pytest.raises(Killed):
            world.run()
    world.fuse.at = None
    world.run()
    assert_converged(world)


def test_a_service_down_stops_the_job_and_it_resumes() -> None:
    world = a_world()
    world.log.down = True
    with pytest.raises(EventLogUnavailable):
        world.run()
    assert all(world.marks(room) == 0 for room in world.rooms if world.monolith_rows(room))
    world.log.down = False
    assert world.run().resumed
    assert_converged(world)


# -- visibility ------------------------------------------------------------------------------


def test_a_room_is_not_marked_while_the_pipeline_has_not_applied_its_last_hint() -> None:
    world = World()
    room = world.room(15)
    world.pipe.running = False
    world.settings = BackfillSettings(chunk_rows=10, rate=1000, visible_timeout_s=60)
    with pytest.raises(NotVisible, match=rf"room\(s\) {room} within 60 s"):
        world.run()
    assert world.marks(room) == 0 and world.read_model(room) == {}
    assert world.time.now >= 60
    saved = world.checkpoints.load("backfill")
    assert saved is not None
    assert decode_progress("backfill", saved[1]).rooms[room].state.value == "waiting"
    # The pipeline comes back: the next run sends nothing more and marks the room.
    world.pipe.running = True
    appended = len(world.log.appends)
    world.run()
    assert len(world.log.appends) == appended
    assert world.marks(room) == 1
    assert world.read_model(room) == world.monolith_rows(room)


# -- the throttle and the operator -----------------------------------------------------------


def test_an_unhealthy_monolith_holds_the_sending_then_it_grows_back() -> None:
    world = World()
    world.room(60)
    world.settings = BackfillSettings(chunk_rows=10, rooms_in_parallel=1, rate=1000)
    world.health.samples = [HealthSample(probe_ms=500, threads_running=1)] * 3 + [
        HealthSample(probe_ms=1, threads_running=40)
    ] * 2
    metrics = BackfillMetrics("backfill")
    world.run(metrics=metrics)
    # Five looks over a bound before anything was sent: the first append came after them.
    assert world.health.looks >= 6
    registry = metrics.registry
    assert (
        registry.get_sample_value(
            "migrator_backfill_throttled_total", {"job": "backfill", "reason": "probe_latency"}
        )
        == 3
    )
    assert (
        registry.get_sample_value(
            "migrator_backfill_throttled_total", {"job": "backfill", "reason": "threads_running"}
        )
        == 2
    )
    assert (registry.get_sample_value(
        "migrator_backfill_throttle_wait_seconds_total", {"job": "backfill"}) or 0) >= 5  # fmt: skip
    assert_converged(world)


def test_a_flooded_pipe_holds_the_sending() -> None:
    world = World()
    world.room(20)
    world.pipe.lag_extra = 10**6
    metrics = BackfillMetrics("backfill")

    async def run() -> None:
        job = asyncio.create_task(world.backfill(metrics=metrics).run(
            BackfillRequest("backfill", Selection(everything=True), "test")))  # fmt: skip
        while world.health.looks < 3:
            await asyncio.sleep(0.001)
        assert world.log.appends == []  # nothing sent while the capture lag is over its bound
        world.pipe.lag_extra = 0
        await job

    asyncio.run(run())
    assert metrics.registry.get_sample_value(
        "migrator_backfill_throttled_total", {"job": "backfill", "reason": "capture_lag"}
    )
    assert_converged(world)


def test_the_rate_paces_the_appends() -> None:
    world = World()
    world.room(100)
    world.settings = BackfillSettings(chunk_rows=10, rooms_in_parallel=1, rate=20)
    world.run()
    # 100 messages at 20 per second: about 5 s of the job's clock (the last append's pause
    # is not waited for).
    assert 4 <= world.time.now <= 8


def test_an_operator_rate_override_applies() -> None:
    world = World()
    world.room(100)
    world.settings = BackfillSettings(chunk_rows=10, rooms_in_parallel=1, rate=20)
    world.board.set_control("backfill", "ops", "faster", rate=200)
    world.run()
    assert world.time.now <= 1.5


async def paused(world: World, job: asyncio.Task[BackfillOutcome]) -> None:
    """Returns once the job holds, paused (its heartbeat says so), a few looks later."""
    while not world.board.reports():
        assert not job.done()
        await asyncio.sleep(0.001)
    held = world.time.now
    while world.time.now < held + 3:
        await asyncio.sleep(0.001)


def test_pause_sends_nothing_until_resumed() -> None:
    world = World()
    world.room(40)
    world.board.set_control("backfill", "ops", "wait", state=JobState.PAUSE)

    async def run() -> None:
        job = asyncio.create_task(world.backfill().run(
            BackfillRequest("backfill", Selection(everything=True), "test")))  # fmt: skip
        await paused(world, job)
        assert world.log.appends == [] and not job.done()
        world.board.set_control("backfill", "ops", "go", state=JobState.RUN)
        await job

    asyncio.run(run())
    assert_converged(world)


def test_panic_stops_at_once_with_the_checkpoint_kept() -> None:
    world = World()
    world.room(60)
    world.settings = BackfillSettings(chunk_rows=10, rooms_in_parallel=1, rate=10)

    async def run() -> None:
        job = asyncio.create_task(world.backfill().run(
            BackfillRequest("backfill", Selection(everything=True), "test")))  # fmt: skip
        while len(world.log.appends) < 2:
            await asyncio.sleep(0)
        world.board.set_control("backfill", "ops:bob", "monolith on fire", state=JobState.PANIC)
        with pytest.raises(PanicStop, match="ops:bob"):
            await job

    asyncio.run(run())
    sent = len(world.log.appends)
    assert 2 <= sent <= 3
    saved = world.checkpoints.load("backfill")
    assert saved is not None
    assert decode_progress("backfill", saved[1]).sent_rows == 10 * sent
    # Panic holds until an operator sets the job back to run.
    with pytest.raises(PanicStop):
        world.run()
    assert len(world.log.appends) == sent
    world.board.set_control("backfill", "ops:bob", "fixed", state=JobState.RUN)
    assert world.run().resumed
    assert_converged(world)


def test_the_heartbeat_tells_the_progress() -> None:
    world = a_world()
    world.run()
    report = world.board.reports()[0]
    detail = json.loads(report.detail)["detail"]
    assert report.job == "backfill" and report.kind == "backfill"
    assert detail["rooms"]["done"] == 5 and detail["messages"] == {"planned": 70, "sent": 70}


# -- refusals: nothing changed ---------------------------------------------------------------


def nothing_changed(world: World, saves: int) -> None:
    assert world.log.appends == []
    assert all(world.marks(room) == 0 for room in world.rooms)
    assert len(world.checkpoints.saves) == saves


def test_unknown_rooms_are_refused_before_anything() -> None:
    world = a_world()
    with pytest.raises(UnknownRooms, match="99999"):
        world.run(Selection(ids=(world.rooms[0], 99999)))
    nothing_changed(world, 0)
    assert world.checkpoints.jobs() == []


def test_a_chunk_larger_than_the_capturers_page_is_refused() -> None:
    world = a_world()
    with pytest.raises(
        OperatorError, match="--chunk-rows 51 is more than the capturer's range page"
    ):
        world.backfill(settings=BackfillSettings(chunk_rows=51))


def test_a_checkpoint_of_another_data_set_is_refused_until_restart() -> None:
    world = a_world()
    world.fuse.at = 12
    with pytest.raises(Killed):
        world.run()
    world.fuse.at = None
    kept = world.checkpoints.jobs()
    saves, appends = len(world.checkpoints.saves), len(world.log.appends)
    marks = {room: world.marks(room) for room in world.rooms}
    world.history._fingerprint = "memory:another"  # the monolith was swapped
    with pytest.raises(CheckpointMismatch, match="another data set"):
        world.run()
    assert world.checkpoints.jobs() == kept and len(world.checkpoints.saves) == saves
    assert len(world.log.appends) == appends
    assert {room: world.marks(room) for room in world.rooms} == marks
    outcome = world.run(restart=True)
    assert not outcome.resumed
    assert_converged(world)


def test_a_checkpoint_of_another_selection_or_order_is_refused() -> None:
    world = a_world()
    world.fuse.at = 8
    with pytest.raises(Killed):
        world.run(Selection(ids=tuple(world.rooms[:3])))
    world.fuse.at = None
    saves = len(world.checkpoints.saves)
    with pytest.raises(CheckpointMismatch, match="rooms"):
        world.run(Selection(everything=True))
    with pytest.raises(CheckpointMismatch, match=r"hot order.*size"):
        world.run(Selection(ids=tuple(reversed(world.rooms[:3]))), order=Order.SIZE)
    assert len(world.checkpoints.saves) == saves
    # The same rooms in another order, no --order: it resumes.
    assert world.run(Selection(ids=tuple(reversed(world.rooms[:3])))).resumed


def test_a_checkpoint_of_another_version_or_kind_is_refused() -> None:
    world = a_world()
    world.checkpoints.save("backfill", KIND, json.dumps(
        {"schema": "chat-migration/backfill-progress", "version": 9}))  # fmt: skip
    with pytest.raises(UnreadableCheckpoint, match=r"version 9.*--restart"):
        world.run()
    world.checkpoints.save("backfill", "repair", "{}")
    with pytest.raises(CheckpointMismatch, match="'repair' job's"):
        world.run()
    assert world.log.appends == []
    world.run(restart=True)
    assert_converged(world)


def test_a_progress_without_its_plan_is_refused() -> None:
    world = a_world()
    world.run()
    world.checkpoints.delete(plan_key("backfill"))
    with pytest.raises(UnreadableCheckpoint, match="no plan"):
        world.run()


def test_a_second_run_of_the_same_job_is_refused_while_the_first_runs() -> None:
    world = a_world()
    world.board.set_control("backfill", "ops", "hold it", state=JobState.PAUSE)

    async def run() -> None:
        first = asyncio.create_task(world.backfill().run(
            BackfillRequest("backfill", Selection(everything=True), "test")))  # fmt: skip
        await paused(world, first)
        saves = len(world.checkpoints.saves)
        with pytest.raises(JobRunning, match="job backfill is running"):
            await world.backfill().run(
                BackfillRequest("backfill", Selection(everything=True), "test", restart=True)
            )
        assert len(world.checkpoints.saves) == saves and world.log.appends == []
        # Another job name is another job.
        other = await world.backfill().run(
            BackfillRequest("other", Selection(ids=(world.rooms[2],)), "test")
        )
        assert other.marked == 1
        world.board.set_control("backfill", "ops", "go", state=JobState.RUN)
        await first

    asyncio.run(run())
    assert_converged(world)


def test_a_bad_job_name_or_who_is_refused() -> None:
    world = a_world()
    with pytest.raises(ValueError, match="job name"):
        run_async(
            world.backfill().run(BackfillRequest("Bad Name", Selection(everything=True), "t"))
        )
    with pytest.raises(ValueError):
        run_async(world.backfill().run(BackfillRequest("backfill", Selection(everything=True), "")))
    nothing_changed(world, 0)


def test_a_percentage_that_selects_no_room_says_so() -> None:
    world = World()
    world.room(3)
    with pytest.raises(OperatorError, match="selects no room"):
        world.run(Selection(percent=0.01))
    nothing_changed(world, 0)


# -- the metrics endpoint --------------------------------------------------------------------


def test_metrics_are_served_while_the_job_runs_and_a_busy_port_is_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = BackfillMetrics("backfill")
    metrics.messages.inc(42)
    log = logging.getLogger("test.metrics")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with metrics_endpoint(metrics.registry, "127.0.0.1", port, log) as serving:
        assert serving == port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'migrator_backfill_messages_total{job="backfill"} 42.0' in text
        # A second job on the same port runs without an endpoint, and says so.
        with (
            caplog.at_level("WARNING"),
            metrics_endpoint(metrics.registry, "127.0.0.1", port, log) as second,
        ):
            assert second is None
        assert "runs without one" in caplog.text
    with metrics_endpoint(metrics.registry, "127.0.0.1", 0, log) as off:
        assert off is None


def test_the_tuning_knobs_are_only_speeds() -> None:
    world = a_world()
    world.run(tuning=Tuning(health_every_s=0.1, visible_every_s=0.1, ends_per_look=1))
    assert_converged(world)
