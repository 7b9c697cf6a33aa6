"""`chat-migrate status`: where the migration is, read from the control store and the jobs'
checkpoints (migrator/README.md, "Cutover").

- rooms per phase (every recorded room counted; the details of at most `room_limit` rooms,
  the furthest along first: those are the rooms an operator decides about next);
- per room: when its backfill was reported done, its last clean parity check (when, at which
  positions, and whether it is recent enough for the phases after shadow_read), and its shadow
  record (comparisons by outcome, the last difference, clean or why not);
- the backfill's progress, from every job checkpoint (`CheckpointStore.jobs`): each job's own
  JSON, summarised generically (its schema and version, its top-level counts, its rooms by
  state), so that a job kind added later shows without a change here;
- the kill switch, and the last operator actions: phase changes of any room and changes of the
  kill switch, newest first.

Reads only: it never changes the control store or a checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.domain.phases import (
    ORDER,
    PARITY_MAX_AGE_S,
    KillSwitch,
    Phase,
    RoomRecord,
    Transition,
    rank,
)
from gateway.domain.shadow_record import ShadowTally, why_not_clean
from gateway.ports import PhaseStore
from migrator.ports import CheckpointStore

ROOM_LIMIT = 50
ACTIONS = 20


@dataclass(frozen=True, slots=True)
class RoomStatus:
    """One recorded room: its phase and the facts the guards read."""

    room_id: int
    phase: Phase
    changed_at: datetime | None
    backfilled_at: datetime | None
    parity_clean_at: datetime | None
    parity_positions: str | None
    parity_recent: bool  # a clean parity within the maximum age
    shadow: ShadowTally | None
    # For a room in shadow_read or later: None when its shadow record is clean, else why not.
    # For a room before shadow_read: None (no comparison is made yet).
    shadow_unclean: str | None

    def as_json(self) -> dict[str, Any]:
        s = self.shadow
        return {
            "room_id": self.room_id,
            "phase": self.phase.value,
            "changed_at": _iso(self.changed_at),
            "backfilled_at": _iso(self.backfilled_at),
            "parity_clean_at": _iso(self.parity_clean_at),
            "parity_positions": self.parity_positions,
            "parity_recent": self.parity_recent,
            "shadow": None
            if s is None
            else {
                "same": s.same,
                "different": s.different,
                "late": s.late,
                "last_same_at": _iso(s.last_same_at),
                "last_different_at": _iso(s.last_different_at),
                "last_late_at": _iso(s.last_late_at),
                "updated_at": _iso(s.updated_at),
            },
            "shadow_clean": None
            if rank(self.phase) < rank(Phase.SHADOW_READ)
            else self.shadow_unclean is None,
            "shadow_unclean": self.shadow_unclean,
        }


@dataclass(frozen=True, slots=True)
class JobProgress:
    """A job's checkpoint, summarised without knowing its kind: `summary` holds its top-level
    numbers and, when it lists rooms with a state, how many are in each (`rooms_by_state`).
    `unreadable` says why the state is not JSON (nothing else is shown then)."""

    job: str
    kind: str
    schema: str | None
    version: int | None
    summary: dict[str, Any] = field(default_factory=dict)
    unreadable: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job, "kind": self.kind, "schema": self.schema, "version": self.version,
            "summary": self.summary, "unreadable": self.unreadable,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Action:
    """An operator's action: a room's phase change, or a change of the kill switch."""

    at: datetime
    who: str
    why: str
    room_id: int | None = None  # None: the kill switch
    from_phase: Phase | None = None
    to_phase: Phase | None = None
    kill_switch_on: bool | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(), "who": self.who, "why": self.why,
            "room_id": self.room_id,
            "from": None if self.from_phase is None else self.from_phase.value,
            "to": None if self.to_phase is None else self.to_phase.value,
            "kill_switch_on": self.kill_switch_on,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Status:
    at: datetime
    kill_switch: KillSwitch
    by_phase: dict[Phase, int]  # every phase, recorded rooms only (legacy: rolled back ones)
    recorded: int
    backfilled: int
    parity_recent: int
    parity_stale: int  # a clean parity recorded, older than the maximum age
    shadow_clean: int  # rooms in shadow_read or later with a clean shadow record
    shadow_rooms: int  # rooms in shadow_read or later
    parity_max_age_s: float
    rooms: list[RoomStatus]  # at most room_limit, furthest along first
    jobs: list[JobProgress] | None  # None: no checkpoint store wired
    actions: list[Action]

    def as_json(self) -> dict[str, Any]:
        switch = self.kill_switch
        return {
            "at": self.at.isoformat(),
            "kill_switch": {
                "on": switch.on,
                "who": switch.who,
                "why": switch.why,
                "at": _iso(switch.at),
            },
            "rooms_by_phase": {phase.value: n for phase, n in self.by_phase.items()},
            "recorded_rooms": self.recorded,
            "backfilled_rooms": self.backfilled,
            "parity": {
                "recent": self.parity_recent,
                "stale": self.parity_stale,
                "max_age_s": self.parity_max_age_s,
            },
            "shadow": {"rooms": self.shadow_rooms, "clean": self.shadow_clean},
            "rooms": [room.as_json() for room in self.rooms],
            "rooms_listed": len(self.rooms),
            "jobs": None if self.jobs is None else [job.as_json() for job in self.jobs],
            "recent_actions": [action.as_json() for action in self.actions],
        }


def status(
    store: PhaseStore,
    checkpoints: CheckpointStore | None,
    *,
    parity_max_age_s: float = PARITY_MAX_AGE_S,
    room_limit: int = ROOM_LIMIT,
    actions: int = ACTIONS,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Status:
    """Reads everything `chat-migrate status` shows. `room_limit` rooms in detail (0..10 000),
    `actions` recent actions (0..1000); ValueError otherwise."""
    if not 0 <= room_limit <= 10_000:
        raise ValueError(f"--rooms is in 0..10000, got {room_limit}")
    if not 0 <= actions <= 1000:
        raise ValueError(f"--actions is in 0..1000, got {actions}")
    now = clock()
    records = store.rooms()
    by_phase = {phase: 0 for phase in ORDER}
    for record in records:
        by_phase[record.phase] += 1
    shadowed = [r for r in records if rank(r.phase) >= rank(Phase.SHADOW_READ)]
    # Furthest along first, then by room id: the rooms whose next step is closest.
    listed = sorted(records, key=lambda r: (-rank(r.phase), r.room_id))[:room_limit]
    wanted = {r.room_id for r in listed} | {r.room_id for r in shadowed}
    tallies = store.shadow_records(sorted(wanted)) if wanted else {}

    def recent(record: RoomRecord) -> bool:
        at = record.parity_clean_at
        return at is not None and (now - at).total_seconds() <= parity_max_age_s

    def unclean(record: RoomRecord) -> str | None:
        if rank(record.phase) < rank(Phase.SHADOW_READ):
            return None
        entered = record.changed_at if record.phase == Phase.SHADOW_READ else None
        return why_not_clean(tallies.get(record.room_id), entered)

    rooms = [
        RoomStatus(
            r.room_id,
            r.phase,
            r.changed_at,
            r.backfilled_at,
            r.parity_clean_at,
            r.parity_positions,
            recent(r),
            tallies.get(r.room_id),
            unclean(r),
        )
        for r in listed
    ]
    parity_recent = sum(1 for r in records if recent(r))
    return Status(
        at=now,
        kill_switch=store.kill_switch(),
        by_phase=by_phase,
        recorded=len(records),
        backfilled=sum(1 for r in records if r.backfilled_at is not None),
        parity_recent=parity_recent,
        parity_stale=sum(1 for r in records if r.parity_clean_at is not None) - parity_recent,
        shadow_clean=sum(1 for r in shadowed if unclean(r) is None),
        shadow_rooms=len(shadowed),
        parity_max_age_s=parity_max_age_s,
        rooms=rooms,
        jobs=None if checkpoints is None else [summarise(*job) for job in checkpoints.jobs()],
        actions=last_actions(store, actions),
    )


def last_actions(store: PhaseStore, limit: int) -> list[Action]:
    """The last `limit` operator actions: phase changes of any room and kill switch changes,
    newest first."""
    if limit == 0:
        return []
    moves = [_moved(t) for t in store.recent_transitions(limit)]
    switches = [
        Action(s.at, s.who or "", s.why or "", kill_switch_on=s.on)
        for s in store.switch_history(limit)
        if s.at is not None
    ]
    return sorted(moves + switches, key=lambda a: a.at, reverse=True)[:limit]


def _moved(t: Transition) -> Action:
    return Action(t.at, t.who, t.why, t.room_id, t.from_phase, t.to_phase)


def summarise(job: str, kind: str, state: str) -> JobProgress:
    """A checkpoint's JSON summarised generically (module docstring); a state that is not a
    JSON object is shown as unreadable, never raised: status must show the other jobs."""
    try:
        data = json.loads(state)
    except ValueError as exc:
        return JobProgress(job, kind, None, None, unreadable=f"not JSON: {exc}")
    if not isinstance(data, Mapping):
        return JobProgress(job, kind, None, None, unreadable="not a JSON object")
    schema, version = data.get("schema"), data.get("version")
    summary: dict[str, Any] = {
        key: value
        for key, value in data.items()
        if key not in ("schema", "version")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    }
    rooms = data.get("rooms")
    if isinstance(rooms, list) and rooms and all(isinstance(r, Mapping) for r in rooms):
        states: dict[str, int] = {}
        for room in rooms:
            name = str(room.get("state", "?"))
            states[name] = states.get(name, 0) + 1
        summary["rooms_by_state"] = states
    elif isinstance(rooms, list):
        summary["rooms_listed"] = len(rooms)
    return JobProgress(
        job,
        kind,
        schema if isinstance(schema, str) else None,
        version if isinstance(version, int) and not isinstance(version, bool) else None,
        summary,
    )


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()
