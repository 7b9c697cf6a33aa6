"""The Kafka event log holds the EventLog contract, on the real Kafka."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.ports import EventLog, EventLogMisconfigured, EventLogUnavailable
from newcore.settings import KafkaSettings
from tests.contracts.event_log import PARTITIONS, EventLogContract
from tests.support.stack import Stack, require_port


class TestKafkaEventLog(EventLogContract):
    @pytest.fixture(autouse=True)
    def _kafka(self, stack: Stack) -> None:
        require_port("Kafka", stack.host, stack.kafka_port)
        self._settings = KafkaSettings(bootstrap=stack.kafka_bootstrap)

    async def open_log(self, name: str) -> EventLog:
        await ensure_topic(self._settings, name, PARTITIONS)
        return KafkaEventLog(self._settings, name, PARTITIONS)


def test_a_topic_with_another_partition_count_is_refused(stack: Stack) -> None:
    require_port("Kafka", stack.host, stack.kafka_port)
    settings = KafkaSettings(bootstrap=stack.kafka_bootstrap)
    name = "contract-partitions-check"
    asyncio.run(ensure_topic(settings, name, 2))
    assert asyncio.run(ensure_topic(settings, name, 2)) is False
    with pytest.raises(EventLogMisconfigured, match="has 2 partitions, expected 3"):
        asyncio.run(ensure_topic(settings, name, 3))


def test_kafka_down_is_event_log_unavailable() -> None:
    settings = KafkaSettings(bootstrap="127.0.0.1:1", request_timeout_ms=2000)
    log = KafkaEventLog(settings, "nowhere", 1)

    async def scenario() -> None:
        try:
            with pytest.raises(EventLogUnavailable, match=r"Kafka at 127\.0\.0\.1:1"):
                await log.append([(1, b"x")])
        finally:
            await log.close()

    asyncio.run(scenario())


def test_a_topic_created_by_many_at_once_is_never_taken_for_a_misconfigured_one(
    stack: Stack,
) -> None:
    """Issue 11's fault drill: processes started together on a new topic saw it with 0
    partitions (created a moment ago by another) and exited as misconfigured."""
    require_port("Kafka", stack.host, stack.kafka_port)
    settings = KafkaSettings(bootstrap=stack.kafka_bootstrap)

    async def race(name: str) -> list[bool]:
        return list(await asyncio.gather(*(ensure_topic(settings, name, 16) for _ in range(6))))

    for _ in range(3):
        created = asyncio.run(race(f"contract-race-{uuid.uuid4().hex[:8]}"))
        assert created.count(True) == 1, created
