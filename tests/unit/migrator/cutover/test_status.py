"""`chat-migrate status` on in-memory parts: rooms per phase, per-room backfill, parity and shadow
state, job checkpoints summarised without knowing their kind, the kill switch and the last
operator actions across rooms; it reads only."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore
from gateway.domain.phases import Phase
from gateway.domain.shadow_record import ShadowCounts
from migrator.service.status import status, summarise
from tests.unit.migrator.cutover.conftest import Cli

L, DW, SR = Phase.LEGACY, Phase.DUAL_WRITE, Phase.SHADOW_READ
START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def tick(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(cli: Cli) -> Clock:
    clock = Clock()
    cli.store = MemoryPhaseStore(clock=clock)
    cli.clock = clock
    return clock


def story(cli: Cli, clock: Clock) -> None:
    """Rooms 1 and 2 in shadow_read (2 with a difference), 3 in dual_write, 4 rolled back to
    legacy; room 1's parity recent, room 2's too old; the kill switch on and off again."""
    s = cli.store
    s.move([1, 2, 3, 4], DW, "ops:alice", "wave 1")
    clock.tick(minutes=1)
    for room in (1, 2):
        s.mark_backfilled(room, "backfill")
    s.mark_parity_clean(2, "binlog@1:100", "parity")
    clock.tick(hours=2)
    s.mark_parity_clean(1, "binlog@1:900", "parity")
    s.move([1, 2], SR, "ops:bob", "backfilled")
    clock.tick(minutes=1)
    s.record_shadow({1: ShadowCounts(same=5, late=1), 2: ShadowCounts(same=2, different=1)})
    s.move([4], L, "ops:carol", "rollback: noisy room")
    clock.tick(minutes=1)
    s.set_kill_switch(True, "ops:dave", "incident 7")
    clock.tick(minutes=1)
    s.set_kill_switch(False, "ops:dave", "incident 7 over")


def test_an_empty_store_shows_nothing_recorded(cli: Cli) -> None:
    ran = cli("status")
    assert ran.code == 0, ran.err
    assert "kill switch off (never set)" in ran.out
    assert "recorded rooms 0: legacy 0, dual_write 0, shadow_read 0, new_primary 0" in ran.out
    assert "backfill progress: no job checkpoint" in ran.out
    assert "last operator actions: none recorded" in ran.out


def test_status_shows_phases_rooms_parity_shadow_and_actions(cli: Cli, clock: Clock) -> None:
    story(cli, clock)
    revision = cli.store.revision()
    answer = json.loads(cli("status", "--json").out)
    assert answer["rooms_by_phase"] == {
        "legacy": 1, "dual_write": 1, "shadow_read": 2, "new_primary": 0, "new_only": 0,
    }  # fmt: skip
    assert answer["recorded_rooms"] == 4 and answer["backfilled_rooms"] == 2
    assert answer["kill_switch"]["on"] is False and answer["kill_switch"]["who"] == "ops:dave"
    # The parts' maximum age is 1 h: room 1's parity (3 min old) is recent, room 2's is not.
    assert answer["parity"] == {"recent": 1, "stale": 1, "max_age_s": 3600.0}
    assert answer["shadow"] == {"rooms": 2, "clean": 1}
    rooms = {r["room_id"]: r for r in answer["rooms"]}
    assert [r["room_id"] for r in answer["rooms"]] == [1, 2, 3, 4]  # furthest along first
    assert rooms[1]["parity_recent"] is True and rooms[1]["parity_positions"] == "binlog@1:900"
    assert rooms[2]["parity_recent"] is False
    assert rooms[1]["shadow"]["same"] == 5 and rooms[1]["shadow_clean"] is True
    assert rooms[2]["shadow_clean"] is False
    assert "came out different" in rooms[2]["shadow_unclean"]
    assert rooms[3]["shadow"] is None and rooms[3]["shadow_clean"] is None
    assert rooms[3]["backfilled_at"] is None
    actions = answer["recent_actions"]
    assert [(a["who"], a["room_id"], a["kill_switch_on"]) for a in actions[:3]] == [
        ("ops:dave", None, False), ("ops:dave", None, True), ("ops:carol", 4, None),
    ]  # fmt: skip
    assert (actions[2]["from"], actions[2]["to"]) == ("dual_write", "legacy")
    assert len(actions) == 2 + 1 + 2 + 4
    assert [a["at"] for a in actions] == sorted((a["at"] for a in actions), reverse=True)
    assert cli.store.revision() == revision  # status reads only


def test_the_summary_reads_as_prose(cli: Cli, clock: Clock) -> None:
    story(cli, clock)
    out = cli("status").out
    assert "kill switch off (set by ops:dave at 2024-05-01 11:04:00 UTC: incident 7 over)" in out
    assert "recorded rooms 4: legacy 1, dual_write 1, shadow_read 2" in out
    assert "backfilled 2; clean parity within 1 h 1, older 1; clean shadow record 1 of 2" in out
    assert "  1: shadow_read since 2024-05-01 11:01:00 UTC" in out
    assert "parity clean 2024-05-01 11:01:00 UTC at binlog@1:900" in out
    assert "at binlog@1:100 (too old)" in out
    assert "shadow same 5, different 0, late 1, last difference -; shadow record clean" in out
    assert "not clean: needs a clean shadow record: a shadow read came out different at" in out
    assert "2024-05-01 11:03:00 UTC ops:dave: kill switch on (incident 7)" in out
    assert "ops:carol: room 4 dual_write -> legacy (rollback: noisy room)" in out


def test_rooms_in_detail_are_bounded_furthest_along_first(cli: Cli, clock: Clock) -> None:
    story(cli, clock)
    answer = json.loads(cli("status", "--json", "--rooms", "2", "--actions", "1").out)
    assert [r["room_id"] for r in answer["rooms"]] == [1, 2]
    assert answer["recorded_rooms"] == 4 and answer["shadow"] == {"rooms": 2, "clean": 1}
    assert len(answer["recent_actions"]) == 1
    for bad, message in (("--rooms", "-1"), ("--actions", "5000")):
        ran = cli("status", bad, message)
        assert ran.code == 2


def test_job_checkpoints_are_summarised_whatever_their_kind(cli: Cli) -> None:
    progress = {
        "schema": "chat-migration/backfill-progress", "version": 1, "plan": "abc", "next": 3,
        "done_rooms": 1, "done_rows": 5000, "total_rooms": 10, "total_rows": 90000,
        "rooms": [{"room_id": 4, "state": "sending"}, {"room_id": 5, "state": "waiting"},
                  {"room_id": 6, "state": "sending"}],
    }  # fmt: skip
    cli.checkpoints.save("backfill-hot", "backfill", json.dumps(progress))
    cli.checkpoints.save("repair-7", "repair", '{"version": 3, "sent": 12, "rooms": []}')
    cli.checkpoints.save("broken", "backfill", "{not json")
    answer = json.loads(cli("status", "--json").out)
    jobs = {job["job"]: job for job in answer["jobs"]}
    hot = jobs["backfill-hot"]
    assert (hot["kind"], hot["schema"], hot["version"]) == (
        "backfill", "chat-migration/backfill-progress", 1,
    )  # fmt: skip
    assert hot["summary"] == {
        "next": 3, "done_rooms": 1, "done_rows": 5000, "total_rooms": 10, "total_rows": 90000,
        "rooms_by_state": {"sending": 2, "waiting": 1},
    }  # fmt: skip
    assert jobs["repair-7"]["summary"] == {"sent": 12, "rooms_listed": 0}
    assert jobs["broken"]["unreadable"].startswith("not JSON")
    out = cli("status").out
    assert (
        "backfill-hot [backfill] chat-migration/backfill-progress v1: next 3, done_rooms 1" in out
    )
    assert "rooms_by_state sending 2, waiting 1" in out
    assert "broken [backfill]: unreadable: not JSON" in out


def test_without_a_checkpoint_store_status_says_so() -> None:
    found = status(MemoryPhaseStore(), None)
    assert found.jobs is None and found.as_json()["jobs"] is None


@pytest.mark.parametrize(
    ("state", "unreadable"), [("[1, 2]", "not a JSON object"), ("", "not JSON")]
)
def test_a_state_that_is_no_object_is_unreadable(state: str, unreadable: str) -> None:
    summary = summarise("job", "kind", state)
    assert summary.unreadable is not None and summary.unreadable.startswith(unreadable)


def test_status_never_changes_the_store(cli: Cli, clock: Clock) -> None:
    story(cli, clock)
    before: Callable[[], object] = lambda: (  # noqa: E731
        cli.store.revision(), cli.store.rooms(), cli.store.recent_transitions(100),
        cli.store.shadow_records([1, 2, 3, 4]),
    )  # fmt: skip
    snapshot = before()
    cli("status")
    cli("status", "--json")
    assert before() == snapshot
