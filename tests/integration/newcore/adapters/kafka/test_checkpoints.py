"""Checkpoints on the real Kafka: the last committed one per key is found behind transaction
markers, aborted transactions and other keys' checkpoints; the checkpointed log holds the
CheckpointedLog contract."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from newcore.adapters.kafka.checkpoints import (
    KafkaCheckpointedLog,
    ensure_checkpoint_topic,
    last_checkpoint,
)
from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.ports import CheckpointedLog, EventLog
from newcore.settings import KafkaSettings, TopicSettings
from tests.contracts.checkpointed_log import PARTITIONS, CheckpointedLogContract
from tests.support.stack import Stack, require_port


async def commit(settings: KafkaSettings, topic: str, writer: str, key: bytes, value: bytes,
                 *, abort: bool = False) -> None:  # fmt: skip
    """One checkpoint in its own transaction, as a source writes it (or aborted)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, transactional_id=writer)
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, value, key=key)
        if abort:
            await producer.abort_transaction()
        else:
            await producer.commit_transaction()
    finally:
        await producer.stop()


def test_the_last_committed_checkpoint_is_found_behind_markers_and_aborts(stack: Stack) -> None:
    require_port("Kafka", stack.host, stack.kafka_port)
    settings = KafkaSettings(bootstrap=stack.kafka_bootstrap)
    topic, run = f"test-checkpoints-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]

    async def scenario() -> tuple[bytes | None, ...]:
        await ensure_checkpoint_topic(settings, topic)
        nothing_yet = await last_checkpoint(settings, topic, b"ours")
        await commit(settings, topic, f"{run}-ours", b"ours", b"first")
        await commit(settings, topic, f"{run}-ours", b"ours", b"second")
        # After our last commit: aborted checkpoints of ours and many of another source,
        # more than one read-back window (500 offsets) of them.
        for _ in range(3):
            await commit(settings, topic, f"{run}-ours", b"ours", b"aborted", abort=True)
        for i in range(300):
            await commit(settings, topic, f"{run}-theirs", b"theirs", str(i).encode())
        ours = await asyncio.wait_for(last_checkpoint(settings, topic, b"ours"), 60)
        theirs = await last_checkpoint(settings, topic, b"theirs")
        unknown = await last_checkpoint(settings, topic, b"nobody")
        return nothing_yet, ours, theirs, unknown

    assert asyncio.run(scenario()) == (None, b"second", b"299", None)


class TestKafkaCheckpointedLog(CheckpointedLogContract):
    @pytest.fixture(autouse=True)
    def _kafka(self, stack: Stack) -> None:
        require_port("Kafka", stack.host, stack.kafka_port)
        self._settings = KafkaSettings(bootstrap=stack.kafka_bootstrap)

    async def open_source(self, name: str) -> CheckpointedLog:
        topics = TopicSettings(
            hints=f"{name}.hints", events=f"{name}.events", dead_letters=f"{name}.dead",
            partitions=PARTITIONS,
        )  # fmt: skip
        return KafkaCheckpointedLog(self._settings, topics, f"{name}.cp", name, 15_000)

    async def hints(self, name: str) -> EventLog:
        await ensure_topic(self._settings, f"{name}.hints", PARTITIONS)
        return KafkaEventLog(self._settings, f"{name}.hints", PARTITIONS)
