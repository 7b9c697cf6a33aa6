"""`chat-updater`: the read-model updater, Kafka events -> HBase read model.

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

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from newcore.adapters.hbase.read_store import HBaseReadStore, ensure_tables
from newcore.adapters.kafka.event_log import ensure_topic, room_of_key, send_batched
from newcore.adapters.kafka.group import (
    PartitionBackoff,
    group_consumer,
    kafka_up,
    run_until_signalled,
    start_when_up,
    stop_quietly,
    update_lag,
    within,
)
from newcore.adapters.ops import configure_logging, serve_ops
from newcore.domain.partitioning import partition_for
from newcore.ports import LogRecord, ReadStore, ReadStoreUnavailable
from newcore.service.update import apply_records
from newcore.settings import HBaseSettings, KafkaSettings, setting_error

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


class UpdaterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIG_UPDATER_", extra="ignore", frozen=True)

    events_topic: str = Field(default="chat.events", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    dead_letter_topic: str = Field(default="chat.dead-letters", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    partitions: int = Field(default=16, ge=1, le=1024)
    group: str = Field(default="chat-updater", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    max_records: int = Field(default=2000, ge=1, le=100_000)
    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=9311, ge=0, le=65535)
    backoff_ms: int = Field(default=500, ge=10)
    max_backoff_ms: int = Field(default=30_000, ge=10)
    # How long the broker may hold a fetch with nothing new: a bound on latency when records
    # trickle in (read_committed fetches wait for the transaction markers, not only the data).
    fetch_max_wait_ms: int = Field(default=100, ge=0, le=5000)


class Updater:
    def __init__(
        self,
        settings: UpdaterSettings,
        kafka: KafkaSettings,
        store: ReadStore,
        prepare_store: Callable[[], object],
    ) -> None:
        """`prepare_store`: makes the store ready (creates its tables), once, before the first
        event; raises ReadStoreUnavailable while the store cannot be reached."""
        self._settings = settings
        self._kafka = kafka
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
                    extra={"topic": s.events_topic, "group": s.group, "ops_port": s.ops_port},
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
        await ensure_topic(self._kafka, s.events_topic, s.partitions)
        await ensure_topic(self._kafka, s.dead_letter_topic, s.partitions)
        consumer = group_consumer(self._kafka, s.group, s.max_records, s.fetch_max_wait_ms)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._kafka.bootstrap, acks="all", enable_idempotence=True,
            linger_ms=5,
        )  # fmt: skip
        backoff = PartitionBackoff(consumer, s.backoff_ms, s.max_backoff_ms, PAUSED)
        self._backoff, self._consumer = backoff, consumer
        consumer.subscribe([s.events_topic], listener=_Revocation(backoff, self._applying))
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

    def _waiting(self, error: Exception, backoff_ms: int) -> None:
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
        s = self._settings
        try:
            sent = await within(10, send_batched(
                producer,
                s.dead_letter_topic,
                (
                    (partition_for(letter.room_id, s.partitions), letter.room_id.to_bytes(8, "big"),
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


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="chat-updater",
        description="Apply the events topic to the HBase read model (a consumer group member). "
        "Settings: MIG_UPDATER_* (topics, partitions, group, ops port), MIG_KAFKA_BOOTSTRAP, "
        "MIG_HBASE_*. Ops: GET /metrics and /healthz on MIG_UPDATER_OPS_PORT (default 9311). "
        "Kafka or HBase unreachable, at start too: it waits, unhealthy, and retries. Exit 3: a "
        "topic has another partition count.",
    ).parse_args(argv)
    try:
        settings, kafka, hbase = UpdaterSettings(), KafkaSettings(), HBaseSettings()
    except ValidationError as exc:
        print(f"chat-updater: {setting_error(exc)}", file=sys.stderr)
        return 2
    updater = Updater(settings, kafka, HBaseReadStore(hbase), partial(ensure_tables, hbase))

    return run_until_signalled("chat-updater", updater, kafka)


if __name__ == "__main__":
    sys.exit(main())
