"""Convergence, proven (DESIGN.md, promise 4; issue 4, item 9): one property, two rigs.

Hypothesis plays random interleavings of:
- legacy writes: posts, edits (often within the same second), soft deletes, purges, cursor
  moves, and old-era history rows that only the backfill's range hints cover;
- hints delivered late, out of order and twice (the gateway's and the binlog's), and range
  hints racing single hints;
- the capture and update workers that `chat-capturer` and `chat-updater` run
  (`newcore/service/capture_worker.py`, `update_worker.py`), stepped poll by poll, dying at
  their commit: the update worker after its effect on the read store and before its commit
  (the batch is delivered again), the capture worker before its transaction (nothing of it
  visible) or right after it (before it noted its progress); a fresh worker then takes over
  from the committed positions, as a restarted process would.

After every queue drains, the read model must equal the monolith exactly: every message ever
written, at its latest state or gone, and every cursor.

The rig decides what it runs on: the embedded adapters (tests/unit, hundreds of examples) or
the real MariaDB, Kafka and HBase (tests/integration, fewer): the same workers, over the
embedded subscription or the Kafka consumer-group one. The monolith's truth is always
the in-memory monolith; on the real rig every write is mirrored into MariaDB, which is what
the capturer reads.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from hypothesis import strategies as st

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from legacy_adapters.domain.translation import LegacyMessageRow, translate_message
from newcore.adapters.embedded.file_subscription import FileSubscription
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.domain.model import ReadCursor
from newcore.ports import (
    Append,
    Batch,
    EventLog,
    MonolithReader,
    ReadStore,
    Subscription,
    TransactionalSubscription,
)
from newcore.service.capture import Capturer
from newcore.service.capture_worker import CaptureWorker
from newcore.service.update_worker import UpdateWorker
from newcore.settings import CapturerSettings, TopicSettings, UpdaterSettings
from newcore.wire.hints import encode_hint

ROOMS = (11, 12, 13)
ACCOUNTS = (1, 2)
PARTITIONS = 2
CRASHES = (None, None, "before_commit", "after_commit")  # where a worker dies, if it does
BODIES = ("こんにちは", "edited 😀", "[To:1] 確認お願いします", "[qt]引用[/qt]", "")

ops = st.one_of(
    st.tuples(st.just("post"), st.sampled_from(ROOMS), st.sampled_from(BODIES)),
    st.tuples(st.just("edit"), st.integers(0, 50), st.sampled_from(BODIES)),
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("purge"), st.integers(0, 50)),
    st.tuples(
        st.just("old_row"), st.sampled_from(ROOMS), st.sampled_from([b"ok", b"\xe3\x81", b"\xff"])
    ),
    st.tuples(
        st.just("cursor"), st.sampled_from(ROOMS), st.sampled_from(ACCOUNTS), st.integers(0, 50)
    ),
    st.tuples(st.just("tick")),
    st.tuples(st.just("deliver"), st.integers(0, 50)),
    st.tuples(st.just("again"), st.integers(0, 50)),
    st.tuples(st.just("range"), st.sampled_from(ROOMS), st.integers(1, 3)),
    st.tuples(st.just("catch_up")),
    st.tuples(st.just("capture"), st.integers(1, 6), st.sampled_from(CRASHES)),
    st.tuples(st.just("update"), st.integers(1, 6), st.sampled_from(CRASHES)),
)


def dying(capture: str | None, update: str | None) -> list[tuple[Any, ...]]:
    """A write hinted once (an odd step), captured, then updated, each worker dying at the
    given point: random programs rarely line these up without a range hint that would mend
    a loss, so they are played as explicit examples."""
    return [("tick",), ("post", 11, "a"), ("deliver", 0), ("capture", 6, capture),
            ("update", 6, update)]  # fmt: skip


POINTS = (None, "before_commit", "after_commit")
DEATHS = [dying(capture, update) for capture in POINTS for update in POINTS] + [
    [("tick",), ("post", 12, "b"), ("cursor", 12, 1, 0), ("deliver", 0), ("deliver", 0),
     ("capture", 6, "after_commit"), ("update", 6, "after_commit")],
]  # fmt: skip


class Mirror(Protocol):
    """A real monolith database the writes are copied into (upserts)."""

    def add_room(self, room_id: int) -> None: ...
    def save(self, row: LegacyMessageRow) -> None: ...
    def purge(self, message_id: int) -> None: ...
    def save_cursor(
        self, room_id: int, account_id: int, last_read: int, last_fetched: int
    ) -> None: ...


class Legacy:
    """The monolith's writes: applied to the in-memory truth and, on a real rig, mirrored."""

    def __init__(self, mirror: Mirror | None = None) -> None:
        self.truth = InMemoryMonolith()
        self._mirror = mirror

    def add_room(self, room_id: int) -> None:
        self.truth.add_room(room_id)
        if self._mirror:
            self._mirror.add_room(room_id)

    def put(self, row: LegacyMessageRow) -> None:
        self.truth.put(row)
        if self._mirror:
            self._mirror.save(row)

    def purge(self, message_id: int) -> None:
        self.truth.purge(message_id)
        if self._mirror:
            self._mirror.purge(message_id)

    def move_cursor(self, room_id: int, account_id: int, last_read: int, last_fetched: int) -> None:
        self.truth.move_cursor(room_id, account_id, last_read, last_fetched)
        if self._mirror:
            self._mirror.save_cursor(room_id, account_id, last_read, last_fetched)


class Crash(Exception):
    """The worker's process dies here."""


class Fuse:
    """Where a worker dies: armed, its next commit (the update worker's `commit`, the capture
    worker's `transact`) raises Crash before or after the commit went through. Once blown it
    stays blown: every later commit of that worker raises before it starts (a dead process
    commits nothing more; a fresh worker gets a fresh fuse)."""

    def __init__(self) -> None:
        self.point: str | None = None
        self.blown = False

    def arm(self, point: str | None) -> None:
        self.point = point

    async def around(self, commit: Coroutine[Any, Any, None]) -> None:
        if self.blown or self.point == "before_commit":
            commit.close()  # never started: nothing of it happened
            self.blown = True
            raise Crash
        await commit
        if self.point == "after_commit":
            self.blown = True
            raise Crash


class Fused:
    """A subscription whose commits go through a fuse (the port unchanged otherwise)."""

    def __init__(self, inner: Subscription, fuse: Fuse) -> None:
        self._inner = inner
        self._fuse = fuse

    async def start(self) -> None:
        await self._inner.start()

    def poll(self, max_records: int, timeout_ms: int) -> AbstractAsyncContextManager[list[Batch]]:
        return self._inner.poll(max_records, timeout_ms)

    def put_back(self, partition: int, position: int) -> int:
        return self._inner.put_back(partition, position)

    def succeeded(self, partition: int, next_position: int) -> None:
        self._inner.succeeded(partition, next_position)

    async def commit(self, positions: Mapping[int, int]) -> None:
        await self._fuse.around(self._inner.commit(positions))

    async def transact(self, partition: int, appends: Sequence[Append], next_position: int) -> None:
        inner = cast(TransactionalSubscription, self._inner)  # the capture worker's
        await self._fuse.around(inner.transact(partition, appends, next_position))

    async def lag(self) -> dict[int, int]:
        return await self._inner.lag()

    def health(self) -> dict[str, Any]:
        return self._inner.health()

    async def close(self) -> None:
        await self._inner.close()


class Pipeline(Protocol):
    """The production workers on some adapters, restartable after a crash."""

    async def append_hints(self, records: list[tuple[int, bytes]]) -> None: ...
    async def capture(self) -> tuple[CaptureWorker, Fuse]: ...
    async def update(self) -> tuple[UpdateWorker, Fuse]: ...
    async def crashed(self, worker: str) -> None: ...
    async def close(self) -> None: ...


TOPICS = TopicSettings(hints="hints", events="events", dead_letters="dead", partitions=PARTITIONS)
LOG = logging.getLogger("convergence")


def capture_worker(
    subscription: Subscription, fuse: Fuse, reader: MonolithReader, topics: TopicSettings
) -> CaptureWorker:
    """The capture worker as `chat-capturer` runs it, with small range pages (follow-ups)."""
    capturer = Capturer(reader, partitions=topics.partitions, range_page=2)
    return CaptureWorker(Fused(subscription, fuse), capturer, topics, CapturerSettings(), LOG)


def update_worker(
    subscription: Subscription, fuse: Fuse, store: ReadStore, dead: EventLog, topics: TopicSettings
) -> UpdateWorker:
    """The update worker as `chat-updater` runs it (the store's tables exist already)."""
    return UpdateWorker(
        Fused(subscription, fuse), store, dead, lambda: None, topics, UpdaterSettings(), LOG
    )


class FilePipeline:
    """The workers on the embedded event log, one process: a crash of either worker restarts
    both, and the topics are opened again from their files (a committed transaction that the
    crash interrupted is redone then)."""

    def __init__(self, root: Path, reader: MonolithReader, store: ReadStore) -> None:
        self._root = root
        self._reader = reader
        self._store = store
        self._fuses = (Fuse(), Fuse())
        self._workers: tuple[CaptureWorker, UpdateWorker] | None = None
        self._topics = FileTopics(root, PARTITIONS)

    async def _started(self) -> tuple[CaptureWorker, UpdateWorker]:
        if self._workers is None:
            topics = self._topics
            capture = capture_worker(
                FileSubscription(topics, TOPICS.hints, "capturer"), self._fuses[0], self._reader,
                TOPICS,
            )  # fmt: skip
            update = update_worker(
                FileSubscription(topics, TOPICS.events, "updater"), self._fuses[1], self._store,
                topics.log(TOPICS.dead_letters), TOPICS,
            )  # fmt: skip
            await capture.start()
            await update.start()
            self._workers = capture, update
        return self._workers

    async def append_hints(self, records: list[tuple[int, bytes]]) -> None:
        await self._topics.log(TOPICS.hints).append(records)

    async def capture(self) -> tuple[CaptureWorker, Fuse]:
        return (await self._started())[0], self._fuses[0]

    async def update(self) -> tuple[UpdateWorker, Fuse]:
        return (await self._started())[1], self._fuses[1]

    async def crashed(self, worker: str) -> None:
        self._workers = None
        self._fuses = (Fuse(), Fuse())
        self._topics = FileTopics(self._root, PARTITIONS)

    async def close(self) -> None:
        self._workers = None


@dataclass
class Rig:
    legacy: Legacy
    pipeline: Pipeline
    store: ReadStore
    room_base: int = 0  # rooms and ids of this example (a real rig is shared by examples)
    id_base: int = 0
    timeout_ms: int = 0  # how long a poll waits for records
    idle_rounds: int = 1  # drain rounds that must find nothing before the queues count as empty


@dataclass
class World:
    clock: int = 1_700_000_000
    next_id: int = 1
    written: list[tuple[int, int]] = field(default_factory=list)  # (room, id) ever written
    history: list[tuple[int, int]] = field(default_factory=list)  # rows no write hinted
    pending: list[Hint] = field(default_factory=list)  # written, hint not yet delivered
    delivered: list[Hint] = field(default_factory=list)

    def pick(self, index: int) -> tuple[int, int] | None:
        return self.written[index % len(self.written)] if self.written else None

    def hint_later(self, hint: Hint, twice: bool) -> None:
        self.pending.append(hint)
        if twice:  # the gateway's hint and the binlog's hint for the same write
            self.pending.append(hint)


async def play(program: list[tuple[Any, ...]], rig: Rig) -> None:
    """Plays the program on the rig, drains every queue, and checks the read model against
    the monolith's truth."""
    world = World(next_id=rig.id_base + 1)
    rooms = [rig.room_base + room for room in ROOMS]
    for room in rooms:
        rig.legacy.add_room(room)
    pipeline, store = rig.pipeline, rig.store
    m = rig.legacy.truth
    t = rig.timeout_ms

    async def deliver(hint: Hint) -> None:
        await pipeline.append_hints([(hint.room_id, encode_hint(hint))])
        world.delivered.append(hint)

    async def capture(size: int, crash: str | None = None) -> int:
        worker, fuse = await pipeline.capture()
        fuse.arm(crash)
        try:
            return await worker.step(max_records=size, timeout_ms=t)
        except* Crash:
            await pipeline.crashed("capture")
        return 0

    async def update(size: int, crash: str | None = None) -> int:
        worker, fuse = await pipeline.update()
        fuse.arm(crash)
        try:
            return await worker.step(max_records=size, timeout_ms=t)
        except* Crash:
            await pipeline.crashed("update")
        return 0

    for step, op in enumerate(program):
        kind = op[0]
        if kind == "post":
            _, room, body = op
            room += rig.room_base
            mid, world.next_id = (
                world.next_id,
                world.next_id + 1 + step % 3,
            )  # ids increase, with gaps
            rig.legacy.put(
                LegacyMessageRow(
                    mid, room, 1, body, None, None, world.clock, 0, "2023-11-15 07:13:20", 0
                )
            )
            world.written.append((room, mid))
            world.hint_later(MessageHint(room, mid), twice=step % 2 == 0)
        elif kind in ("edit", "delete", "purge"):
            target = world.pick(op[1])
            if target is None or target[1] not in m.messages:
                continue
            room, mid = target
            row = m.messages[mid]
            if kind == "edit":
                rig.legacy.put(LegacyMessageRow(mid, room, row.account_id, op[2], None, None, row.send_time,
                                       world.clock, row.created_at, row.deleted))  # fmt: skip
            elif kind == "delete":
                rig.legacy.put(LegacyMessageRow(mid, room, row.account_id, row.body, row.body_v1, row.body_raw,
                                       row.send_time, world.clock, row.created_at, 1))  # fmt: skip
            else:
                rig.legacy.purge(mid)
            world.hint_later(MessageHint(room, mid), twice=step % 2 == 1)
        elif kind == "old_row":
            _, room, raw = op
            room += rig.room_base
            mid, world.next_id = world.next_id, world.next_id + 1
            rig.legacy.put(
                LegacyMessageRow(
                    mid, room, 2, None, None, raw, None, None, "0000-00-00 00:00:00", 0
                )
            )
            world.written.append((room, mid))  # history: no hint; the backfill's range covers it
            world.history.append((room, mid))
        elif kind == "cursor":
            _, room, account, at = op
            room += rig.room_base
            target = world.pick(at)
            position = target[1] if target else 0
            rig.legacy.move_cursor(room, account, position, position)
            world.hint_later(CursorHint(room, account), twice=True)
        elif kind == "tick":
            world.clock += 1
        elif kind == "deliver" and world.pending:
            await deliver(world.pending.pop(op[1] % len(world.pending)))
        elif kind == "again" and world.delivered:
            await deliver(world.delivered[op[1] % len(world.delivered)])
        elif kind == "range":
            _, room, _width = op
            room += rig.room_base
            if world.next_id > rig.id_base + 1:
                await deliver(RangeHint(room, 1, world.next_id))
        elif kind == "catch_up":  # the pipeline catches up with the writes so far
            while world.pending:
                await deliver(world.pending.pop(0))
            await capture(50)
            await update(200)
        elif kind == "capture":
            await capture(op[1], op[2])
        elif kind == "update":
            await update(op[1], op[2])

    # Every write's hint arrives in the end (the binlog guarantees it), the backfill covers the
    # history (only it: a range over everything would also mend what a worker lost, and hide
    # the loss), then the queues drain.
    for room, mid in world.history:
        await deliver(RangeHint(room, mid, mid))
    while world.pending:
        await deliver(world.pending.pop())
    idle = 0
    while idle < rig.idle_rounds:  # a real log may answer "nothing" once while it fetches
        idle += 1
        while await capture(7):
            idle = 0
        while await update(5):
            idle = 0

    for room, mid in world.written:
        legacy = m.messages.get(mid)
        expected = translate_message(legacy)[0] if legacy is not None else None
        got = store.message(room, mid)
        assert got == expected, (room, mid, legacy, got)
    for (room, account), (last_read, last_fetched) in m.cursors.items():
        if room not in rooms:
            continue
        assert store.cursor(room, account) == ReadCursor(room, account, last_read, last_fetched)
    for room in rooms:
        live = sorted(
            mid
            for r, mid in world.written
            if r == room and mid in m.messages and not m.messages[mid].deleted
        )
        assert [x.message_id for x in store.latest(room, 1000)] == live
