"""The Subscription / TransactionalSubscription contract: one suite, run unchanged against the
embedded subscription and the Kafka consumer-group one.

A subclass provides `await open_topics(name)`: a `Topics` for a fresh set of topics whose
names start with `name`: a log to append to and read back, and members of consumer groups
(`member`), the way a worker process builds them. `restart()` is what a restarted process
sees (the embedded log is opened again from its files; Kafka is unchanged). Tests are plain
functions running one asyncio loop each.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

from newcore.domain.partitioning import partition_for
from newcore.ports import Append, Batch, EventLog, LogRecord, TransactionalSubscription
from tests.contracts.event_log import read_all, run

PARTITIONS = 4
WAIT_MS = 3000


class Topics(Protocol):
    def log(self, topic: str) -> EventLog: ...
    def member(
        self, topic: str, group: str, creates: tuple[str, ...] = ()
    ) -> TransactionalSubscription: ...
    async def restart(self) -> None: ...
    async def close(self) -> None: ...


async def polled(
    member: TransactionalSubscription, want: int, max_records: int = 1000
) -> list[Batch]:
    """Polls until `want` records came (or a bound passes), as a worker's loop would."""
    found: list[Batch] = []
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000 * 4
    while sum(len(b.records) for b in found) < want:
        async with member.poll(max_records, 500) as batches:
            found += batches
            for batch in batches:
                member.succeeded(batch.partition, batch.records[-1].position + 1)
        assert asyncio.get_running_loop().time() < deadline, f"only {found} of {want} came"
    return found


def positions(batches: list[Batch]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for batch in batches:
        out.setdefault(batch.partition, []).extend(r.position for r in batch.records)
    return out


def values(records: list[LogRecord]) -> list[bytes]:
    return [r.value for r in records]


class SubscriptionContract:
    async def open_topics(self, name: str) -> Topics:
        raise NotImplementedError

    def fresh(self) -> str:
        return f"contract-sub-{uuid.uuid4().hex[:10]}"

    def test_a_member_polls_every_partition_in_order_from_the_committed_position(self) -> None:
        async def scenario() -> None:
            name = self.fresh()
            topics = await self.open_topics(name)
            try:
                rooms = {partition_for(room, PARTITIONS): room for room in range(1, 100)}
                await topics.log(f"{name}.in").append(
                    [(room, f"{room}:{i}".encode()) for room in rooms.values() for i in range(5)]
                )
                member = topics.member(f"{name}.in", "g")
                await member.start()
                got = positions(await polled(member, 5 * len(rooms)))
                assert got == {p: [0, 1, 2, 3, 4] for p in rooms}
                await member.commit({p: 3 for p in rooms})
                await member.close()
                await topics.restart()
                again = topics.member(f"{name}.in", "g")
                await again.start()
                got = positions(await polled(again, 2 * len(rooms)))
                assert got == {p: [3, 4] for p in rooms}  # from the committed position on
                await again.close()
            finally:
                await topics.close()

        run(scenario)

    def test_a_batch_put_back_comes_again_from_that_position_after_a_backoff(self) -> None:
        async def scenario() -> None:
            name = self.fresh()
            topics = await self.open_topics(name)
            try:
                room = 7
                await topics.log(f"{name}.in").append([(room, bytes([i])) for i in range(6)])
                member = topics.member(f"{name}.in", "g")
                await member.start()
                first = await polled(member, 6)
                partition = first[0].partition
                backoff = member.put_back(partition, 2)
                assert backoff > 0
                again = await polled(member, 4)
                assert positions(again) == {partition: [2, 3, 4, 5]}
                await member.close()
            finally:
                await topics.close()

        run(scenario)

    def test_a_transaction_appends_and_commits_all_at_once(self) -> None:
        async def scenario() -> None:
            name = self.fresh()
            topics = await self.open_topics(name)
            try:
                room = 11
                await topics.log(f"{name}.in").append([(room, b"h0"), (room, b"h1")])
                member = topics.member(f"{name}.in", "g", creates=(f"{name}.out",))
                await member.start()
                batch = (await polled(member, 2))[0]
                await member.transact(
                    batch.partition,
                    [Append(f"{name}.out", room, b"e0"), Append(f"{name}.out", room, b"e1")],
                    batch.records[-1].position + 1,
                )
                await member.close()
                out = await read_all(topics.log(f"{name}.out"), partition_for(room, PARTITIONS))
                assert values(out) == [b"e0", b"e1"]
                await topics.restart()
                again = topics.member(f"{name}.in", "g")
                await again.start()
                async with again.poll(100, 1000) as batches:
                    assert batches == []  # the consumed position was committed with them
                await again.close()
            finally:
                await topics.close()

        run(scenario)

    def test_a_member_that_dies_before_its_transaction_leaves_nothing_and_its_batch_comes_again(
        self,
    ) -> None:
        async def scenario() -> None:
            name = self.fresh()
            topics = await self.open_topics(name)
            try:
                room = 13
                await topics.log(f"{name}.in").append([(room, b"h0")])
                member = topics.member(f"{name}.in", "g", creates=(f"{name}.out",))
                await member.start()
                await polled(member, 1)
                await member.close()  # dies: no transaction
                await topics.restart()
                again = topics.member(f"{name}.in", "g", creates=(f"{name}.out",))
                await again.start()
                batch = (await polled(again, 1))[0]
                assert values(batch.records) == [b"h0"]
                out = await read_all(topics.log(f"{name}.out"), partition_for(room, PARTITIONS))
                assert out == []
                await again.close()
            finally:
                await topics.close()

        run(scenario)
