"""The phases of a room, the guards on their transitions, and the sticky selection of rooms.

Pure (standard library only): the control store's adapters, the gateway and the migrator's
cutover all decide with these functions, so a move is judged the same way wherever it is
asked for (gateway/README.md, "Phases and the control store"; DESIGN.md, "The phases of a
room").

Times are aware datetimes in UTC. Every function that takes input from an operator (a room id,
a percentage, who and why) checks it and raises ValueError with a message that says what was
expected: bad input changes nothing.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from gateway.domain.shadow_record import ShadowCounts, ShadowTally, why_not_clean


class Phase(StrEnum):
    """Where a room's message traffic goes; the value is what the control store records."""

    LEGACY = "legacy"
    DUAL_WRITE = "dual_write"
    SHADOW_READ = "shadow_read"
    NEW_PRIMARY = "new_primary"
    NEW_ONLY = "new_only"


# The order of a migration: forward is one step to the right, rollback any step to the left.
ORDER: tuple[Phase, ...] = tuple(Phase)

# The phases whose traffic goes through the gateway (the front door's room map): legacy is
# passed straight to the monolith by the front door, new_only would be served elsewhere.
INSPECTED: frozenset[Phase] = frozenset({Phase.DUAL_WRITE, Phase.SHADOW_READ, Phase.NEW_PRIMARY})

MAX_ROOM_ID = 2**32 - 1  # the monolith's rooms.room_id is INT UNSIGNED
WHO_MAX = 100  # characters; the control store's columns are this wide
WHY_MAX = 1000
POSITIONS_MAX = 1000
BUCKETS = 10_000  # a percentage has a resolution of 0.01 %
# A clean parity older than this does not let a room past shadow_read (the migrator passes its
# MIG_PARITY_MAX_AGE_S; a move that names none, such as the admin API's, judges with this).
PARITY_MAX_AGE_S = 24 * 3600.0


def rank(phase: Phase) -> int:
    """The phase's place in the migration, legacy being 0."""
    return ORDER.index(phase)


def parse_phase(value: str) -> Phase:
    """The phase named `value`; ValueError naming the known phases otherwise."""
    try:
        return Phase(value)
    except ValueError:
        known = ", ".join(ORDER)
        raise ValueError(f"unknown phase {value!r} (known: {known})") from None


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """What the control store knows of one room.

    A room the store has never recorded is `RoomRecord.absent(room_id)`: legacy, nothing
    marked. `changed_at` is when the room's phase last changed (None: never). `backfilled_at`
    is when the room's backfill was last reported done; `parity_clean_at` and
    `parity_positions` when and at which positions (the parity job's own text, issue 13) the
    room's last clean parity check was reported.
    """

    room_id: int
    phase: Phase
    backfilled_at: datetime | None = None
    parity_clean_at: datetime | None = None
    parity_positions: str | None = None
    changed_at: datetime | None = None

    @classmethod
    def absent(cls, room_id: int) -> RoomRecord:
        return cls(room_id, Phase.LEGACY)


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a room's phase, as recorded in its timeline: who asked, why, and when."""

    room_id: int
    from_phase: Phase
    to_phase: Phase
    who: str
    why: str
    at: datetime


class Direction(StrEnum):
    """Which way a move may go, when the asker says so: `chat-migrate cutover` only forward,
    `rollback` only back. A room the move would take the other way is refused, judged under the
    move's lock (so a room another operator moved meanwhile is never rolled back by a cutover).
    A move without a direction (the admin API's) goes either way."""

    FORWARD = "forward"
    BACK = "back"


class MarkKind(StrEnum):
    """What a job reported about a room (the facts the guards read)."""

    BACKFILLED = "backfilled"
    PARITY_CLEAN = "parity_clean"


@dataclass(frozen=True, slots=True)
class RoomMark:
    """A fact a job reported about a room: its backfill done, or a clean parity check at
    `detail` (the positions). Kept apart from the timeline, which holds phase changes only, so
    that a timeline reads as the room's path through the phases."""

    room_id: int
    kind: MarkKind
    detail: str | None
    who: str
    at: datetime


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """The global kill switch: on, every room is treated as legacy. `who`, `why` and `at` say
    who set it last; all three are None while it has never been set (it is off)."""

    on: bool
    who: str | None = None
    why: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ControlSnapshot:
    """Everything the gateway routes by, read at one revision of the control store.

    `phases` holds the recorded phase of every room the store has out of legacy (a room in
    legacy may be absent). The recorded phases are kept while the kill switch
    is on: `phase_of` answers legacy for every room then, and turning the switch off brings
    every room back to its recorded phase.
    """

    revision: int
    kill_switch: bool
    phases: Mapping[int, Phase] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A copy of its own: the caller's dict may change after, the snapshot must not. A
        # plain dict (read-only by its type), so that dataclasses.asdict can render it.
        object.__setattr__(self, "phases", dict(self.phases))

    def phase_of(self, room_id: int) -> Phase:
        """The phase the gateway must treat the room as in: legacy when the kill switch is on
        or the room is not recorded."""
        if self.kill_switch:
            return Phase.LEGACY
        return self.phases.get(room_id, Phase.LEGACY)

    def inspected_rooms(self) -> frozenset[int]:
        """The rooms whose traffic goes through the gateway (the room map); none while the
        kill switch is on."""
        if self.kill_switch:
            return frozenset()
        return frozenset(room for room, phase in self.phases.items() if phase in INSPECTED)


@dataclass(frozen=True, slots=True)
class MoveReport:
    """What a move did (or, dry, would do), room by room, in the order the rooms were asked.

    `moved`: the transitions recorded; `unchanged`: rooms already in the target phase;
    `refused`: the rooms a guard refused, with the guard's reason.
    """

    moved: list[Transition] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)


# -- guards --------------------------------------------------------------------------------


def guard(
    record: RoomRecord,
    to: Phase,
    *,
    direction: Direction | None = None,
    shadow: ShadowTally | None = None,
    now: datetime | None = None,
    parity_max_age_s: float = PARITY_MAX_AGE_S,
) -> str | None:
    """Why the room cannot move to `to` now, or None when nothing stands in the way.

    The rules (gateway/README.md): forward one step at a time; legacy -> dual_write always;
    dual_write -> shadow_read needs the room's backfill done; shadow_read -> new_primary needs
    a clean parity check younger than `parity_max_age_s` at `now` (default: the clock) and a
    clean shadow record (`shadow`, the room's; `shadow_record.why_not_clean`), and is refused
    in this version anyway (new_primary is not built): the reason names every condition still
    missing. new_only is final. Back to any earlier phase always (rollback), except from
    new_only. `direction`: a move the other way is refused, saying which command does it. A
    move to the phase the room is in passes (None): the caller reports it unchanged, not as a
    move.
    """
    here = record.phase
    if to == here:
        return None
    if here == Phase.NEW_ONLY:
        return "new_only is final: leaving it is a new migration, not a rollback"
    back = rank(to) < rank(here)
    if direction == Direction.FORWARD and back:
        return (
            f"the room is in {here}, and {to} is behind it: a cutover only moves forward; "
            f"roll it back with `chat-migrate rollback ... --to {to}`"
        )
    if direction == Direction.BACK and not back:
        return (
            f"the room is in {here}, and {to} is ahead of it: a rollback only moves back; "
            f"move it forward with `chat-migrate cutover ... --to {to}`"
        )
    if back:
        return None
    step = ORDER[rank(here) + 1]
    if to != step:
        return f"forward one step at a time: {here} goes to {step} first, not straight to {to}"
    if to == Phase.SHADOW_READ and record.backfilled_at is None:
        return "shadow_read needs the room's backfill done, and none is recorded"
    if to == Phase.NEW_PRIMARY:
        missing = [
            reason
            for reason in (
                _why_parity_not_recent(record, now or datetime.now(UTC), parity_max_age_s),
                why_not_clean(shadow, record.changed_at),
            )
            if reason is not None
        ]
        needs = (
            "it would also need " + "; and ".join(missing)
            if missing
            else "its conditions are met (a recent clean parity check, a clean shadow record)"
        )
        return f"new_primary is not built in this version; {needs}"
    return None


def _why_parity_not_recent(record: RoomRecord, now: datetime, max_age_s: float) -> str | None:
    wanted = f"a clean parity check of the room within {_duration(max_age_s)}"
    if record.parity_clean_at is None:
        return f"{wanted} (none is recorded)"
    age = (now - record.parity_clean_at).total_seconds()
    if age > max_age_s:
        return (
            f"{wanted} (the last one ran at {record.parity_clean_at.isoformat()}, "
            f"{_duration(age)} ago)"
        )
    return None


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h" if seconds % 3600 == 0 else f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def plan_move(
    records: Sequence[RoomRecord],
    to: Phase,
    who: str,
    why: str,
    at: datetime,
    *,
    direction: Direction | None = None,
    shadows: Mapping[int, ShadowTally] | None = None,
    parity_max_age_s: float = PARITY_MAX_AGE_S,
) -> MoveReport:
    """Judges each record against `to` with `guard` (at `at`, with the room's shadow record
    from `shadows`): the report a move would give, stamped `at`. Both adapters record exactly
    the `moved` part of this plan, so they cannot disagree about what a move does."""
    report = MoveReport()
    for record in records:
        if record.phase == to:
            report.unchanged.append(record.room_id)
            continue
        reason = guard(
            record, to, direction=direction, now=at, parity_max_age_s=parity_max_age_s,
            shadow=None if shadows is None else shadows.get(record.room_id),
        )  # fmt: skip
        if reason is not None:
            report.refused[record.room_id] = reason
        else:
            report.moved.append(Transition(record.room_id, record.phase, to, who, why, at))
    return report


def check_direction(direction: object) -> Direction | None:
    """A move's direction: None (either way) or a Direction."""
    if direction is None or isinstance(direction, Direction):
        return direction
    try:
        return Direction(str(direction))
    except ValueError:
        raise ValueError(f"a direction is forward or back, got {direction!r}") from None


def check_max_age(seconds: object) -> float:
    """A parity's maximum age in seconds: a finite number above 0."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not (math.isfinite(seconds) and seconds > 0)
    ):
        raise ValueError(f"a parity's maximum age is a number of seconds above 0, got {seconds!r}")
    return float(seconds)


# -- validation ----------------------------------------------------------------------------


def check_room_id(room_id: object) -> int:
    """The room id, if it is one the monolith can have (INT UNSIGNED, never 0)."""
    if not isinstance(room_id, int) or isinstance(room_id, bool):
        raise ValueError(f"a room id is an integer, got {room_id!r}")
    if not 1 <= room_id <= MAX_ROOM_ID:
        raise ValueError(
            f"a room id is in 1..{MAX_ROOM_ID} (the monolith's INT UNSIGNED), got {room_id}"
        )
    return room_id


def check_room_ids(room_ids: Iterable[object]) -> list[int]:
    """Every id checked before any is used (a bad one changes nothing), duplicates dropped,
    the first occurrence's order kept."""
    return list(dict.fromkeys(check_room_id(room_id) for room_id in room_ids))


def _check_text(what: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is text, got {value!r}")
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{what} is at most {limit} characters, got {len(value)}")
    return value


def check_who(who: object) -> str:
    """Who asked for a change (an operator, a job): non-empty, one line, at most WHO_MAX."""
    text = _check_text("who", who, WHO_MAX)
    if any(not ch.isprintable() for ch in text):
        raise ValueError(f"who must be one line of printable characters, got {text!r}")
    return text


def check_why(why: object) -> str:
    """Why a change was asked for: non-empty, at most WHY_MAX characters."""
    return _check_text("why", why, WHY_MAX)


def check_positions(positions: object) -> str:
    """The positions a clean parity check ran at: non-empty, at most POSITIONS_MAX."""
    return _check_text("parity positions", positions, POSITIONS_MAX)


def check_shadow_batch(counts: object) -> dict[int, ShadowCounts]:
    """A batch of shadow counts by room (`PhaseStore.record_shadow`): every room id and count
    checked before any is used; the rooms with nothing counted left out."""
    if not isinstance(counts, Mapping):
        raise ValueError(f"shadow counts are a mapping of room id to ShadowCounts, got {counts!r}")
    check_room_ids(counts)
    for room_id, added in counts.items():
        if not isinstance(added, ShadowCounts):
            raise ValueError(f"room {room_id}: shadow counts are ShadowCounts, got {added!r}")
    return {room_id: added for room_id, added in counts.items() if added.total}


def check_limit(limit: object) -> int:
    """How many history entries to read: 0..100 000."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 100_000:
        raise ValueError(f"a limit is an integer in 0..100000, got {limit!r}")
    return limit


# -- selection -----------------------------------------------------------------------------


def bucket(room_id: int) -> int:
    """The room's sticky bucket in 0..9999: CRC-32 of the room id as 8 big-endian bytes.

    It never changes for a room and is the same in every process and version (CRC-32 is
    specified, unlike Python's hash), so a room in a percentage stays in every larger one.
    """
    return zlib.crc32(check_room_id(room_id).to_bytes(8, "big")) % BUCKETS


def percentage_threshold(percent: object) -> int:
    """The number of buckets in `percent` % (0 < percent <= 100, in steps of 0.01)."""
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise ValueError(f"a percentage is a number, got {percent!r}")
    if not (math.isfinite(percent) and 0 < percent <= 100):
        raise ValueError(f"a percentage is above 0 and at most 100, got {percent!r}")
    scaled = percent * (BUCKETS // 100)
    threshold = round(scaled)
    # 1.1 * 100 is 110.00000000000001: the float's noise is not a finer percentage.
    if abs(scaled - threshold) > 1e-6 or threshold == 0:
        raise ValueError(f"a percentage has steps of 0.01, got {percent!r}")
    return threshold


def in_percentage(room_id: int, percent: float) -> bool:
    """Whether the room is in the sticky `percent` %: its bucket is below percent * 100."""
    return bucket(room_id) < percentage_threshold(percent)


def select_percentage(universe: Iterable[int], percent: float) -> list[int]:
    """The rooms of `universe` (the monolith's rooms, `RoomCatalog.room_ids`) in the sticky
    `percent` %, in the universe's order. The percentage is checked before any room is read."""
    threshold = percentage_threshold(percent)
    return [room_id for room_id in universe if bucket(room_id) < threshold]
