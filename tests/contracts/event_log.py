"""The EventLog contract: one suite, run unchanged against every adapter of the port.

A subclass provides `await open_log(name)`: a log named `name` (the same name twice is the same log,
as after a restart of the process). Tests are plain functions running one asyncio loop each.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from newcore.domain.partitioning import partition_for
from newcore.ports import EventLog, LogRecord

PARTITIONS = 4


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


async def read_all(log: EventLog, partition: int, from_position: int = 0) -> list[LogRecord]:
    """Every record of the partition from `from_position` on. Positions need not be dense (a
    transactional topic has markers between records)."""
    found: list[LogRecord] = []
    while True:
        at = found[-1].position + 1 if found else from_position
        batch = await log.read(partition, at, 1000, timeout_ms=500)
        if not batch:
            return found
        found += batch


class EventLogContract:
    async def open_log(self, name: str) -> EventLog:
        raise NotImplementedError

    def fresh_name(self) -> str:
        return f"contract-{uuid.uuid4().hex[:10]}"

    def test_records_already_there_come_back_within_a_short_wait(self) -> None:
        """'Waits up to timeout_ms for the first one': records appended before the read came
        at once, so a short wait finds them, read after read, partition after partition (a
        Kafka consumer long-polling another partition must not eat the wait)."""

        async def scenario() -> None:
            log = await self.open_log(self.fresh_name())
            try:
                rooms = {partition_for(room, PARTITIONS): room for room in range(1, 200)}
                await log.append([(room, b"x") for room in rooms.values() for _ in range(30)])
                for turn in range(30):
                    for partition in sorted(rooms):
                        found = await log.read(partition, turn, 1, timeout_ms=250)
                        assert [r.position for r in found] == [turn], (turn, partition)
                # Once the reader has caught up everywhere, a re-read (a batch delivered again
                # after a crash) still finds its records within the short wait.
                for partition in sorted(rooms):
                    await read_all(log, partition)
                for partition in sorted(rooms):
                    await asyncio.sleep(0.05)
                    found = await log.read(partition, 3, 2, timeout_ms=250)
                    assert [r.position for r in found] == [3, 4], partition
            finally:
                await log.close()

        run(scenario)

    def test_a_room_keeps_its_partition_and_its_order(self) -> None:
        async def scenario() -> None:
            log = await self.open_log(self.fresh_name())
            try:
                rooms = list(range(1, 41))
                await log.append(
                    [(room, f"{room}:{i}".encode()) for i in range(3) for room in rooms]
                )
                seen: dict[int, list[bytes]] = {}
                used = set()
                for partition in range(PARTITIONS):
                    records = await read_all(log, partition)
                    assert [r.position for r in records] == list(range(len(records)))
                    for record in records:
                        assert (
                            record.partition
                            == partition
                            == partition_for(record.room_id, PARTITIONS)
                        )
                        seen.setdefault(record.room_id, []).append(record.value)
                        used.add(partition)
                assert seen == {room: [f"{room}:{i}".encode() for i in range(3)] for room in rooms}
                assert len(used) > 1  # rooms spread over partitions
            finally:
                await log.close()

        run(scenario)

    def test_reading_from_a_position_and_in_pages(self) -> None:
        async def scenario() -> None:
            log = await self.open_log(self.fresh_name())
            try:
                room = 7
                partition = partition_for(room, PARTITIONS)
                await log.append([(room, bytes([i])) for i in range(10)])
                page = await log.read(partition, 3, 4, timeout_ms=5000)
                assert [(r.position, r.value) for r in page] == [
                    (i, bytes([i])) for i in range(3, 7)
                ]
                assert [r.room_id for r in page] == [room] * 4
                assert await log.read(partition, 10, 10, timeout_ms=300) == []
                await log.append([])
                assert await log.read(partition, 10, 10, timeout_ms=300) == []
            finally:
                await log.close()

        run(scenario)

    def test_a_waiting_reader_gets_what_is_appended_meanwhile(self) -> None:
        async def scenario() -> None:
            log = await self.open_log(self.fresh_name())
            try:
                room = 9
                partition = partition_for(room, PARTITIONS)
                await log.append([(room, b"first")])
                waiting = asyncio.create_task(log.read(partition, 1, 10, timeout_ms=10_000))
                await asyncio.sleep(0.2)
                await log.append([(room, b"second")])
                assert [r.value for r in await waiting] == [b"second"]
            finally:
                await log.close()

        run(scenario)

    def test_commits_are_per_group_and_per_partition(self) -> None:
        async def scenario() -> None:
            log = await self.open_log(self.fresh_name())
            try:
                assert await log.committed("updater", 0) == 0
                await log.commit("updater", {0: 5, 1: 2})
                await log.commit("updater", {1: 3})
                assert [await log.committed("updater", p) for p in range(3)] == [5, 3, 0]
                assert await log.committed("capturer", 0) == 0
            finally:
                await log.close()

        run(scenario)

    def test_records_and_commits_survive_a_reopen(self) -> None:
        async def scenario() -> None:
            name = self.fresh_name()
            log = await self.open_log(name)
            await log.append([(11, b"kept"), (11, "本文😀".encode())])
            await log.commit("g", {partition_for(11, PARTITIONS): 1})
            await log.close()
            again = await self.open_log(name)
            try:
                partition = partition_for(11, PARTITIONS)
                assert [r.value for r in await read_all(again, partition)] == [
                    b"kept",
                    "本文😀".encode(),
                ]
                assert await again.committed("g", partition) == 1
            finally:
                await again.close()

        run(scenario)

    def test_append_returns_the_positions_read_then_shows(self) -> None:
        """'Returns each record's position in its partition, in the order of `records`': the
        gateway's shadow reads wait for a room's read model to reach the position of its last
        hint, so a position that is not the one `read` shows would wait for the wrong record.
        Several appends, rooms interleaved over partitions, one of them larger than a batch;
        per partition the positions only grow; an empty append is []."""

        async def scenario() -> None:
            log = await self.open_log(self.fresh_name())
            try:
                assert await log.append([]) == []
                rooms = list(range(1, 13))
                given: list[tuple[int, bytes, int]] = []  # (room, value, position returned)
                for turn in range(3):
                    # The last turn's records fill several of a producer's batches per
                    # partition: a position is right across batch boundaries too.
                    padding = b"." * (3000 if turn == 2 else 0)
                    records = [
                        (room, f"{turn}:{room}:{i}".encode() + padding)
                        for i in range(1 + turn)
                        for room in rooms
                    ]
                    positions = await log.append(records)
                    assert len(positions) == len(records)
                    given += [(r, v, p) for (r, v), p in zip(records, positions, strict=True)]
                assert await log.append([]) == []
                for partition in range(PARTITIONS):
                    mine = [
                        (r, v, p) for r, v, p in given if partition_for(r, PARTITIONS) == partition
                    ]
                    returned = [p for _r, _v, p in mine]
                    assert returned == sorted(set(returned)), partition  # increasing
                    shown = {
                        rec.position: (rec.room_id, rec.value)
                        for rec in await read_all(log, partition)
                    }
                    assert {p: (r, v) for r, v, p in mine} == shown, partition
            finally:
                await log.close()

        run(scenario)
