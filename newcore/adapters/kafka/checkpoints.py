"""Checkpoints in a compacted Kafka topic: where a source of ours resumes after a restart.

A checkpoint is written by the source's transactional producer in the same transaction as the
records it covers, so after any crash the last committed checkpoint and the records visible to
read_committed consumers agree. Nothing lives on the machine's disk: the process can move.
The topic has one partition; compaction keeps the latest record per key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from newcore.adapters.kafka.event_log import ensure_topic, send_appends
from newcore.adapters.kafka.group import stop_quietly, transact, within
from newcore.errors import EventLogFenced, EventLogUnavailable
from newcore.ports import Append
from newcore.settings import KafkaSettings, TopicSettings

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
        await stop_quietly(consumer)


class KafkaCheckpointedLog:
    """The CheckpointedLog port on Kafka: the identity is a transactional id, the checkpoint a
    record keyed by it in a compacted topic of one partition, written in the same transaction
    as the appends. Every aiokafka exception becomes the port's here, every call bounded in
    time (`transaction_timeout_ms`)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: TopicSettings,
        checkpoint_topic: str,
        identity: str,
        transaction_timeout_ms: int,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._checkpoint_topic = checkpoint_topic
        self._identity = identity
        self._seconds = transaction_timeout_ms / 1000
        self._producer: AIOKafkaProducer | None = None
        self._topics_ready = False

    async def start(self) -> bytes | None:
        await self._drop()
        try:
            if not self._topics_ready:
                t = self._topics
                await ensure_topic(self._kafka, t.hints, t.partitions)
                await ensure_topic(self._kafka, t.dead_letters, t.partitions)
                await ensure_checkpoint_topic(self._kafka, self._checkpoint_topic)
                self._topics_ready = True
            producer = AIOKafkaProducer(
                bootstrap_servers=self._kafka.bootstrap, transactional_id=self._identity,
                transaction_timeout_ms=round(self._seconds * 1000),
                request_timeout_ms=self._kafka.request_timeout_ms, linger_ms=5,
            )  # fmt: skip
            try:  # fences any other copy: its last commit is settled when this returns
                await within(self._seconds, producer.start(), "starting the producer")
            except BaseException:
                await stop_quietly(producer)
                raise
            self._producer = producer
            return await within(
                self._seconds,
                last_checkpoint(self._kafka, self._checkpoint_topic, self._identity.encode()),
                "reading the checkpoint",
            )
        except KafkaError as exc:
            await self._drop()
            raise EventLogUnavailable(f"Kafka at {self._kafka.bootstrap}: {exc!r}") from exc

    async def append(self, appends: Sequence[Append], checkpoint: bytes) -> None:
        producer = self._producer
        if producer is None:
            raise EventLogUnavailable("not started (or dropped after a failure): start again")

        async def body() -> None:
            sent = await send_appends(producer, appends, self._topics.partitions)
            sent.append(
                await producer.send(
                    self._checkpoint_topic, checkpoint, key=self._identity.encode(), partition=0
                )
            )
            await asyncio.gather(*sent)

        try:
            await transact(producer, body, self._seconds)
        except ProducerFenced as exc:
            await self._drop()
            raise EventLogFenced(
                f"another source with transactional id {self._identity} took over"
            ) from exc
        except KafkaError as exc:
            await self._drop()  # the next producer of this id aborts the open transaction
            raise EventLogUnavailable(f"Kafka at {self._kafka.bootstrap}: {exc!r}") from exc

    async def close(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await stop_quietly(producer)
