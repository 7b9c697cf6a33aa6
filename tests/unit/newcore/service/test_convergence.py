"""Convergence, proven on the embedded adapters (DESIGN.md, promise 4; issue 4, item 9).

Hypothesis plays random interleavings of:
- legacy writes: posts, edits (often within the same second), soft deletes, purges, cursor
  moves, and old-era history rows that only the backfill's range hints cover;
- hints delivered late, out of order and twice (the gateway's and the binlog's), and range
  hints racing single hints;
- capture and update batches that crash after their effect and before their commit, so the
  batch is delivered again.

After every queue drains, the read model must equal the monolith exactly: every message ever
written, at its latest state or gone, and every cursor.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legacy_adapters.memory_monolith import InMemoryMonolith
from legacy_adapters.translation import LegacyMessageRow, translate_message
from newcore.adapters.file_event_log import FileEventLog
from newcore.adapters.sqlite_read_store import SqliteReadStore
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.domain.model import ReadCursor
from newcore.hint_codec import encode_hint
from newcore.service.capture import Capturer
from newcore.service.pipeline import capture_batch, capture_step, update_batch, update_step

ROOMS = (11, 12, 13)
ACCOUNTS = (1, 2)
PARTITIONS = 2
BODIES = ("こんにちは", "edited 😀", "[To:1] 確認お願いします", "[qt]引用[/qt]", "")
SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # fsync is free on tmpfs

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


@dataclass
class World:
    monolith: InMemoryMonolith = field(default_factory=InMemoryMonolith)
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


async def play(program: list[tuple[Any, ...]], root: Path) -> None:
    world = World()
    for room in ROOMS:
        world.monolith.add_room(room)
    hints = FileEventLog(root / "hints", PARTITIONS)
    events = FileEventLog(root / "events", PARTITIONS)
    dead = FileEventLog(root / "dead", PARTITIONS)
    store = SqliteReadStore(":memory:")
    capturer = Capturer(world.monolith, range_page=2)  # small pages: follow-up ranges happen
    m = world.monolith

    async def deliver(hint: Hint) -> None:
        await hints.append([(hint.room_id, encode_hint(hint))])
        world.delivered.append(hint)

    for step, op in enumerate(program):
        kind = op[0]
        if kind == "post":
            _, room, body = op
            mid, world.next_id = (
                world.next_id,
                world.next_id + 1 + step % 3,
            )  # ids increase, with gaps
            m.put(
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
                m.put(LegacyMessageRow(mid, room, row.account_id, op[2], None, None, row.send_time,
                                       world.clock, row.created_at, row.deleted))  # fmt: skip
            elif kind == "delete":
                m.put(LegacyMessageRow(mid, room, row.account_id, row.body, row.body_v1, row.body_raw,
                                       row.send_time, world.clock, row.created_at, 1))  # fmt: skip
            else:
                m.purge(mid)
            world.hint_later(MessageHint(room, mid), twice=step % 2 == 1)
        elif kind == "old_row":
            _, room, raw = op
            mid, world.next_id = world.next_id, world.next_id + 1
            m.put(
                LegacyMessageRow(
                    mid, room, 2, None, None, raw, None, None, "0000-00-00 00:00:00", 0
                )
            )
            world.written.append((room, mid))  # history: no hint; the backfill's range covers it
        elif kind == "cursor":
            _, room, account, at = op
            target = world.pick(at)
            position = target[1] if target else 0
            m.move_cursor(room, account, position, position)
            world.hint_later(CursorHint(room, account), twice=True)
        elif kind == "tick":
            world.clock += 1
        elif kind == "deliver" and world.pending:
            await deliver(world.pending.pop(op[1] % len(world.pending)))
        elif kind == "again" and world.delivered:
            await deliver(world.delivered[op[1] % len(world.delivered)])
        elif kind == "range":
            _, room, _width = op
            if world.next_id > 1:
                await deliver(RangeHint(room, 1, world.next_id))
        elif kind == "catch_up":  # the pipeline catches up with the writes so far
            while world.pending:
                await deliver(world.pending.pop(0))
            for partition in range(PARTITIONS):
                await capture_step(hints, events, dead, capturer, partition, max_records=50)
                await update_step(events, dead, store, partition, max_records=200)
        elif kind == "capture":
            _, size, crash = op
            for partition in range(PARTITIONS):
                if crash:  # effect written, commit lost: the same hints come again
                    await capture_batch(hints, events, dead, capturer, partition, max_records=size)
                else:
                    await capture_step(hints, events, dead, capturer, partition, max_records=size)
        elif kind == "update":
            _, size, crash = op
            for partition in range(PARTITIONS):
                if crash:
                    await update_batch(events, dead, store, partition, max_records=size)
                else:
                    await update_step(events, dead, store, partition, max_records=size)

    # Every write's hint arrives in the end (the binlog guarantees it), the backfill covers the
    # history with one range per room, then the queues drain.
    for room in ROOMS:
        await deliver(RangeHint(room, 1, world.next_id))
    while world.pending:
        await deliver(world.pending.pop())
    busy = True
    while busy:
        busy = False
        for partition in range(PARTITIONS):
            while await capture_step(hints, events, dead, capturer, partition, max_records=7):
                busy = True
            while await update_step(events, dead, store, partition, max_records=5):
                busy = True

    for room, mid in world.written:
        legacy = m.messages.get(mid)
        expected = translate_message(legacy)[0] if legacy is not None else None
        assert store.message(room, mid) == expected, (room, mid, legacy)
    for (room, account), (last_read, last_fetched) in m.cursors.items():
        assert store.cursor(room, account) == ReadCursor(room, account, last_read, last_fetched)
    for room in ROOMS:
        live = sorted(
            mid
            for r, mid in world.written
            if r == room and mid in m.messages and not m.messages[mid].deleted
        )
        assert [x.message_id for x in store.latest(room, 1000)] == live
    store.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=5, max_size=80))
def test_the_read_model_ends_equal_to_the_monolith(program: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as root:
        asyncio.run(play(program, Path(root)))
