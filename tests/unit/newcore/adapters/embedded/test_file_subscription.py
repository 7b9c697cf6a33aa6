"""The embedded subscription holds the subscription contract."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from newcore.adapters.embedded.file_subscription import FileSubscription
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.domain.partitioning import partition_for
from newcore.errors import EventLogFenced, EventLogUnavailable
from newcore.ports import Append, EventLog, TransactionalSubscription
from tests.contracts.subscription import PARTITIONS, SubscriptionContract, Topics


class FileContractTopics:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._topics = FileTopics(root, PARTITIONS)

    def log(self, topic: str) -> EventLog:
        return self._topics.log(topic)

    def member(
        self, topic: str, group: str, creates: tuple[str, ...] = ()
    ) -> TransactionalSubscription:
        return FileSubscription(self._topics, topic, group, backoff_ms=50, max_backoff_ms=200)

    async def restart(self) -> None:
        self._topics = FileTopics(self._root, PARTITIONS)

    async def close(self) -> None:
        return None


class TestFileSubscription(SubscriptionContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self._root = tmp_path

    async def open_topics(self, name: str) -> Topics:
        return FileContractTopics(self._root / name)


def test_a_second_member_of_the_group_fences_the_first(tmp_path: Path) -> None:
    """One member per group at a time, across processes (two `FileTopics` on one directory are
    what two processes hold): the newer member takes over from the committed positions; the
    older one can no longer commit or transact, polls nothing, and says so in its health,
    as a Kafka member whose partitions went to another. It never fences the new one back."""

    async def scenario() -> None:
        first_process, second_process = (
            FileTopics(tmp_path, PARTITIONS),
            FileTopics(tmp_path, PARTITIONS),
        )
        await first_process.log("in").append([(1, b"h0"), (1, b"h1")])
        home = partition_for(1, PARTITIONS)
        first = FileSubscription(first_process, "in", "g")
        await first.start()
        async with first.poll(10, 1000) as batches:
            assert [r.value for b in batches for r in b.records] == [b"h0", b"h1"]
        await first.commit({home: 1})
        second = FileSubscription(second_process, "in", "g")
        await second.start()
        with pytest.raises(EventLogFenced, match="another member of group g on topic in"):
            await first.transact(home, [Append("out", 1, b"stale")], 2)
        with pytest.raises(EventLogUnavailable, match="nothing committed"):
            await first.commit({home: 2})
        async with first.poll(10, 0) as batches:
            assert batches == []
        assert first.health()["ok"] is False
        assert first.health()["fenced_partitions"] == list(range(PARTITIONS))
        async with second.poll(10, 1000) as batches:  # from the committed position
            assert [r.value for b in batches for r in b.records] == [b"h1"]
        await second.transact(home, [Append("out", 1, b"fresh")], 2)
        assert await second_process.log("in").committed("g", home) == 2
        out = await first_process.log("out").read(home, 0, 10, 0)
        assert [r.value for r in out] == [b"fresh"]
        assert second.health()["ok"] is True

    asyncio.run(scenario())
