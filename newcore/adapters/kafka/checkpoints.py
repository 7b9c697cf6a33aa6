"""Checkpoints in a compacted Kafka topic: where a source of ours resumes after a restart.

A checkpoint is written by the source's transactional producer in the same transaction as the
records it covers, so after any crash the last committed checkpoint and the records visible to
read_committed consumers agree. Nothing lives on the machine's disk: the process can move.
The topic has one partition; compaction keeps the latest record per key.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from newcore.adapters.kafka.event_log import ensure_topic
from newcore.ports import EventLogUnavailable
from newcore.settings import KafkaSettings

COMPACTED = {"cleanup.policy": "compact", "segment.ms": "3600000", "min.compaction.lag.ms": "0"}
_TAIL = 500  # records read back from the end per step when looking for the last checkpoint


async def ensure_checkpoint_topic(settings: KafkaSettings, topic: str) -> None:
    await ensure_topic(settings, topic, 1, COMPACTED)


async def last_checkpoint(settings: KafkaSettings, topic: str, key: bytes) -> bytes | None:
    """The value of the last committed checkpoint for `key`, or None if there is none. Reads
    back from the end of the topic a step at a time (transaction markers and other keys
    included), so the cost does not grow with the topic's history."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, isolation_level="read_committed",
        enable_auto_commit=False, request_timeout_ms=settings.request_timeout_ms,
    )  # fmt: skip
    try:
        await consumer.start()
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]  # the last stable offset, read_committed
        stop = end
        while stop > begin:
            start = max(begin, stop - _TAIL)
            consumer.seek(tp, start)
            found: bytes | None = None
            # Every offset below `end` (the last stable offset) is decided, so each fetch
            # moves the position on: past records, and past transaction markers and aborted
            # records, which read_committed skips without returning anything. A fetch that
            # returns nothing and moves nothing is a slow broker, not the end: it is asked
            # again (the caller bounds the whole read). Taking it for the end once made a
            # slow read look like "no checkpoint", and the binlog source jumped to the
            # binlog's end, skipping every write in between.
            while await consumer.position(tp) < stop:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                records = [r for r in batches.get(tp, []) if r.offset < stop]
                found = next((r.value for r in reversed(records) if r.key == key), found)
            if found is not None:
                return found
            stop = start
        return None
    except KafkaError as exc:
        raise EventLogUnavailable(f"Kafka at {settings.bootstrap}, topic {topic}: {exc!r}") from exc
    finally:
        await consumer.stop()
