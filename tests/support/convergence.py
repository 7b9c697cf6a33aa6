"""Convergence, proven (DESIGN.md, promise 4; issue 4, item 9): one property, two rigs.

Hypothesis plays random interleavings of:
- legacy writes: posts, edits (often within the same second), soft deletes, purges, cursor
  moves, and old-era history rows that only the backfill's range hints cover;
- hints delivered late, out of order and twice (the gateway's and the binlog's), and range
  hints racing single hints;
- capture and update batches that crash after their effect and before their commit, so the
  batch is delivered again.

After every queue drains, the read model must equal the monolith exactly: every message ever
written, at its latest state or gone, and every cursor.

The rig decides what it runs on: the embedded adapters (tests/unit, hundreds of examples) or
the real MariaDB, Kafka and HBase (tests/integration, fewer). The monolith's truth is always
the in-memory monolith; on the real rig every write is mirrored into MariaDB, which is what
the capturer reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from hypothesis import strategies as st

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from legacy_adapters.domain.translation import LegacyMessageRow, translate_message
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.domain.model import ReadCursor
from newcore.ports import EventLog, MonolithReader, ReadStore
from newcore.service.capture import Capturer
from newcore.service.pipeline import capture_batch, capture_step, update_batch, update_step
from newcore.wire.hints import encode_hint

ROOMS = (11, 12, 13)
ACCOUNTS = (1, 2)
PARTITIONS = 2
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
    st.tuples(st.just("capture"), st.integers(1, 6), st.booleans()),
    st.tuples(st.just("update"), st.integers(1, 6), st.booleans()),
)


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


@dataclass
class Rig:
    legacy: Legacy
    reader: MonolithReader  # what the capturer reads: the truth itself, or the mirror
    hints: EventLog
    events: EventLog
    dead: EventLog
    store: ReadStore
    room_base: int = 0  # rooms and ids of this example (a real rig is shared by examples)
    id_base: int = 0
    timeout_ms: int = 0  # how long a read waits for records
    idle_rounds: int = 1  # drain rounds that must find nothing before the queues count as empty


@dataclass
class World:
    clock: int = 1_700_000_000
    next_id: int = 1
    written: list[tuple[int, int]] = field(default_factory=list)  # (room, id) ever written
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
    hints, events, dead, store = rig.hints, rig.events, rig.dead, rig.store
    capturer = Capturer(rig.reader, partitions=PARTITIONS, range_page=2)  # small pages: follow-ups
    m = rig.legacy.truth
    t = rig.timeout_ms

    async def deliver(hint: Hint) -> None:
        await hints.append([(hint.room_id, encode_hint(hint))])
        world.delivered.append(hint)

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
            for partition in range(PARTITIONS):
                await capture_step(
                    hints, events, dead, capturer, partition, max_records=50, timeout_ms=t
                )
                await update_step(events, dead, store, partition, max_records=200, timeout_ms=t)
        elif kind == "capture":
            _, size, crash = op
            for partition in range(PARTITIONS):
                step_ = capture_batch if crash else capture_step  # crash: effect, no commit
                await step_(
                    hints, events, dead, capturer, partition, max_records=size, timeout_ms=t
                )
        elif kind == "update":
            _, size, crash = op
            for partition in range(PARTITIONS):
                apply_ = update_batch if crash else update_step
                await apply_(events, dead, store, partition, max_records=size, timeout_ms=t)

    # Every write's hint arrives in the end (the binlog guarantees it), the backfill covers the
    # history with one range per room, then the queues drain.
    for room in rooms:
        await deliver(RangeHint(room, 1, world.next_id))
    while world.pending:
        await deliver(world.pending.pop())
    idle = 0
    while idle < rig.idle_rounds:  # a real log may answer "nothing" once while it fetches
        idle += 1
        for partition in range(PARTITIONS):
            while await capture_step(
                hints, events, dead, capturer, partition, max_records=7, timeout_ms=t
            ):
                idle = 0
            while await update_step(events, dead, store, partition, max_records=5, timeout_ms=t):
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
