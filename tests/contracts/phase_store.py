"""The PhaseStore contract: one suite, run unchanged against every adapter of the port.

A subclass provides the `store` fixture: an empty control store (no room recorded, the kill
switch never set).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.phases import (
    INSPECTED,
    Direction,
    KillSwitch,
    MarkKind,
    MoveReport,
    Phase,
    RoomRecord,
    Transition,
)
from gateway.domain.shadow_record import ShadowCounts, ShadowTally
from gateway.ports import PhaseStore

L, DW, SR, NP = Phase.LEGACY, Phase.DUAL_WRITE, Phase.SHADOW_READ, Phase.NEW_PRIMARY
WHO = "ops:alice"


def fresh_rooms(n: int = 1) -> list[int]:
    return random.sample(range(1, 2**32), n)


def fresh_room() -> int:
    return fresh_rooms()[0]


def near_now(at: datetime | None) -> bool:
    """A change's time is now in UTC (the store's clock may be the database server's)."""
    assert at is not None and at.utcoffset() == timedelta(0)
    return abs(datetime.now(UTC) - at) < timedelta(minutes=1)


def run_in_threads(*jobs: Callable[[], None]) -> None:
    """Starts the jobs together and re-raises the first failure of any."""
    start = threading.Barrier(len(jobs))
    failures: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        start.wait()
        try:
            job()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a mover hangs"
    if failures:
        raise failures[0]


class PhaseStoreContract:
    @pytest.fixture
    def store(self) -> Iterator[PhaseStore]:
        raise NotImplementedError

    def to_shadow_read(self, store: PhaseStore, room: int) -> None:
        store.move([room], DW, WHO, "start")
        store.mark_backfilled(room, "backfill")
        assert store.move([room], SR, WHO, "backfilled").moved

    # -- an absent room ------------------------------------------------------------------

    def test_an_absent_room_is_legacy(self, store: PhaseStore) -> None:
        room = fresh_room()
        assert store.room(room) == RoomRecord.absent(room)
        assert store.room(room).phase == L
        assert store.snapshot().phase_of(room) == L
        assert store.timeline(room, 10) == []
        assert store.marks(room, 10) == []
        assert store.rooms() == []

    def test_a_new_store_has_the_kill_switch_off_and_no_history(self, store: PhaseStore) -> None:
        assert store.kill_switch() == KillSwitch(on=False)
        assert store.switch_history(10) == []
        snapshot = store.snapshot()
        assert snapshot.kill_switch is False
        assert dict(snapshot.phases) == {}
        assert snapshot.revision == store.revision()

    # -- guards --------------------------------------------------------------------------

    def test_legacy_to_dual_write_always(self, store: PhaseStore) -> None:
        room = fresh_room()
        report = store.move([room], DW, WHO, "first rooms")
        assert [(t.room_id, t.from_phase, t.to_phase) for t in report.moved] == [(room, L, DW)]
        assert report.unchanged == [] and report.refused == {}
        record = store.room(room)
        assert record.phase == DW
        assert record.changed_at == report.moved[0].at
        assert store.snapshot().phase_of(room) == DW

    def test_shadow_read_needs_the_backfill_done(self, store: PhaseStore) -> None:
        room = fresh_room()
        store.move([room], DW, WHO, "start")
        refused = store.move([room], SR, WHO, "too early")
        assert refused.moved == [] and "backfill" in refused.refused[room]
        assert store.room(room).phase == DW
        record = store.mark_backfilled(room, "backfill-job")
        assert near_now(record.backfilled_at)
        assert store.room(room) == record
        moved = store.move([room], SR, WHO, "backfilled")
        assert [(t.from_phase, t.to_phase) for t in moved.moved] == [(DW, SR)]
        assert store.room(room).phase == SR

    def test_forward_is_one_step_at_a_time(self, store: PhaseStore) -> None:
        room = fresh_room()
        store.mark_backfilled(room, "backfill")
        for to in (SR, NP, Phase.NEW_ONLY):
            report = store.move([room], to, WHO, "skip ahead")
            assert report.moved == [] and "one step" in report.refused[room], to
        assert store.room(room).phase == L
        assert store.timeline(room, 10) == []

    def test_new_primary_is_refused_in_this_version_even_with_clean_parity(
        self, store: PhaseStore
    ) -> None:
        room = fresh_room()
        self.to_shadow_read(store, room)
        reason = store.move([room], NP, WHO, "cutover").refused[room]
        assert "not built" in reason and "parity" in reason
        record = store.mark_parity_clean(room, "hints@3:1200,events@3:900", "parity-job")
        assert near_now(record.parity_clean_at)
        assert record.parity_positions == "hints@3:1200,events@3:900"
        reason = store.move([room], NP, WHO, "cutover").refused[room]
        assert "not built" in reason and "parity" not in reason and "shadow record" in reason
        assert store.room(room).phase == SR

    def test_rollback_goes_back_to_any_earlier_phase_at_once(self, store: PhaseStore) -> None:
        room = fresh_room()
        self.to_shadow_read(store, room)
        report = store.move([room], L, WHO, "diffs in shadow reads")
        assert [(t.from_phase, t.to_phase) for t in report.moved] == [(SR, L)]
        assert store.room(room).phase == L
        assert room not in store.snapshot().phases
        # The facts stay: the backfill done is still done.
        store.move([room], DW, WHO, "again")
        assert store.move([room], SR, WHO, "again").moved
        assert store.move([room], DW, WHO, "one step back").moved
        assert store.room(room).phase == DW

    def test_moving_to_the_phase_a_room_is_in_is_unchanged(self, store: PhaseStore) -> None:
        room = fresh_room()
        store.move([room], DW, WHO, "start")
        revision = store.revision()
        report = store.move([room], DW, WHO, "again")
        assert report == MoveReport(moved=[], unchanged=[room], refused={})
        assert store.revision() == revision
        assert len(store.timeline(room, 10)) == 1
        absent = fresh_room()
        assert store.move([absent], L, WHO, "noop").unchanged == [absent]
        assert store.room(absent) == RoomRecord.absent(absent)
        assert store.revision() == revision

    def test_a_move_judges_each_room_and_reports_in_the_order_asked(
        self, store: PhaseStore
    ) -> None:
        ready, early, there = fresh_rooms(3)
        store.move([ready, early, there], DW, WHO, "start")
        store.mark_backfilled(ready, "backfill")
        store.mark_backfilled(there, "backfill")
        store.move([there], SR, WHO, "first")
        report = store.move([there, early, ready, ready], SR, WHO, "wave 2")
        assert [t.room_id for t in report.moved] == [ready]
        assert report.unchanged == [there]
        assert list(report.refused) == [early]
        assert [store.room(r).phase for r in (ready, early, there)] == [SR, DW, SR]
        assert len(store.timeline(ready, 10)) == 2  # the duplicate counted once

    def test_an_empty_move_changes_nothing(self, store: PhaseStore) -> None:
        revision = store.revision()
        assert store.move([], DW, WHO, "nothing") == MoveReport()
        assert store.revision() == revision

    # -- dry run -------------------------------------------------------------------------

    def test_a_dry_run_judges_the_same_and_changes_nothing(self, store: PhaseStore) -> None:
        moving, early = fresh_rooms(2)
        store.move([early], DW, WHO, "start")
        revision, snapshot = store.revision(), store.snapshot()
        dry = store.move([moving, early], DW, WHO, "try", dry_run=True)
        assert [(t.room_id, t.from_phase, t.to_phase) for t in dry.moved] == [(moving, L, DW)]
        assert dry.unchanged == [early]
        dry = store.move([moving, early], SR, WHO, "try", dry_run=True)
        assert set(dry.refused) == {moving, early}
        assert store.revision() == revision
        assert store.snapshot() == snapshot
        assert store.room(moving) == RoomRecord.absent(moving)
        assert store.timeline(moving, 10) == []

    # -- the timeline --------------------------------------------------------------------

    def test_a_move_records_who_when_and_why_newest_first(self, store: PhaseStore) -> None:
        room = fresh_room()
        first = store.move([room], DW, "ops:alice", "ticket MIG-12: first 1 %").moved[0]
        second = store.move([room], L, "ops:bob", "rollback: 5xx from the new core 😀").moved[0]
        assert first == Transition(room, L, DW, "ops:alice", "ticket MIG-12: first 1 %", first.at)
        assert near_now(first.at) and first.at <= second.at
        assert store.timeline(room, 10) == [second, first]
        assert store.timeline(room, 1) == [second]
        assert store.timeline(room, 0) == []
        assert store.timeline(fresh_room(), 10) == []

    def test_one_move_stamps_its_rooms_with_one_time(self, store: PhaseStore) -> None:
        rooms = fresh_rooms(5)
        moved = store.move(rooms, DW, WHO, "wave").moved
        assert len({t.at for t in moved}) == 1
        assert all(store.timeline(r, 10) == [t] for r, t in zip(rooms, moved, strict=True))

    def test_marks_are_recorded_apart_from_the_timeline(self, store: PhaseStore) -> None:
        room = fresh_room()
        store.mark_backfilled(room, "backfill-job")
        store.mark_parity_clean(room, "p1", "parity-job")
        record = store.mark_parity_clean(room, "p2", "parity-job")
        assert record.phase == L and record.changed_at is None
        assert record.parity_positions == "p2"
        marks = store.marks(room, 10)
        assert [(m.kind, m.detail, m.who) for m in marks] == [
            (MarkKind.PARITY_CLEAN, "p2", "parity-job"),
            (MarkKind.PARITY_CLEAN, "p1", "parity-job"),
            (MarkKind.BACKFILLED, None, "backfill-job"),
        ]
        assert record.parity_clean_at == marks[0].at
        assert store.timeline(room, 10) == []
        assert store.rooms() == [record]

    def test_rooms_lists_the_recorded_rooms_by_phase(self, store: PhaseStore) -> None:
        a, b, c = sorted(fresh_rooms(3))
        store.move([c, a], DW, WHO, "start")
        store.move([b], DW, WHO, "start")
        store.move([b], L, WHO, "back")
        assert [r.room_id for r in store.rooms(DW)] == [a, c]
        assert [r.room_id for r in store.rooms(L)] == [b]
        assert [r.room_id for r in store.rooms()] == [a, b, c]
        assert store.rooms(SR) == []

    # -- the revision --------------------------------------------------------------------

    def test_the_revision_changes_on_every_change_and_only_then(self, store: PhaseStore) -> None:
        room = fresh_room()
        seen = [store.revision()]

        def changed() -> bool:
            now = store.revision()
            moved = now != seen[-1]
            seen.append(now)
            return moved

        assert not changed()
        store.move([room], DW, WHO, "start")
        assert changed()
        store.move([room], DW, WHO, "again")
        assert not changed()
        store.move([room], NP, WHO, "refused")
        assert not changed()
        store.move([room], SR, WHO, "refused: no backfill")
        assert not changed()
        store.move([room], L, WHO, "dry", dry_run=True)
        assert not changed()
        store.mark_backfilled(room, "backfill")
        assert changed()
        store.mark_parity_clean(room, "p", "parity")
        assert changed()
        store.set_kill_switch(True, WHO, "incident")
        assert changed()
        store.set_kill_switch(True, WHO, "again")
        assert not changed()
        store.set_kill_switch(False, WHO, "over")
        assert changed()
        assert len(set(seen)) == 6
        assert store.snapshot().revision == seen[-1]

    # -- the kill switch -----------------------------------------------------------------

    def test_the_kill_switch_makes_every_room_legacy_and_keeps_the_phases(
        self, store: PhaseStore
    ) -> None:
        writing, reading, back = fresh_rooms(3)
        store.move([writing, reading, back], DW, WHO, "start")
        self.to_shadow_read(store, reading)
        store.move([back], L, WHO, "back")
        before = store.snapshot()
        assert before.inspected_rooms() == {writing, reading}
        assert before.phase_of(reading) == SR

        switch = store.set_kill_switch(True, "ops:carol", "incident 42: the gateway is slow")
        assert switch.on and switch.who == "ops:carol" and near_now(switch.at)
        assert switch.why == "incident 42: the gateway is slow"
        assert store.kill_switch() == switch
        during = store.snapshot()
        assert during.kill_switch is True
        assert all(during.phase_of(r) == L for r in (writing, reading, back, fresh_room()))
        assert during.inspected_rooms() == frozenset()
        assert dict(during.phases) == dict(before.phases)
        assert store.room(reading).phase == SR
        assert len(store.timeline(writing, 10)) == 1  # the switch is not in the timelines

        again = store.set_kill_switch(True, "ops:dave", "also on")
        assert again == switch  # already on: nothing recorded, who set it is kept

        off = store.set_kill_switch(False, "ops:carol", "incident 42 over")
        assert off.on is False
        after = store.snapshot()
        assert after.phase_of(reading) == SR and after.phase_of(writing) == DW
        assert after.inspected_rooms() == {writing, reading}
        assert store.switch_history(10) == [off, switch]
        assert store.switch_history(1) == [off]

    def test_moves_are_recorded_while_the_kill_switch_is_on(self, store: PhaseStore) -> None:
        room = fresh_room()
        store.set_kill_switch(True, WHO, "incident")
        assert store.move([room], DW, WHO, "prepare").moved
        assert store.snapshot().phase_of(room) == L
        store.set_kill_switch(False, WHO, "over")
        assert store.snapshot().phase_of(room) == DW

    # -- concurrency ---------------------------------------------------------------------

    def test_concurrent_moves_of_one_room_never_lose_a_transition(self, store: PhaseStore) -> None:
        """Three movers flip one room back and forth: every transition recorded starts where
        the previous one ended (two movers judging the same stale record would both record
        legacy -> dual_write, one after the other)."""
        room = fresh_room()
        before = store.revision()
        reports: list[MoveReport] = []

        def flip(to: Phase) -> Callable[[], None]:
            def job() -> None:
                for _ in range(25):
                    reports.append(store.move([room], to, WHO, f"to {to}"))

            return job

        run_in_threads(flip(DW), flip(DW), flip(L))
        moved = [t for report in reports for t in report.moved]
        timeline = store.timeline(room, 1000)[::-1]
        assert Counter(timeline) == Counter(moved)
        phase = L
        for transition in timeline:
            assert transition.from_phase == phase
            phase = transition.to_phase
        assert store.room(room).phase == phase
        assert len(moved) + sum(len(r.unchanged) for r in reports) == 75
        assert store.revision() != before or not moved

    def test_concurrent_movers_of_the_same_rooms_move_each_once(self, store: PhaseStore) -> None:
        rooms = fresh_rooms(20)
        reports: list[MoveReport] = []

        def mover() -> None:
            for room in rooms:
                reports.append(store.move([room], DW, WHO, "race"))

        run_in_threads(mover, mover)
        moved = [t.room_id for report in reports for t in report.moved]
        assert sorted(moved) == sorted(rooms)
        assert all(len(store.timeline(room, 10)) == 1 for room in rooms)
        assert {r.room_id for r in store.rooms(DW)} == set(rooms)

    # -- bad input -----------------------------------------------------------------------

    @pytest.mark.parametrize("bad", [0, -1, 2**32, "12", 1.0, True, None])
    def test_a_bad_room_id_is_refused_and_changes_nothing(
        self, store: PhaseStore, bad: object
    ) -> None:
        good = fresh_room()
        revision = store.revision()
        with pytest.raises(ValueError, match="room id"):
            store.move([good, bad], DW, WHO, "wave")  # type: ignore[list-item]
        with pytest.raises(ValueError, match="room id"):
            store.room(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="room id"):
            store.mark_backfilled(bad, WHO)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="room id"):
            store.timeline(bad, 10)  # type: ignore[arg-type]
        assert store.revision() == revision
        assert store.room(good) == RoomRecord.absent(good)

    @pytest.mark.parametrize(
        ("who", "why", "message"),
        [
            ("", "why", "who must not be empty"),
            ("   ", "why", "who must not be empty"),
            ("x" * 101, "why", "who is at most 100"),
            ("ops\nalice", "why", "one line"),
            (WHO, "", "why must not be empty"),
            (WHO, "y" * 1001, "why is at most 1000"),
        ],
    )
    def test_who_and_why_are_required_and_bounded(
        self, store: PhaseStore, who: str, why: str, message: str
    ) -> None:
        room = fresh_room()
        revision = store.revision()
        with pytest.raises(ValueError, match=message):
            store.move([room], DW, who, why)
        with pytest.raises(ValueError, match=message):
            store.set_kill_switch(True, who, why)
        assert store.revision() == revision
        assert store.room(room) == RoomRecord.absent(room)
        assert store.kill_switch().on is False

    def test_other_bad_input_is_refused_and_changes_nothing(self, store: PhaseStore) -> None:
        room = fresh_room()
        revision = store.revision()
        with pytest.raises(ValueError, match="unknown phase 'new_primery'"):
            store.move([room], "new_primery", WHO, "typo")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="parity positions must not be empty"):
            store.mark_parity_clean(room, "", "parity")
        with pytest.raises(ValueError, match="who must not be empty"):
            store.mark_backfilled(room, "")
        with pytest.raises(ValueError, match="limit"):
            store.timeline(room, -1)
        with pytest.raises(ValueError, match="on \\(True\\) or off"):
            store.set_kill_switch("yes", WHO, "why")  # type: ignore[arg-type]
        assert store.revision() == revision
        assert store.rooms() == []

    def test_an_inspected_phase_is_in_the_snapshot_and_legacy_is_not(
        self, store: PhaseStore
    ) -> None:
        room = fresh_room()
        self.to_shadow_read(store, room)
        snapshot = store.snapshot()
        assert snapshot.phases[room] in INSPECTED
        assert snapshot.inspected_rooms() == {room}

    # -- direction (cutover only forward, rollback only back) ------------------------------

    def test_a_forward_move_refuses_a_room_it_would_take_back(self, store: PhaseStore) -> None:
        behind, ahead = fresh_rooms(2)
        store.move([ahead], DW, WHO, "start")
        self.to_shadow_read(store, ahead)
        revision = store.revision()
        report = store.move([behind, ahead], DW, WHO, "cutover", direction=Direction.FORWARD)
        assert [t.room_id for t in report.moved] == [behind]
        reason = report.refused[ahead]
        assert "only moves forward" in reason and "rollback" in reason
        assert store.room(ahead).phase == SR
        assert store.revision() != revision

    def test_a_backward_move_refuses_a_room_it_would_take_forward(self, store: PhaseStore) -> None:
        behind, ahead = fresh_rooms(2)
        store.move([ahead], DW, WHO, "start")
        self.to_shadow_read(store, ahead)
        revision = store.revision()
        report = store.move([behind, ahead], DW, WHO, "rollback", direction=Direction.BACK)
        assert [(t.room_id, t.from_phase, t.to_phase) for t in report.moved] == [(ahead, SR, DW)]
        reason = report.refused[behind]
        assert "only moves back" in reason and "cutover" in reason
        assert store.room(behind) == RoomRecord.absent(behind)
        assert store.revision() != revision
        dry = store.move([behind], DW, WHO, "again", direction=Direction.BACK, dry_run=True)
        assert list(dry.refused) == [behind]

    def test_a_direction_keeps_the_phase_a_room_is_in_unchanged(self, store: PhaseStore) -> None:
        room = fresh_room()
        store.move([room], DW, WHO, "start")
        for direction in Direction:
            assert store.move([room], DW, WHO, "again", direction=direction).unchanged == [room]

    def test_a_bad_direction_or_maximum_age_is_refused_and_changes_nothing(
        self, store: PhaseStore
    ) -> None:
        room = fresh_room()
        revision = store.revision()
        with pytest.raises(ValueError, match="direction is forward or back"):
            store.move([room], DW, WHO, "x", direction="sideways")  # type: ignore[arg-type]
        for bad in (0, -1.0, float("nan"), "1h"):
            with pytest.raises(ValueError, match="maximum age"):
                store.move([room], DW, WHO, "x", parity_max_age_s=bad)  # type: ignore[arg-type]
        assert store.revision() == revision
        assert store.room(room) == RoomRecord.absent(room)

    # -- the guard of new_primary names every condition still missing ----------------------

    def test_new_primary_names_a_missing_parity_and_shadow_record(self, store: PhaseStore) -> None:
        room = fresh_room()
        self.to_shadow_read(store, room)
        reason = store.move([room], NP, WHO, "cutover").refused[room]
        assert "not built" in reason
        assert "clean parity check of the room within 24 h (none is recorded)" in reason
        assert "no shadow read came out same since the room entered shadow_read" in reason

    def test_new_primary_with_recent_parity_and_clean_shadow_only_lacks_the_build(
        self, store: PhaseStore
    ) -> None:
        room = fresh_room()
        self.to_shadow_read(store, room)
        store.mark_parity_clean(room, "binlog@1:4", "parity")
        store.record_shadow({room: ShadowCounts(same=3, late=1)})
        reason = store.move([room], NP, WHO, "cutover").refused[room]
        assert "not built" in reason and "conditions are met" in reason
        # A parity is recent only within the maximum age the mover gives.
        reason = store.move([room], NP, WHO, "cutover", parity_max_age_s=1e-6).refused[room]
        assert "within 0 s (the last one ran at" in reason
        assert "shadow" not in reason
        assert store.room(room).phase == SR

    def test_a_difference_since_shadow_read_makes_the_shadow_record_unclean(
        self, store: PhaseStore
    ) -> None:
        room = fresh_room()
        self.to_shadow_read(store, room)
        store.mark_parity_clean(room, "binlog@1:4", "parity")
        store.record_shadow({room: ShadowCounts(same=5, different=1)})
        reason = store.move([room], NP, WHO, "cutover").refused[room]
        assert "a shadow read came out different at" in reason
        # Back to dual_write and forward again: a new shadow_read stint starts clean...
        store.move([room], DW, WHO, "back")
        store.move([room], SR, WHO, "again")
        reason = store.move([room], NP, WHO, "cutover").refused[room]
        assert "different" not in reason and "no shadow read came out same" in reason
        # ... and only a comparison judged same within it makes it clean.
        store.record_shadow({room: ShadowCounts(same=1)})
        assert "conditions are met" in store.move([room], NP, WHO, "cutover").refused[room]

    # -- the operators' last actions across rooms ------------------------------------------

    def test_recent_transitions_lists_every_room_newest_first(self, store: PhaseStore) -> None:
        a, b, c = fresh_rooms(3)
        assert store.recent_transitions(10) == []
        first = store.move([a], DW, "ops:alice", "first").moved
        wave = store.move([b, c], DW, "ops:bob", "wave").moved
        back = store.move([a], L, "ops:carol", "back").moved
        store.move([b], DW, WHO, "unchanged")
        store.move([c], SR, WHO, "refused")
        store.move([c], L, WHO, "dry", dry_run=True)
        recent = store.recent_transitions(10)
        assert recent[0] == back[0]
        assert set(recent[1:3]) == set(wave) and recent[3] == first[0]
        assert len(recent) == 4
        assert store.recent_transitions(1) == back
        assert store.recent_transitions(0) == []
        with pytest.raises(ValueError, match="limit"):
            store.recent_transitions(-1)

    # -- shadow records ---------------------------------------------------------------------

    def test_shadow_records_add_up_and_stamp_the_outcomes_seen(self, store: PhaseStore) -> None:
        room, other, never = fresh_rooms(3)
        revision = store.revision()
        assert store.shadow_records([room, other, never]) == {}
        store.record_shadow({room: ShadowCounts(same=2, late=1), other: ShadowCounts(late=4)})
        first = store.shadow_records([room, other, never])
        assert set(first) == {room, other}
        tally = first[room]
        assert (tally.same, tally.different, tally.late) == (2, 0, 1)
        assert near_now(tally.last_same_at) and tally.last_late_at == tally.last_same_at
        assert tally.last_different_at is None and tally.updated_at == tally.last_same_at
        assert first[other].last_same_at is None and near_now(first[other].last_late_at)
        store.record_shadow({room: ShadowCounts(different=1, same=1)})
        second = store.shadow_records([room])[room]
        assert (second.same, second.different, second.late) == (3, 1, 1)
        assert second.last_late_at == tally.last_late_at  # not counted again: not stamped
        assert second.last_different_at is not None and tally.updated_at is not None
        assert second.last_different_at >= tally.updated_at
        assert second.last_same_at == second.last_different_at == second.updated_at
        # A record routes nothing: the gateways' revision poll does not see it.
        assert store.revision() == revision
        assert store.room(room) == RoomRecord.absent(room)
        assert store.rooms() == []

    def test_an_empty_batch_or_zero_counts_change_nothing(self, store: PhaseStore) -> None:
        room = fresh_room()
        store.record_shadow({})
        store.record_shadow({room: ShadowCounts()})
        assert store.shadow_records([room]) == {}
        assert ShadowTally.absent(room) == ShadowTally(room)

    def test_concurrent_batches_lose_no_count(self, store: PhaseStore) -> None:
        """Several gateways record batches over the same rooms at once."""
        rooms = fresh_rooms(5)

        def gateway() -> None:
            for _ in range(10):
                store.record_shadow({room: ShadowCounts(same=1, late=2) for room in rooms})

        run_in_threads(gateway, gateway, gateway)
        tallies = store.shadow_records(rooms)
        assert all((t.same, t.different, t.late) == (30, 0, 60) for t in tallies.values())
        assert set(tallies) == set(rooms)

    def test_a_bad_shadow_batch_is_refused_and_changes_nothing(self, store: PhaseStore) -> None:
        good = fresh_room()
        for bad in ({good: ShadowCounts(same=1), 0: ShadowCounts(same=1)},
                    {good: ShadowCounts(same=1), 2**32: ShadowCounts(same=1)}):  # fmt: skip
            with pytest.raises(ValueError, match="room id"):
                store.record_shadow(bad)
        with pytest.raises(ValueError, match="ShadowCounts"):
            store.record_shadow({good: (1, 0, 0)})  # type: ignore[dict-item]
        with pytest.raises(ValueError, match="room id"):
            store.shadow_records([0])
        assert store.shadow_records([good]) == {}
