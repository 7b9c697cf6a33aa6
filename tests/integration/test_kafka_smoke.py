"""Smoke test of the real Kafka node: topics with partitions, transactions, read_committed.

Runs against the broker started by `deploy/kafka.sh start` (MIG_KAFKA_PORT, default 9092).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.stack import Stack, require_port

pytestmark = pytest.mark.services

PARTITIONS = 3
DEADLINE_S = 60.0


async def _create_topic(bootstrap: str, topic: str) -> list[int]:
    """Create the topic and return the partition ids the broker reports for it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        response: Any = await admin.create_topics(
            [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]
        )
        errors = [(name, code) for name, code, *_ in response.topic_errors if code != 0]
        assert errors == [], f"create_topics answered with error codes {errors}"
        for _ in range(50):
            described: list[dict[str, Any]] = await admin.describe_topics([topic])
            partitions = sorted(p["partition"] for p in described[0]["partitions"])
            if described[0]["error_code"] == 0 and len(partitions) == PARTITIONS:
                return partitions
            await asyncio.sleep(0.2)
        return partitions
    finally:
        await admin.close()


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, run: str) -> tuple[set[bytes], set[bytes]]:
    """Commit one transaction, abort one, commit another; return (committed, aborted) values."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"smoke-{run}",
        request_timeout_ms=10_000,
    )
    await producer.start()
    committed: set[bytes] = set()
    aborted: set[bytes] = set()
    try:
        async with producer.transaction():
            for i in range(6):
                value = f"{run}-committed-a-{i}".encode()
                await producer.send_and_wait(topic, value, partition=i % PARTITIONS)
                committed.add(value)

        await producer.begin_transaction()
        for i in range(6):
            value = f"{run}-aborted-{i}".encode()
            await producer.send_and_wait(topic, value, partition=i % PARTITIONS)
            aborted.add(value)
        await producer.abort_transaction()

        async with producer.transaction():
            for i in range(3):
                value = f"{run}-committed-b-{i}".encode()
                await producer.send_and_wait(topic, value, partition=i % PARTITIONS)
                committed.add(value)
    finally:
        await producer.stop()
    return committed, aborted


async def _read_all(bootstrap: str, topic: str, isolation_level: str) -> dict[int, list[bytes]]:
    """Read every partition from the start up to its end offset; values by partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        request_timeout_ms=10_000,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # Under read_committed the end offset is the last stable offset.
        end: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        seen: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            batches: dict[TopicPartition, list[Any]] = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                seen[tp.partition].extend(r.value for r in records)
        return seen
    finally:
        await consumer.stop()


async def _scenario(bootstrap: str) -> None:
    run = uuid.uuid4().hex[:12]
    topic = f"smoke-kafka-{run}"
    partitions = await _create_topic(bootstrap, topic)
    assert partitions == list(range(PARTITIONS))
    try:
        committed, aborted = await _produce(bootstrap, topic, run)

        visible = await _read_all(bootstrap, topic, "read_committed")
        values = [v for vs in visible.values() for v in vs]
        assert sorted(values) == sorted(committed), "read_committed must see each commit once"
        assert not aborted & set(values), "read_committed returned records of an aborted txn"
        assert all(visible[p] for p in range(PARTITIONS)), "records should span all partitions"
        # Order within a partition is the order of the sends.
        assert visible[0][0] == f"{run}-committed-a-0".encode()

        # The aborted records were really written: an uncommitted reader does see them.
        everything = await _read_all(bootstrap, topic, "read_uncommitted")
        raw = {v for vs in everything.values() for v in vs}
        assert aborted <= raw
        assert committed <= raw
    finally:
        await _delete_topic(bootstrap, topic)


def test_transactions_and_read_committed(stack: Stack) -> None:
    require_port("Kafka", stack.host, stack.kafka_port)

    async def bounded() -> None:
        await asyncio.wait_for(_scenario(stack.kafka_bootstrap), DEADLINE_S)

    asyncio.run(bounded())
