"""The CheckpointedLog contract: one suite, run unchanged against the Kafka adapter and the
embedded one.

A subclass provides `await open_source(name)`: a copy of the source named `name` (its topics
and its identity; a second call is a second copy of the same source, as after a restart or a
second process), and `await hints(name)`: the log its hints go to, to read back.
"""

from __future__ import annotations

import uuid

import pytest

from newcore.domain.partitioning import partition_for
from newcore.errors import EventLogFenced
from newcore.ports import Append, CheckpointedLog, EventLog
from tests.contracts.event_log import read_all, run

PARTITIONS = 4


class CheckpointedLogContract:
    async def open_source(self, name: str) -> CheckpointedLog:
        raise NotImplementedError

    async def hints(self, name: str) -> EventLog:
        raise NotImplementedError

    def fresh(self) -> str:
        return f"contract-cp-{uuid.uuid4().hex[:10]}"

    def test_a_restarted_source_resumes_from_its_last_checkpoint_with_its_appends(self) -> None:
        async def scenario() -> None:
            name = self.fresh()
            first = await self.open_source(name)
            assert await first.start() is None  # never written
            room = 21
            await first.append([Append(f"{name}.hints", room, b"h1")], b"at-1")
            await first.append(
                [Append(f"{name}.hints", room, b"h2"), Append(f"{name}.hints", room, b"h3")],
                b"at-2",
            )
            await first.close()
            again = await self.open_source(name)
            assert await again.start() == b"at-2"
            found = await read_all(await self.hints(name), partition_for(room, PARTITIONS))
            assert [r.value for r in found] == [b"h1", b"h2", b"h3"]
            await again.close()

        run(scenario)

    def test_a_second_copy_fences_the_first(self) -> None:
        async def scenario() -> None:
            name = self.fresh()
            first = await self.open_source(name)
            await first.start()
            await first.append([], b"at-1")
            second = await self.open_source(name)
            assert await second.start() == b"at-1"
            with pytest.raises(EventLogFenced):
                await first.append([Append(f"{name}.hints", 3, b"stale")], b"stale")
            await second.append([Append(f"{name}.hints", 3, b"fresh")], b"at-2")
            found = await read_all(await self.hints(name), partition_for(3, PARTITIONS))
            assert [r.value for r in found] == [b"fresh"]
            await first.close()
            await second.close()

        run(scenario)
