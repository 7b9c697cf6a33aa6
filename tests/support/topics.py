"""Writing to and reading whole topics in process tests, through the real KafkaEventLog."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.ports import LogRecord
from newcore.settings import KafkaSettings


async def append(
    kafka: KafkaSettings, topic: str, partitions: int, records: Sequence[tuple[int, bytes]]
) -> None:
    log = KafkaEventLog(kafka, topic, partitions)
    try:
        await ensure_topic(kafka, topic, partitions)
        await log.append(records)
    finally:
        await log.close()


async def send_raw(
    kafka: KafkaSettings, topic: str, partition: int, key: bytes | None, value: bytes
) -> None:
    """One record with any key, to one partition: what a foreign producer could write (every
    producer of ours keys by the 8-byte room id and picks the room's partition)."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def read_all(kafka: KafkaSettings, topic: str, partitions: int) -> list[LogRecord]:
    """Every committed record of the topic (read_committed), partition by partition."""
    log = KafkaEventLog(kafka, topic, partitions)
    found: list[LogRecord] = []
    try:
        for partition in range(partitions):
            position = 0
            while page := await log.read(partition, position, 5000, timeout_ms=500):
                found += page
                position = page[-1].position + 1
    finally:
        await log.close()
    return found


async def unconsumed(kafka: KafkaSettings, topic: str, partitions: int, group: str) -> int:
    """Records of the topic past the group's committed offsets (all of them if it never
    committed): 0 once the group has committed everything it consumed."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=group,
                                enable_auto_commit=False)  # fmt: skip
    try:
        await consumer.start()
        ends = await consumer.end_offsets(tps)
        committed = [await consumer.committed(tp) or 0 for tp in tps]
        return sum(ends[tp] - offset for tp, offset in zip(tps, committed, strict=True))
    finally:
        await consumer.stop()
