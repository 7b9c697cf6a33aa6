"""The capture worker on Kafka: hints in, the monolith's current state out, as full-state events.

A member of a consumer group on the hints topic (read_committed). For each partition's batch
(cut so that one capture reads a bounded number of rows): read the rows the hints name from
MariaDB, in a few queries; then, in ONE Kafka transaction, produce the events (events topic),
the follow-up range hints (hints topic), the dead letters, and the consumed offset
(`send_offsets_to_transaction`). Either all of it is visible to read_committed consumers, or
none of it is and the batch is read again: no lost and no half-captured batch.

Fencing. The read model's tie rule (equal capture positions: the later-applied state wins)
relies on a room's events being appended in the order they were read, by one writer. Each
hints partition therefore has its own transactional producer, `<prefix>-<topic>-<partition>`:
whoever starts it fences every older producer of the same id, aborting its open transaction,
so a paused or partitioned former owner (a zombie) can no longer append stale reads. After
fencing, the partition is sought to its committed offset (the zombie's last commit is settled
by then). A producer that finds itself fenced gives the partition up until the group assigns it
again; it never re-fences the new owner.

MariaDB down: the partition is paused and sought back, and resumed after a backoff (the poll
loop never sleeps). Kafka down: the transaction is aborted if it can be, the partition's
producer is replaced, and the batch is put back the same way. Kafka down at start: the process
waits for it with the same backoff, its ops endpoint up and unhealthy meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from prometheus_client import Counter, Gauge, Histogram

from newcore.adapters.kafka.event_log import ensure_topic, room_of_key, send_batched
from newcore.adapters.kafka.group import (
    PartitionBackoff,
    group_consumer,
    kafka_up,
    start_when_up,
    stop_quietly,
    transact,
    update_lag,
    within,
)
from newcore.adapters.ops import configure_logging, serve_ops
from newcore.domain.partitioning import partition_for
from newcore.ports import EventLogUnavailable, LogRecord, MonolithReader, MonolithUnavailable
from newcore.service.capture import CaptureOutcome, Capturer, split_by_ranges
from newcore.settings import NewCoreSettings

HINTS = Counter("chat_capturer_hints_total", "Hint records captured (committed)")
EVENTS = Counter("chat_capturer_events_total", "Full-state events produced (committed)")
FOLLOW_UPS = Counter("chat_capturer_follow_up_hints_total", "Follow-up range hints produced")
DEAD = Counter("chat_capturer_dead_letters_total", "Dead letters produced, by source", ["source"])
BATCH = Histogram(
    "chat_capturer_batch_hints", "Hints per captured transaction",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000),
)  # fmt: skip
CAPTURE_SECONDS = Histogram(
    "chat_capturer_read_seconds", "Time to read a batch's rows from the monolith",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)  # fmt: skip
TRANSACTIONS = Counter(
    "chat_capturer_transactions_total", "Kafka transactions, by outcome", ["outcome"]
)
LAG = Gauge(
    "chat_capturer_lag_records", "Hint records not yet captured, per partition", ["partition"]
)
PAUSED = Gauge("chat_capturer_paused_partitions", "Partitions paused after a failure")
MONOLITH_DOWN = Counter(
    "chat_capturer_monolith_unavailable_total", "Batches put back because MariaDB was unavailable"
)
FENCED = Gauge(
    "chat_capturer_fenced_partitions", "Partitions given up because another producer fenced ours"
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CaptureWorker:
    def __init__(self, settings: NewCoreSettings, reader: MonolithReader) -> None:
        self._settings = settings.capturer
        self._topics = settings.topics
        self._kafka = settings.kafka
        self._capturer = Capturer(
            reader, partitions=settings.topics.partitions, range_page=settings.capturer.range_page,
            max_event_bytes=settings.capturer.max_event_bytes,
        )  # fmt: skip
        self._log = configure_logging("capturer")
        self._stopping = asyncio.Event()
        # Held while batches are captured; the rebalance listener takes it before giving
        # partitions up, so a revoked partition never has a transaction in flight.
        self._owning = asyncio.Lock()
        self._reads = asyncio.Semaphore(settings.capturer.db_pool_size)
        self._owners: dict[TopicPartition, AIOKafkaProducer] = {}
        self._fenced: set[TopicPartition] = set()
        self._sought: dict[TopicPartition, int] = {}  # sought on taking, since the last poll
        self._consumer: AIOKafkaConsumer | None = None
        self._backoff: PartitionBackoff | None = None
        self._monolith_ok = True
        self._kafka_ok = False  # until it has joined its group
        self._last_batch_at = 0.0
        self._idle = False  # the last poll returned no record

    def stop(self) -> None:
        self._stopping.set()

    def health(self) -> dict[str, Any]:
        kafka_ok, silence = kafka_up(self._kafka_ok, self._consumer, self._idle, self._kafka)
        return {
            "ok": self._monolith_ok and kafka_ok and not self._fenced,
            "monolith": "up" if self._monolith_ok else "unavailable",
            "kafka": "up" if kafka_ok else "unavailable",
            "fetch_silence_s": None if silence is None else round(silence, 1),
            "owned_partitions": sorted(tp.partition for tp in self._owners),
            "fenced_partitions": sorted(tp.partition for tp in self._fenced),
            "paused_partitions": self._backoff.paused if self._backoff else [],
            "last_batch_at": round(self._last_batch_at, 3),
        }

    async def run(self) -> None:
        s = self._settings
        ops = await serve_ops(s.ops_host, s.ops_port, self.health)
        try:
            consumer = await start_when_up(
                self._join, self._stopping, s.backoff_ms, s.max_backoff_ms, self._waiting
            )
            if consumer is not None:
                self._log.info(
                    "capturer started",
                    extra={"topic": self._topics.hints, "group": s.group, "ops_port": s.ops_port},
                )
                try:
                    await self._poll(consumer)
                finally:
                    await stop_quietly(consumer)
                    async with self._owning:
                        await self._release(list(self._owners))
        finally:
            ops.close()
            self._log.info("capturer stopped")

    async def _join(self) -> AIOKafkaConsumer:
        """Makes sure the topics exist and joins the group on the hints topic."""
        s = self._settings
        t = self._topics
        for topic in (t.hints, t.events, t.dead_letters):
            await ensure_topic(self._kafka, topic, t.partitions)
        consumer = group_consumer(self._kafka, s.group, s.max_records, s.fetch_max_wait_ms)
        self._consumer = consumer
        self._backoff = PartitionBackoff(consumer, s.backoff_ms, s.max_backoff_ms, PAUSED)
        consumer.subscribe([self._topics.hints], listener=_Ownership(self))
        try:
            await within(self._kafka.request_timeout_ms / 1000, consumer.start(), "joining")
        except BaseException:
            await stop_quietly(consumer)
            raise
        self._kafka_ok = True
        return consumer

    def _waiting(self, error: BaseException, backoff_ms: int) -> None:
        self._kafka_ok = False
        self._log.warning(
            "waiting for Kafka", extra={"reason": repr(error), "backoff_ms": backoff_ms}
        )

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        s = self._settings
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=s.max_records)
            self._idle = not any(batches.values())
            async with self._owning:
                await self._own_unowned()
                # A partition owned since the poll began (here, or by the rebalance listener
                # that runs during the poll) was sought to its settled committed offset.
                sought, self._sought = self._sought, {}
                await asyncio.gather(
                    *(
                        self._capture_partition(tp, records, sought.get(tp))
                        for tp, records in batches.items()
                    )
                )
            await update_lag(consumer, LAG)

    # -- ownership -----------------------------------------------------------------------

    async def take(self, assigned: set[TopicPartition]) -> None:
        """Fences every former writer of the assigned partitions and seeks each to its
        settled committed offset. Failures (Kafka down) are retried by the poll loop."""
        async with self._owning:
            self._fenced -= assigned
            FENCED.set(len(self._fenced))
            await asyncio.gather(*(self._own(tp) for tp in assigned))

    async def give_up(self, revoked: set[TopicPartition]) -> None:
        async with self._owning:  # waits for the batches in flight
            await self._release(list(revoked))
            if self._backoff is not None:
                self._backoff.forget(revoked)

    async def _own_unowned(self) -> None:
        """Retries taking assigned partitions that could not be taken before."""
        assert self._consumer is not None
        unowned = self._consumer.assignment() - set(self._owners) - self._fenced
        await asyncio.gather(*(self._own(tp) for tp in unowned))

    async def _own(self, tp: TopicPartition) -> bool:
        assert self._consumer is not None
        if tp in self._owners:
            return True
        s = self._settings
        producer = AIOKafkaProducer(
            bootstrap_servers=self._kafka.bootstrap,
            transactional_id=f"{s.transactional_id_prefix}-{tp.topic}-{tp.partition}",
            transaction_timeout_ms=s.transaction_timeout_ms,
            request_timeout_ms=self._kafka.request_timeout_ms, linger_ms=5,
        )  # fmt: skip
        try:
            # InitProducerId fences older producers of this id (and aborts their transaction).
            await within(
                s.transaction_timeout_ms / 1000 / 2, producer.start(), "taking a partition"
            )
            committed = await within(10, self._consumer.committed(tp), "the committed offset")
        except KafkaError as exc:
            await stop_quietly(producer)
            self._kafka_ok = False
            self._log.warning(
                "cannot take partition yet", extra={"partition": tp.partition, "reason": repr(exc)}
            )
            return False
        self._owners[tp] = producer
        if committed is not None:
            self._consumer.seek(tp, committed)
            self._sought[tp] = committed
        self._log.info("partition owned", extra={"partition": tp.partition, "committed": committed})
        return True

    async def _release(self, tps: list[TopicPartition]) -> None:
        producers = [self._owners.pop(tp) for tp in tps if tp in self._owners]
        await asyncio.gather(*(stop_quietly(p) for p in producers))

    # -- capture -------------------------------------------------------------------------

    async def _capture_partition(
        self, tp: TopicPartition, records: list[Any], sought: int | None
    ) -> None:
        """Captures the batch piece by piece. `sought`: the offset the partition was sought to
        while this batch was being polled. A batch that does not start there was either
        fetched before the seek, or after it with `sought` holding no record to read (a
        transaction marker, or records of an aborted transaction: read_committed skips them).
        The two cannot be told apart, and in the second case the consumer is already past the
        batch, so it is dropped and the partition sought back to `sought`: fetched again, it
        is captured on the next poll. A batch that starts at `sought` was fetched after the
        seek, or the seek changed nothing; either way the consumer is put right after the
        batch once it is captured."""
        if not records:
            return
        assert self._backoff is not None and self._consumer is not None
        if sought is not None and records[0].offset != sought:
            if tp in self._consumer.assignment():  # not taken away by a rebalance since
                self._consumer.seek(tp, sought)
            return
        if tp not in self._owners:
            if tp not in self._fenced:
                self._backoff.put_back(tp, records[0].offset)
            return
        batch = [
            LogRecord(tp.partition, r.offset, room_of_key(r.key), r.value or b"") for r in records
        ]
        for piece in split_by_ranges(batch, self._settings.max_ranges_per_transaction):
            if not await self._capture_piece(tp, piece):
                return
        self._backoff.succeeded(tp)
        if sought is not None:
            self._consumer.seek(tp, records[-1].offset + 1)

    async def _capture_piece(self, tp: TopicPartition, piece: list[LogRecord]) -> bool:
        assert self._backoff is not None
        started = time.perf_counter()
        try:
            async with self._reads:
                outcome = await asyncio.to_thread(self._capturer.capture, piece, _now_ms())
        except MonolithUnavailable as exc:
            self._monolith_ok = False
            MONOLITH_DOWN.inc()
            delay = self._backoff.put_back(tp, piece[0].position)
            self._log.warning(
                "monolith unavailable: partition paused",
                extra={"partition": tp.partition, "backoff_ms": delay, "reason": str(exc)},
            )
            return False
        CAPTURE_SECONDS.observe(time.perf_counter() - started)
        self._monolith_ok = True
        producer = self._owners[tp]
        try:
            await self._produce(producer, tp, piece, outcome)
        except ProducerFenced:
            TRANSACTIONS.labels(outcome="fenced").inc()
            await self._release([tp])
            self._fenced.add(tp)
            FENCED.set(len(self._fenced))
            assert self._consumer is not None
            self._consumer.pause(tp)
            self._log.error(
                "fenced: another capturer owns this partition now; giving it up until the group "
                "assigns it again",
                extra={"partition": tp.partition},
            )
            return False
        except (KafkaError, EventLogUnavailable) as exc:
            TRANSACTIONS.labels(outcome="aborted").inc()
            self._kafka_ok = False
            await self._release([tp])  # the next owner (maybe us) starts from a clean state
            delay = self._backoff.put_back(tp, piece[0].position)
            self._log.warning(
                "transaction failed: partition paused",
                extra={"partition": tp.partition, "backoff_ms": delay, "reason": repr(exc)},
            )
            return False
        self._kafka_ok = True
        TRANSACTIONS.labels(outcome="committed").inc()
        HINTS.inc(len(piece))
        EVENTS.inc(len(outcome.events))
        FOLLOW_UPS.inc(len(outcome.follow_ups))
        BATCH.observe(len(piece))
        for letter in outcome.dead_letters:
            DEAD.labels(source=letter.source.split(":")[0]).inc()
            self._log.warning(
                "dead letter",
                extra={"source": letter.source, "room_id": letter.room_id,
                       "partition": letter.partition, "position": letter.position,
                       "key": letter.key, "reason": letter.reason},
            )  # fmt: skip
        self._last_batch_at = time.time()
        return True

    async def _produce(
        self,
        producer: AIOKafkaProducer,
        tp: TopicPartition,
        piece: list[LogRecord],
        outcome: CaptureOutcome,
    ) -> None:
        """The events, follow-ups, dead letters and the consumed offset: one transaction."""
        s, t = self._settings, self._topics

        async def body() -> None:
            sent: list[asyncio.Future[Any]] = []
            for topic, records in (
                (t.events, outcome.event_records()),
                (t.hints, outcome.follow_up_records()),
                (t.dead_letters, outcome.dead_letter_records()),
            ):
                sent += await send_batched(
                    producer,
                    topic,
                    (
                        (partition_for(room_id, t.partitions), room_id.to_bytes(8, "big"), value)
                        for room_id, value in records
                    ),
                )
            await asyncio.gather(*sent)
            await producer.send_offsets_to_transaction({tp: piece[-1].position + 1}, s.group)

        await transact(producer, body, s.transaction_timeout_ms / 1000 / 4)


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: CaptureWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.give_up(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._worker.take(set(assigned))
