"""The control store in process memory, and a room catalog from a list: for unit tests and for
a single gateway process on a small install. Nothing survives the process.

One lock around every call is the in-process version of the MariaDB adapter's transaction and
row locks: a move reads, judges and records under it, so concurrent movers (threads, as the
gateway's `asyncio.to_thread` calls are) never lose an update.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from gateway.domain.phases import (
    PARITY_MAX_AGE_S,
    ControlSnapshot,
    Direction,
    KillSwitch,
    MarkKind,
    MoveReport,
    Phase,
    RoomMark,
    RoomRecord,
    Transition,
    check_direction,
    check_limit,
    check_max_age,
    check_positions,
    check_room_id,
    check_room_ids,
    check_shadow_batch,
    check_who,
    check_why,
    parse_phase,
    plan_move,
)
from gateway.domain.shadow_record import ShadowCounts, ShadowTally


def utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryPhaseStore:
    """PhaseStore in memory. `clock` gives the time of each change (aware, UTC)."""

    def __init__(self, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rooms: dict[int, RoomRecord] = {}
        self._timelines: dict[int, list[Transition]] = {}
        self._marks: dict[int, list[RoomMark]] = {}
        self._transitions: list[Transition] = []  # every room's, in the order recorded
        self._shadows: dict[int, ShadowTally] = {}
        self._switches: list[KillSwitch] = []
        # From the clock, as the MariaDB store's: a new store is unlikely to repeat a number a
        # poller remembers from an earlier one.
        self._revision = time.time_ns() // 1000

    def revision(self) -> int:
        with self._lock:
            return self._revision

    def snapshot(self) -> ControlSnapshot:
        with self._lock:
            return ControlSnapshot(
                revision=self._revision,
                kill_switch=self._switch_now().on,
                phases={
                    room_id: record.phase
                    for room_id, record in self._rooms.items()
                    if record.phase != Phase.LEGACY
                },
            )

    def room(self, room_id: int) -> RoomRecord:
        check_room_id(room_id)
        with self._lock:
            return self._rooms.get(room_id) or RoomRecord.absent(room_id)

    def rooms(self, phase: Phase | None = None) -> list[RoomRecord]:
        wanted = None if phase is None else parse_phase(phase)
        with self._lock:
            return [
                self._rooms[room_id]
                for room_id in sorted(self._rooms)
                if wanted is None or self._rooms[room_id].phase == wanted
            ]

    def move(
        self,
        room_ids: Iterable[int],
        to: Phase,
        who: str,
        why: str,
        *,
        dry_run: bool = False,
        direction: Direction | None = None,
        parity_max_age_s: float = PARITY_MAX_AGE_S,
    ) -> MoveReport:
        target, who, why = parse_phase(to), check_who(who), check_why(why)
        direction, max_age = check_direction(direction), check_max_age(parity_max_age_s)
        ids = check_room_ids(room_ids)
        with self._lock:
            at = self._clock()
            records = [self._rooms.get(room_id) or RoomRecord.absent(room_id) for room_id in ids]
            shadows = (
                {r: self._shadows[r] for r in ids if r in self._shadows}
                if target == Phase.NEW_PRIMARY
                else None
            )
            report = plan_move(
                records, target, who, why, at, direction=direction, shadows=shadows,
                parity_max_age_s=max_age,
            )  # fmt: skip
            if dry_run or not report.moved:
                return report
            for transition in report.moved:
                room_id = transition.room_id
                before = self._rooms.get(room_id) or RoomRecord.absent(room_id)
                self._rooms[room_id] = replace(before, phase=transition.to_phase, changed_at=at)
                self._timelines.setdefault(room_id, []).append(transition)
                self._transitions.append(transition)
            self._revision += 1
            return report

    def kill_switch(self) -> KillSwitch:
        with self._lock:
            return self._switch_now()

    def set_kill_switch(self, on: bool, who: str, why: str) -> KillSwitch:
        if not isinstance(on, bool):
            raise ValueError(f"the kill switch is on (True) or off (False), got {on!r}")
        who, why = check_who(who), check_why(why)
        with self._lock:
            if self._switch_now().on == on:
                return self._switch_now()
            switch = KillSwitch(on, who, why, self._clock())
            self._switches.append(switch)
            self._revision += 1
            return switch

    def switch_history(self, limit: int) -> list[KillSwitch]:
        limit = check_limit(limit)
        with self._lock:
            return self._switches[::-1][:limit]

    def timeline(self, room_id: int, limit: int) -> list[Transition]:
        check_room_id(room_id)
        limit = check_limit(limit)
        with self._lock:
            return self._timelines.get(room_id, [])[::-1][:limit]

    def recent_transitions(self, limit: int) -> list[Transition]:
        limit = check_limit(limit)
        with self._lock:
            return self._transitions[::-1][:limit]

    def record_shadow(self, counts: Mapping[int, ShadowCounts]) -> None:
        batch = check_shadow_batch(counts)
        if not batch:
            return
        with self._lock:
            at = self._clock()
            for room_id, added in batch.items():
                before = self._shadows.get(room_id) or ShadowTally.absent(room_id)
                self._shadows[room_id] = before.added(added, at)

    def shadow_records(self, room_ids: Iterable[int]) -> dict[int, ShadowTally]:
        ids = check_room_ids(room_ids)
        with self._lock:
            return {r: self._shadows[r] for r in ids if r in self._shadows}

    def marks(self, room_id: int, limit: int) -> list[RoomMark]:
        check_room_id(room_id)
        limit = check_limit(limit)
        with self._lock:
            return self._marks.get(room_id, [])[::-1][:limit]

    def mark_backfilled(self, room_id: int, who: str) -> RoomRecord:
        return self._mark(check_room_id(room_id), MarkKind.BACKFILLED, None, check_who(who))

    def mark_parity_clean(self, room_id: int, positions: str, who: str) -> RoomRecord:
        return self._mark(
            check_room_id(room_id), MarkKind.PARITY_CLEAN, check_positions(positions),
            check_who(who),
        )  # fmt: skip

    def close(self) -> None:
        """Nothing to release."""

    def _mark(self, room_id: int, kind: MarkKind, detail: str | None, who: str) -> RoomRecord:
        with self._lock:
            at = self._clock()
            before = self._rooms.get(room_id) or RoomRecord.absent(room_id)
            if kind == MarkKind.BACKFILLED:
                record = replace(before, backfilled_at=at)
            else:
                record = replace(before, parity_clean_at=at, parity_positions=detail)
            self._rooms[room_id] = record
            self._marks.setdefault(room_id, []).append(RoomMark(room_id, kind, detail, who, at))
            self._revision += 1
            return record

    def _switch_now(self) -> KillSwitch:
        return self._switches[-1] if self._switches else KillSwitch(on=False)


class MemoryRoomCatalog:
    """RoomCatalog over a fixed set of room ids (the monolith's rooms in a unit test)."""

    def __init__(self, room_ids: Iterable[int]) -> None:
        self._room_ids = sorted(set(check_room_ids(room_ids)))

    def room_ids(self) -> Iterator[int]:
        return iter(list(self._room_ids))

    def exists(self, room_ids: Sequence[int]) -> set[int]:
        known = set(self._room_ids)
        return {room_id for room_id in check_room_ids(room_ids) if room_id in known}
