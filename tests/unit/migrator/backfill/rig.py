"""A backfill's world in memory, for the service's unit tests: the in-memory monolith, the hints
log, the real capturer (newcore's `Capturer`) and an embedded read store, the control store,
checkpoints and job board in memory, a fake clock, and a fuse that "kills the process" at a
chosen side effect.

The pipeline is pumped when the job looks at the read model (`room_position`): everything
appended so far is captured (one batch per partition, as a capturer would) and applied. So the
job sees a pipeline that keeps up unless the test stops it (`pipe.running = False`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.adapters.embedded.memory_job_board import MemoryJobBoard
from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore, MemoryRoomCatalog
from gateway.domain.phases import RoomRecord
from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from legacy_adapters.domain.translation import LegacyMessageRow
from migrator.adapters.embedded.memory_checkpoints import MemoryCheckpointStore
from migrator.adapters.embedded.memory_cursors import MemoryRoomCursors
from migrator.adapters.embedded.memory_history import MemoryRoomHistory
from migrator.domain.selection import Selection
from migrator.ports import HealthSample, RoomBounds, RoomCursors
from migrator.service.backfill import (
    Backfill,
    BackfillMetrics,
    BackfillOutcome,
    BackfillRequest,
    ProgressView,
    Tuning,
)
from migrator.service.control import JobControls
from migrator.settings import BackfillSettings
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.domain.partitioning import partition_for
from newcore.errors import EventLogUnavailable
from newcore.ports import LogRecord
from newcore.service.capture import Capturer
from newcore.wire.hints import decode_hint

PARTITIONS = 4
RANGE_PAGE = 50
NOW = 1_750_000_000


class Killed(BaseException):
    """The process died here (a BaseException: nothing of ours catches it)."""


@dataclass
class Fuse:
    """Counts side effects (appends, checkpoint saves, marks); at the `at`-th one the process
    dies, `before` or after it takes effect."""

    at: int | None = None
    before: bool = True
    count: int = 0
    where: str | None = None

    def step(self, what: str, effect: Callable[[], Any]) -> Any:
        self.count += 1
        if self.at == self.count and self.before:
            self.where = f"before {what}"
            raise Killed(self.where)
        result = effect()
        if self.at == self.count:
            self.where = f"after {what}"
            raise Killed(self.where)
        return result


@dataclass
class FakeTime:
    now: float = 0.0

    def monotonic(self) -> float:
        return self.now

    def clock(self) -> float:
        return NOW + self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


class HintsLog:
    """The hints topic in memory (EventLog's append; the rest is the pump's)."""

    def __init__(self, fuse: Fuse) -> None:
        self.partitions_ = [[] for _ in range(PARTITIONS)]  # type: list[list[bytes]]
        self.appends: list[list[Hint]] = []  # every append that took effect, in order
        self.fuse = fuse
        self.down = False

    @property
    def partitions(self) -> int:
        return PARTITIONS

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        if self.down:
            raise EventLogUnavailable("hints log down (test)")

        def effect() -> list[int]:
            positions = []
            for room_id, value in records:
                log = self.partitions_[partition_for(room_id, PARTITIONS)]
                positions.append(len(log))
                log.append(value)
            self.appends.append([decode_hint(value) for _, value in records])
            return positions

        found: list[int] = self.fuse.step("append", effect)
        return found

    def hints(self) -> list[Hint]:
        return [hint for append in self.appends for hint in append]

    async def read(
        self, partition: int, from_position: int, max_records: int, timeout_ms: int
    ) -> list[LogRecord]:
        raise NotImplementedError

    async def committed(self, group: str, partition: int) -> int:
        raise NotImplementedError

    async def commit(self, group: str, positions: Mapping[int, int]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class Pipe:
    """The capture pipeline: hints -> capturer -> read store, pumped on demand; also the
    `Pipeline` port (only `capture_lag` concerns the backfill)."""

    def __init__(self, monolith: InMemoryMonolith, log: HintsLog, store: SqliteReadStore) -> None:
        self.capturer = Capturer(monolith, partitions=PARTITIONS, range_page=RANGE_PAGE)
        self.log = log
        self.store = store
        self.consumed = [0] * PARTITIONS
        self.running = True
        self.lag_extra = 0  # added to the real lag, to play a flooded pipe
        self.source_at: str | None = "mariadb-bin.000001:4"  # the binlog source's checkpoint

    def pump(self) -> None:
        if not self.running:
            return
        for partition in range(PARTITIONS):
            records = self.log.partitions_[partition]
            start = self.consumed[partition]
            if start == len(records):
                continue
            batch = [
                LogRecord(partition, position, 0, value)
                for position, value in enumerate(records[start:], start)
            ]
            batch = [
                LogRecord(r.partition, r.position, decode_hint(r.value).room_id, r.value)
                for r in batch
            ]
            outcome = self.capturer.capture(batch, captured_at_ms=0)
            assert not outcome.follow_ups and not outcome.dead_letters, outcome
            self.store.apply(outcome.events)
            self.consumed[partition] = len(records)

    async def capture_lag(self) -> int:
        waiting = sum(len(p) for p in self.log.partitions_) - sum(self.consumed)
        return waiting + self.lag_extra

    async def source_checkpoint(self) -> str | None:
        return self.source_at

    async def mark(self) -> Any:
        raise NotImplementedError

    async def reached(self, frontier: Any) -> bool:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class PumpedReadStore:
    """The read store as the job sees it: every look at a room's position first lets the
    pipeline catch up (unless stopped)."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe
        self.looks = 0

    def room_position(self, room_id: int) -> int | None:
        self.looks += 1
        self.pipe.pump()
        return self.pipe.store.room_position(room_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe.store, name)


class Phases(MemoryPhaseStore):
    """The control store; each mark checks that the room's history, its messages and its read
    cursors, is visible at that moment (no live writes in these tests: the read model must
    equal the monolith then)."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.marked_when_visible: list[int] = []

    def mark_backfilled(self, room_id: int, who: str) -> RoomRecord:
        assert self.world.read_model(room_id) == self.world.monolith_rows(room_id), (
            f"room {room_id} marked before its history is visible"
        )
        assert self.world.read_cursors(room_id) == self.world.monolith_cursors(room_id), (
            f"room {room_id} marked before its cursors are visible"
        )

        def effect() -> RoomRecord:
            self.marked_when_visible.append(room_id)
            return super(Phases, self).mark_backfilled(room_id, who)

        record: RoomRecord = self.world.fuse.step(f"mark {room_id}", effect)
        return record


class Checkpoints(MemoryCheckpointStore):
    def __init__(self, fuse: Fuse) -> None:
        super().__init__()
        self.fuse = fuse
        self.saves: list[tuple[str, str]] = []

    def save(self, job: str, kind: str, state: str) -> None:
        def effect() -> None:
            super(Checkpoints, self).save(job, kind, state)
            self.saves.append((job, state))

        self.fuse.step(f"save {job}", effect)


class Health:
    def __init__(self) -> None:
        self.samples: list[HealthSample] = []  # played in order, then calm
        self.looks = 0

    def sample(self) -> HealthSample:
        self.looks += 1
        if self.samples:
            return self.samples.pop(0)
        return HealthSample(probe_ms=2.0, threads_running=1)


class History(MemoryRoomHistory):
    """The in-memory history, with a hook run after a room is measured (to change the monolith
    between the plan and the sending)."""

    def __init__(self, monolith: InMemoryMonolith) -> None:
        super().__init__(monolith, "memory:test")
        self.after_bounds: Callable[[int], None] = lambda room: None
        self.chunk_reads = 0

    def bounds(self, room_id: int) -> RoomBounds | None:
        found = super().bounds(room_id)
        self.after_bounds(room_id)
        return found

    def chunk_ends(self, room_id: int, after: int, high: int, rows: int, count: int) -> list[int]:
        self.chunk_reads += 1
        return super().chunk_ends(room_id, after, high, rows, count)


@dataclass
class World:
    fuse: Fuse = field(default_factory=Fuse)
    time: FakeTime = field(default_factory=FakeTime)
    monolith: InMemoryMonolith = field(default_factory=InMemoryMonolith)
    rooms: list[int] = field(default_factory=list)
    board: MemoryJobBoard = field(default_factory=MemoryJobBoard)
    settings: BackfillSettings = field(
        default_factory=lambda: BackfillSettings(
            chunk_rows=10, rooms_in_parallel=2, rate=1000, visible_timeout_s=30
        )
    )
    next_id: int = 1000

    def __post_init__(self) -> None:
        self.log = HintsLog(self.fuse)
        self.store = SqliteReadStore(":memory:")
        self.pipe = Pipe(self.monolith, self.log, self.store)
        self.read_store = PumpedReadStore(self.pipe)
        self.phases = Phases(self)
        self.checkpoints = Checkpoints(self.fuse)
        self.health = Health()
        self.history = History(self.monolith)
        self.room_cursors: RoomCursors = MemoryRoomCursors(self.monolith)
        self.logs: list[logging.LogRecord] = []

    # -- the monolith ------------------------------------------------------------------

    def room(self, messages: int, *, send_time: int = NOW - 30 * 86_400, step: int = 1) -> int:
        room_id = 10 + len(self.rooms)
        self.rooms.append(room_id)
        self.monolith.add_room(room_id)
        for _ in range(messages):
            self.message(room_id, send_time=send_time)
            self.next_id += step - 1
        return room_id

    def message(self, room_id: int, *, send_time: int, deleted: int = 0) -> int:
        self.next_id += 1
        self.monolith.put(
            LegacyMessageRow(
                self.next_id, room_id, 1, f"m{self.next_id} 😀", None, None, send_time, 0,
                "2020-01-01 00:00:00", deleted,
            )
        )  # fmt: skip
        return self.next_id

    def monolith_rows(self, room_id: int) -> dict[int, str]:
        return {
            mid: row.body or ""
            for mid, row in self.monolith.messages.items()
            if row.room_id == room_id and not row.deleted
        }

    def read_model(self, room_id: int) -> dict[int, str]:
        return {m.message_id: m.body for m in self.store.after(room_id, 0, 100_000)}

    def cursor(self, room_id: int, account_id: int, last_read: int, last_fetched: int) -> None:
        """A read cursor row of the monolith (`room_cursors`), as a force=0 GET leaves one."""
        self.monolith.move_cursor(room_id, account_id, last_read, last_fetched)

    def monolith_cursors(self, room_id: int) -> dict[int, tuple[int, int]]:
        """Account -> (last_read, last_fetched) of the room's cursors in the monolith."""
        return {
            account: values
            for (room, account), values in self.monolith.cursors.items()
            if room == room_id
        }

    def read_cursors(self, room_id: int) -> dict[int, tuple[int, int]]:
        """The same, as the read model holds them, for the accounts the monolith knows."""
        found = {}
        for account in self.monolith_cursors(room_id):
            cursor = self.store.cursor(room_id, account)
            if cursor is not None:
                found[account] = (cursor.last_read_message_id, cursor.last_fetched_message_id)
        return found

    # -- the job -----------------------------------------------------------------------

    def backfill(
        self,
        *,
        settings: BackfillSettings | None = None,
        tuning: Tuning | None = None,
        metrics: BackfillMetrics | None = None,
        progress: ProgressView | None = None,
    ) -> Backfill:
        log = logging.getLogger("test.backfill")

        def controls(job: str) -> JobControls:
            return JobControls(
                self.board, job, "backfill", "test", poll_s=0.5, blind_s=30,
                clock=self.time.monotonic, sleep=self.time.sleep, log=log,
            )  # fmt: skip

        return Backfill(
            history=self.history, cursors=self.room_cursors, health=self.health, pipeline=self.pipe, hints=self.log,
            read_store=self.read_store, phases=self.phases,
            catalog=MemoryRoomCatalog(self.rooms or [1]), checkpoints=self.checkpoints,
            locks=self.checkpoints, controls=controls, settings=settings or self.settings,
            range_page=RANGE_PAGE, target="hints/4", metrics=metrics, progress=progress, log=log,
            tuning=tuning or Tuning(), clock=self.time.clock, monotonic=self.time.monotonic,
            sleep=self.time.sleep,
        )  # fmt: skip

    def run(
        self,
        rooms: Selection | None = None,
        *,
        restart: bool = False,
        order: Any = None,
        job: str = "backfill",
        **kwargs: Any,
    ) -> BackfillOutcome:
        request = BackfillRequest(
            job, rooms or Selection(everything=True), "test", order=order, restart=restart
        )
        return run_async(self.backfill(**kwargs).run(request))

    def range_hints(self, room_id: int, appends: list[list[Hint]] | None = None) -> list[RangeHint]:
        return [
            h
            for append in (self.log.appends if appends is None else appends)
            for h in append
            if isinstance(h, RangeHint) and h.room_id == room_id
        ]

    def cursor_hints(
        self, room_id: int, appends: list[list[Hint]] | None = None
    ) -> list[CursorHint]:
        return [
            h
            for append in (self.log.appends if appends is None else appends)
            for h in append
            if isinstance(h, CursorHint) and h.room_id == room_id
        ]

    def closing_hints(self, room_id: int) -> list[MessageHint]:
        return [h for h in self.log.hints() if isinstance(h, MessageHint) and h.room_id == room_id]

    def marks(self, room_id: int) -> int:
        return len(self.phases.marks(room_id, 100))


def run_async(work: Awaitable[BackfillOutcome]) -> BackfillOutcome:
    async def go() -> BackfillOutcome:
        return await work

    return asyncio.run(go())
