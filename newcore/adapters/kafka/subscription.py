"""The workers' subscriptions on Kafka: consumer-group members (aiokafka), read_committed.

`KafkaSubscription` (the updater's): offsets committed by hand after the effect. When a
downstream store is down, a partition's batch is put back: paused, sought back, resumed after
a backoff, so that the poll loop never sleeps and the member keeps its place in the group (a
consumer blocked in a retry loop is thrown out of its group). A rebalance waits for the poll
being worked on (`poll` holds a lock that the revocation listener takes): without that, a
rebalance during a long HBase call made the commit and the pause raise IllegalStateError
("not assigned") and the updater exit.

`KafkaCaptureSubscription` (the capturer's) adds exactly-once consume -> produce. Each
partition of the input topic has its own transactional producer, `<prefix>-<topic>-<partition>`,
started when the partition is assigned: that fences every older producer of the same id (a
crashed or paused former owner, a zombie) and aborts its open transaction, so a zombie can
no longer append stale reads; the partition is then sought to its settled committed offset. A
producer fenced while working gives the partition up until the group assigns it again: it
never fences the new owner back. The read model's tie rule (equal capture positions: the
later-applied state wins) relies on one writer per room, in read order: this is what keeps it.

Every aiokafka exception becomes the port's (`newcore/errors.py`) here; aiokafka retries an
unreachable broker without end, so every call is bounded in time (`within`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, ProducerFenced

from newcore.adapters.kafka.event_log import ensure_topic, room_of_key, send_appends
from newcore.adapters.kafka.group import (
    PartitionBackoff,
    group_consumer,
    kafka_up,
    stop_quietly,
    transact,
    within,
)
from newcore.errors import EventLogFenced, EventLogUnavailable
from newcore.ports import Append, Batch, LogRecord
from newcore.settings import CapturerSettings, KafkaSettings, WorkerSettings


class KafkaSubscription:
    """A consumer-group member on `topic`; commits by hand (`commit`)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        partitions: int,
        group: str,
        worker: WorkerSettings,
        *,
        creates: Sequence[str] = (),
        log: logging.Logger | None = None,
    ) -> None:
        """`worker`: the batch bound, fetch wait and backoff of the worker this member feeds.
        `creates`: the other topics the worker writes, created with the same partition count
        if missing (a topic with another count is refused at `start`)."""
        self._kafka = kafka
        self._topic = topic
        self._partitions = partitions
        self._group = group
        self._creates = tuple(creates)
        self._max_records = worker.max_records
        self._fetch_max_wait_ms = worker.fetch_max_wait_ms
        self._backoff_ms = worker.backoff_ms
        self._max_backoff_ms = worker.max_backoff_ms
        self._log = log or logging.getLogger(__name__)
        self._consumer: AIOKafkaConsumer | None = None
        self._backoff: PartitionBackoff | None = None
        # Held while a poll is worked on; a revocation waits for it.
        self._held = asyncio.Lock()
        self._answered = False  # Kafka answered the last call (False until joined)
        self._idle = False  # the last poll returned no record

    # -- the port ------------------------------------------------------------------------

    async def start(self) -> None:
        for topic in (self._topic, *self._creates):
            await ensure_topic(self._kafka, topic, self._partitions)
        consumer = group_consumer(
            self._kafka, self._group, self._max_records, self._fetch_max_wait_ms
        )
        self._consumer = consumer
        self._backoff = PartitionBackoff(consumer, self._backoff_ms, self._max_backoff_ms)
        consumer.subscribe([self._topic], listener=_Listener(self))
        try:
            await within(self._kafka.request_timeout_ms / 1000, consumer.start(), "joining")
        except KafkaError as exc:
            await stop_quietly(consumer)
            raise self._unavailable(exc) from exc
        except BaseException:
            await stop_quietly(consumer)
            raise
        self._answered = True

    @contextlib.asynccontextmanager
    async def poll(self, max_records: int, timeout_ms: int) -> AsyncIterator[list[Batch]]:
        consumer = self._joined()
        try:
            fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            self._answered = False
            raise self._unavailable(exc) from exc
        self._idle = not any(fetched.values())
        async with self._held:
            yield await self._batches(fetched)

    def put_back(self, partition: int, position: int) -> int:
        assert self._backoff is not None
        return self._backoff.put_back(self._tp(partition), position)

    def succeeded(self, partition: int, next_position: int) -> None:
        if self._backoff is not None:
            self._backoff.succeeded(self._tp(partition))

    async def commit(self, positions: Mapping[int, int]) -> None:
        consumer = self._joined()
        offsets = {self._tp(p): n for p, n in positions.items()}
        try:
            await within(10, consumer.commit(offsets), "the commit")
        except (KafkaError, IllegalStateError) as exc:
            self._answered = False
            raise self._unavailable(exc) from exc
        self._answered = True

    async def lag(self) -> dict[int, int]:
        """From the consumer's position to the last stable offset (a read_committed consumer
        cannot read past it; the high water would count records of open transactions and
        transaction markers)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        found: dict[int, int] = {}
        for tp in list(consumer.assignment()):
            # Revoked while an earlier partition's position was awaited (aiokafka asserts the
            # partition is assigned), or Kafka gone: a gauge, never an error of the worker.
            with contextlib.suppress(IllegalStateError, KafkaError, AssertionError):
                if tp not in consumer.assignment():
                    continue
                end = consumer.last_stable_offset(tp)
                if end is not None:
                    found[tp.partition] = max(0, end - await consumer.position(tp))
        return found

    def health(self) -> dict[str, Any]:
        ok, silence = kafka_up(self._answered, self._consumer, self._idle, self._kafka)
        return {
            "ok": ok,
            "kafka": "up" if ok else "unavailable",
            "fetch_silence_s": None if silence is None else round(silence, 1),
            "paused_partitions": self._backoff.paused if self._backoff else [],
        }

    async def close(self) -> None:
        if self._consumer is not None:
            await stop_quietly(self._consumer)

    # -- for the capture subscription and the listener ------------------------------------

    async def _batches(self, fetched: dict[TopicPartition, list[Any]]) -> list[Batch]:
        return [
            Batch(tp.partition, self._records(tp, records))
            for tp, records in fetched.items()
            if records
        ]

    def _records(self, tp: TopicPartition, records: list[Any]) -> list[LogRecord]:
        return [
            LogRecord(tp.partition, r.offset, room_of_key(r.key), r.value or b"") for r in records
        ]

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._held:  # waits for the poll being worked on
            if self._backoff is not None:
                self._backoff.forget(revoked)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        return None

    def _joined(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise EventLogUnavailable(f"not joined to group {self._group} yet (call start)")
        return self._consumer

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self._topic, partition)

    def _unavailable(self, exc: BaseException) -> EventLogUnavailable:
        self._answered = False
        return EventLogUnavailable(f"Kafka at {self._kafka.bootstrap}: {exc!r}")


class KafkaCaptureSubscription(KafkaSubscription):
    """A consumer-group member that writes its outputs and its consumed offsets in one Kafka
    transaction per batch (`transact`), with one transactional producer per owned partition."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        partitions: int,
        worker: CapturerSettings,
        *,
        creates: Sequence[str] = (),
        log: logging.Logger | None = None,
    ) -> None:
        """The group and the transactional ids (`<prefix>-<topic>-<partition>`) are the
        capture worker's settings."""
        super().__init__(kafka, topic, partitions, worker.group, worker, creates=creates, log=log)
        self._prefix = worker.transactional_id_prefix
        self._transaction_timeout_ms = worker.transaction_timeout_ms
        self._owners: dict[TopicPartition, AIOKafkaProducer] = {}
        self._fenced: set[TopicPartition] = set()
        self._sought: dict[TopicPartition, int] = {}  # sought on taking, since the last poll
        self._sought_this_poll: dict[TopicPartition, int] = {}

    async def transact(self, partition: int, appends: Sequence[Append], next_position: int) -> None:
        tp = self._tp(partition)
        producer = self._owners.get(tp)
        if producer is None:
            raise EventLogUnavailable(f"partition {partition} is not owned (yet)")

        async def body() -> None:
            await asyncio.gather(*await send_appends(producer, appends, self._partitions))
            await producer.send_offsets_to_transaction({tp: next_position}, self._group)

        try:
            await transact(producer, body, self._transaction_timeout_ms / 1000 / 4)
        except ProducerFenced as exc:
            await self._release([tp])
            self._fenced.add(tp)
            self._joined().pause(tp)
            raise EventLogFenced(
                f"partition {partition}: another member's producer took over; given up until "
                "the group assigns it again"
            ) from exc
        except KafkaError as exc:
            # Left open on purpose: the next producer of this id aborts it when it starts.
            await self._release([tp])  # the next owner (maybe us) starts from a clean state
            raise self._unavailable(exc) from exc
        self._answered = True

    def succeeded(self, partition: int, next_position: int) -> None:
        super().succeeded(partition, next_position)
        tp = self._tp(partition)
        if tp in self._sought_this_poll:
            self._joined().seek(tp, next_position)

    def health(self) -> dict[str, Any]:
        health = super().health()
        health["ok"] = health["ok"] and not self._fenced
        health["owned_partitions"] = sorted(tp.partition for tp in self._owners)
        health["fenced_partitions"] = sorted(tp.partition for tp in self._fenced)
        return health

    async def close(self) -> None:
        await super().close()
        async with self._held:
            await self._release(list(self._owners))

    async def _batches(self, fetched: dict[TopicPartition, list[Any]]) -> list[Batch]:
        """Takes the partitions it could not take before, then keeps the batches it may
        capture. A partition owned since the poll began (here, or by the rebalance listener
        that runs during the poll) was sought to its settled committed offset: a batch that
        does not start there was either fetched before the seek, or after it with the sought
        offset holding no record to read (a transaction marker, or records of an aborted
        transaction, which read_committed skips). The two cannot be told apart, and in the
        second case the consumer is already past the batch, so it is dropped and the
        partition sought back: fetched again, it is captured on the next poll. A batch that
        starts there is kept, and the consumer is put right after it once it is captured
        (`succeeded`)."""
        consumer = self._joined()
        await self._own_unowned()
        sought, self._sought = self._sought, {}
        self._sought_this_poll = {}
        batches: list[Batch] = []
        for tp, records in fetched.items():
            if not records:
                continue
            at = sought.get(tp)
            if at is not None and records[0].offset != at:
                if tp in consumer.assignment():  # not taken away by a rebalance since
                    consumer.seek(tp, at)
                continue
            if tp not in self._owners:
                if tp not in self._fenced and self._backoff is not None:
                    self._backoff.put_back(tp, records[0].offset)
                continue
            if at is not None:
                self._sought_this_poll[tp] = at
            batches.append(Batch(tp.partition, self._records(tp, records)))
        return batches

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Fences every former writer of the assigned partitions and seeks each to its settled
        committed offset. Failures (Kafka down) are retried at the next poll."""
        async with self._held:
            self._fenced -= assigned
            await asyncio.gather(*(self._own(tp) for tp in assigned))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._held:  # waits for the batches in flight
            await self._release(list(revoked))
            if self._backoff is not None:
                self._backoff.forget(revoked)

    async def _own_unowned(self) -> None:
        unowned = self._joined().assignment() - set(self._owners) - self._fenced
        await asyncio.gather(*(self._own(tp) for tp in unowned))

    async def _own(self, tp: TopicPartition) -> bool:
        consumer = self._joined()
        if tp in self._owners:
            return True
        producer = AIOKafkaProducer(
            bootstrap_servers=self._kafka.bootstrap,
            transactional_id=f"{self._prefix}-{tp.topic}-{tp.partition}",
            transaction_timeout_ms=self._transaction_timeout_ms,
            request_timeout_ms=self._kafka.request_timeout_ms, linger_ms=5,
        )  # fmt: skip
        try:
            # InitProducerId fences older producers of this id (and aborts their transaction).
            await within(
                self._transaction_timeout_ms / 1000 / 2, producer.start(), "taking a partition"
            )
            committed = await within(10, consumer.committed(tp), "the committed offset")
        except KafkaError as exc:
            await stop_quietly(producer)
            self._answered = False
            self._log.warning(
                "cannot take partition yet", extra={"partition": tp.partition, "reason": repr(exc)}
            )
            return False
        self._owners[tp] = producer
        if committed is not None:
            consumer.seek(tp, committed)
            self._sought[tp] = committed
        self._log.info("partition owned", extra={"partition": tp.partition, "committed": committed})
        return True

    async def _release(self, tps: list[TopicPartition]) -> None:
        producers = [self._owners.pop(tp) for tp in tps if tp in self._owners]
        await asyncio.gather(*(stop_quietly(p) for p in producers))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscription: KafkaSubscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._subscription.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._subscription.on_assigned(set(assigned))
