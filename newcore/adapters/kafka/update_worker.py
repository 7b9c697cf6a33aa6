"""The read-model updater on Kafka: events topic -> read store (HBase in production).

A member of a consumer group on the events topic. For each partition's batch: decode, apply to
the read store, send poison records to the dead-letter topic, then commit the *next* offset,
only after the effect is durable. A crash anywhere re-delivers the uncommitted batch, which the
read store's rule makes harmless (no duplicate, no lost state).

When HBase is unavailable the partition is paused and sought back to the batch's first offset,
and resumed after a backoff (doubling up to a ceiling): the poll loop never sleeps, so the
consumer keeps its group membership (a consumer blocked in a retry is thrown out of its group).
Kafka or HBase down at start: the process waits for them with the same backoff, its ops
endpoint up and unhealthy meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram

from newcore.adapters.kafka.event_log import ensure_topic, room_of_key, send_batched
from newcore.adapters.kafka.group import (
    PartitionBackoff,
    group_consumer,
    kafka_up,
    start_when_up,
    stop_quietly,
    update_lag,
    within,
)
from newcore.adapters.ops import configure_logging, serve_ops
from newcore.domain.partitioning import partition_for
from newcore.ports import LogRecord, ReadStore, ReadStoreUnavailable
from newcore.service.update import apply_records
from newcore.settings import NewCoreSettings

APPLIED = Counter("chat_updater_events_applied_total", "Event records applied to the read store")
DEAD = Counter("chat_updater_dead_letters_total", "Event records sent to the dead-letter topic")
BATCH = Histogram(
    "chat_updater_batch_records", "Records per applied batch", buckets=(1, 10, 100, 500, 1000, 5000)
)
LAG = Gauge("chat_updater_lag_records", "Records not yet applied, per partition", ["partition"])
PAUSED = Gauge(
    "chat_updater_paused_partitions", "Partitions paused because the read store is unavailable"
)
STORE_DOWN = Counter(
    "chat_updater_store_unavailable_total",
    "Batches put back because the read store was unavailable",
)


class Updater:
    def __init__(
        self,
        settings: NewCoreSettings,
        store: ReadStore,
        prepare_store: Callable[[], object],
    ) -> None:
        """`prepare_store`: makes the store ready (creates its tables), once, before the first
        event; raises ReadStoreUnavailable while the store cannot be reached."""
        self._settings = settings.updater
        self._topics = settings.topics
        self._kafka = settings.kafka
        self._prepare_store = prepare_store
        self._store = store
        self._log = configure_logging("updater")
        self._stopping = asyncio.Event()
        self._backoff: PartitionBackoff | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._store_ok = True
        self._kafka_ok = False  # until it has joined its group
        self._last_batch_at = 0.0
        self._idle = False  # the last poll returned no record
        # Held while a poll is applied and committed; a revocation waits for it, so that a
        # rebalance never takes a partition away between its puts and its commit.
        self._applying = asyncio.Lock()

    def stop(self) -> None:
        self._stopping.set()

    def health(self) -> dict[str, Any]:
        kafka_ok, silence = kafka_up(self._kafka_ok, self._consumer, self._idle, self._kafka)
        return {
            "ok": self._store_ok and kafka_ok,
            "read_store": "up" if self._store_ok else "unavailable",
            "kafka": "up" if kafka_ok else "unavailable",
            "fetch_silence_s": None if silence is None else round(silence, 1),
            "paused_partitions": self._backoff.paused if self._backoff else [],
            "last_batch_at": round(self._last_batch_at, 3),
        }

    async def run(self) -> None:
        s = self._settings
        ops = await serve_ops(s.ops_host, s.ops_port, self.health)
        try:
            clients = await start_when_up(
                self._join, self._stopping, s.backoff_ms, s.max_backoff_ms, self._waiting
            )
            if clients is not None:
                consumer, producer, backoff = clients
                self._log.info(
                    "updater started",
                    extra={"topic": self._topics.events, "group": s.group, "ops_port": s.ops_port},
                )
                try:
                    while not self._stopping.is_set():
                        batches = await consumer.getmany(timeout_ms=500, max_records=s.max_records)
                        self._idle = not any(batches.values())
                        async with self._applying:
                            await self._apply(consumer, producer, backoff, batches)
                        await update_lag(consumer, LAG)
                finally:
                    await stop_quietly(consumer)
                    await stop_quietly(producer)
        finally:
            ops.close()
            self._store.close()
            self._log.info("updater stopped")

    async def _join(self) -> tuple[AIOKafkaConsumer, AIOKafkaProducer, PartitionBackoff]:
        """Makes sure the tables and topics exist, starts the dead-letter producer and joins
        the group on the events topic."""
        s = self._settings
        await asyncio.to_thread(self._prepare_store)
        self._store_ok = True
        t = self._topics
        await ensure_topic(self._kafka, t.events, t.partitions)
        await ensure_topic(self._kafka, t.dead_letters, t.partitions)
        consumer = group_consumer(self._kafka, s.group, s.max_records, s.fetch_max_wait_ms)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._kafka.bootstrap, acks="all", enable_idempotence=True,
            linger_ms=5,
        )  # fmt: skip
        backoff = PartitionBackoff(consumer, s.backoff_ms, s.max_backoff_ms, PAUSED)
        self._backoff, self._consumer = backoff, consumer
        consumer.subscribe([t.events], listener=_Revocation(backoff, self._applying))
        seconds = self._kafka.request_timeout_ms / 1000
        try:
            await within(seconds, producer.start(), "starting the producer")
            await within(seconds, consumer.start(), "joining")
        except BaseException:
            await stop_quietly(consumer)
            await stop_quietly(producer)
            raise
        self._kafka_ok = True
        return consumer, producer, backoff

    def _waiting(self, error: BaseException, backoff_ms: int) -> None:
        if isinstance(error, ReadStoreUnavailable):
            self._store_ok = False
        else:
            self._kafka_ok = False
        self._log.warning(
            "waiting for HBase" if isinstance(error, ReadStoreUnavailable) else "waiting for Kafka",
            extra={"reason": str(error), "backoff_ms": backoff_ms},
        )

    async def _apply(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        backoff: PartitionBackoff,
        batches: dict[TopicPartition, list[Any]],
    ) -> None:
        """Applies a poll's records of every partition in one call to the store, then commits
        all their offsets at once: one HBase round and one commit per poll, not per partition
        (the updater's latency and CPU were dominated by those rounds)."""
        batches = {tp: records for tp, records in batches.items() if records}
        if not batches:
            return
        batch = [
            LogRecord(tp.partition, r.offset, room_of_key(r.key), r.value or b"")
            for tp, records in batches.items()
            for r in records
        ]
        try:
            dead = await asyncio.to_thread(apply_records, batch, self._store)
        except ReadStoreUnavailable as exc:
            self._store_ok = False
            STORE_DOWN.inc()
            self._put_back(backoff, batches, "read store unavailable", str(exc))
            return
        self._store_ok = True
        t = self._topics
        try:
            sent = await within(10, send_batched(
                producer,
                t.dead_letters,
                (
                    (partition_for(letter.room_id, t.partitions), letter.room_id.to_bytes(8, "big"),
                     letter.encode())
                    for letter in dead
                ),
            ), "dead letters")  # fmt: skip
            await within(10, asyncio.gather(*sent), "dead letters")
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            await within(10, consumer.commit(offsets), "the commit")
        except KafkaError as exc:
            # Applied but not committed: the batch comes again, which the store's rule makes
            # harmless; its dead letters may be sent twice.
            self._kafka_ok = False
            self._put_back(backoff, batches, "Kafka unavailable", repr(exc))
            return
        self._kafka_ok = True
        for letter in dead:
            self._log.warning(
                "dead letter",
                extra={"partition": letter.partition, "position": letter.position,
                       "reason": letter.reason},
            )  # fmt: skip
        APPLIED.inc(len(batch) - len(dead))
        DEAD.inc(len(dead))
        BATCH.observe(len(batch))
        self._last_batch_at = time.time()
        for tp in batches:
            backoff.succeeded(tp)

    def _put_back(
        self,
        backoff: PartitionBackoff,
        batches: dict[TopicPartition, list[Any]],
        what: str,
        reason: str,
    ) -> None:
        for tp, records in batches.items():
            delay = backoff.put_back(tp, records[0].offset)
        self._log.warning(
            f"{what}: partitions paused",
            extra={"partitions": sorted(tp.partition for tp in batches), "backoff_ms": delay,
                   "reason": reason},
        )  # fmt: skip


class _Revocation(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions are given up only between polls: the revocation waits for the poll being
    applied to be committed (or put back). Without that, a rebalance during a long HBase call
    made the commit and the pause raise IllegalStateError ("not assigned") and the updater
    exit. A revoked partition is then no longer ours to pause or resume."""

    def __init__(self, backoff: PartitionBackoff, applying: asyncio.Lock) -> None:
        self._backoff = backoff
        self._applying = applying

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._applying:
            self._backoff.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None
