"""The update worker: events in, the read model brought up to them.

The loop `chat-updater` runs, and the one the convergence property runs (on the embedded
adapters and on the real stack alike): consume -> apply -> commit. A poll's records of every
partition are applied in one call to the read store (one HBase round per poll, not per
partition), poison records go to the dead letters, then the *next* positions are committed,
only after the effect is durable. A crash anywhere re-delivers the uncommitted batch, which
the read store's rule makes harmless (no duplicate, no lost state).

The policy, decided here: the read store unavailable -> every partition of the poll is put
back (paused, resumed after a backoff; the loop never sleeps); the event log unavailable
while sending dead letters or committing -> the same (applied but not committed: the batch
comes again, harmless; its dead letters may be sent twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from newcore.errors import EventLogUnavailable, ReadStoreUnavailable
from newcore.ports import Batch, EventLog, ReadStore, Subscription
from newcore.service.update import apply_records
from newcore.service.worker import SteppingWorker
from newcore.settings import TopicSettings, UpdaterSettings

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

POLL_TIMEOUT_MS = 500


class UpdateWorker(SteppingWorker):
    def __init__(
        self,
        subscription: Subscription,
        store: ReadStore,
        dead_letters: EventLog,
        prepare_store: Callable[[], object],
        topics: TopicSettings,
        settings: UpdaterSettings,
        log: logging.Logger,
    ) -> None:
        """`prepare_store`: makes the store ready (creates its tables), once, before the first
        event; raises ReadStoreUnavailable while the store cannot be reached."""
        super().__init__("updater", topics.events, settings, settings.group, log)
        self._subscription = subscription
        self._store = store
        self._dead_letters = dead_letters
        self._prepare_store = prepare_store
        self._store_ok = True
        self._started = False
        self._last_batch_at = 0.0

    def health(self) -> dict[str, Any]:
        state = self._subscription.health()
        return state | {
            "ok": self._started and bool(state.get("ok")) and self._store_ok,
            "read_store": "up" if self._store_ok else "unavailable",
            "last_batch_at": round(self._last_batch_at, 3),
        }

    async def finish(self) -> None:
        await self._subscription.close()
        await self._dead_letters.close()
        self._store.close()

    async def start(self) -> bool:
        """Makes the store ready and joins the group; raises what they raise."""
        await asyncio.to_thread(self._prepare_store)
        self._store_ok = True
        await self._subscription.start()
        self._started = True
        return True

    def _waiting(self, error: BaseException, backoff_ms: int) -> None:
        """HBase and Kafka are waited for alike; the health says which one is down."""
        if isinstance(error, ReadStoreUnavailable):
            self._store_ok = False
        self._log.warning(
            "waiting for HBase" if isinstance(error, ReadStoreUnavailable) else "waiting for Kafka",
            extra={"reason": str(error), "backoff_ms": backoff_ms},
        )

    async def step(self, max_records: int | None = None, timeout_ms: int = POLL_TIMEOUT_MS) -> int:
        """One poll applied and committed; the number of event records polled."""
        limit = max_records or self._settings.max_records
        async with self._subscription.poll(limit, timeout_ms) as batches:
            if batches:
                await self._apply(batches)
        for partition, lag in (await self._subscription.lag()).items():
            LAG.labels(partition=str(partition)).set(lag)
        PAUSED.set(len(self._subscription.health().get("paused_partitions", [])))
        return sum(len(batch.records) for batch in batches)

    async def _apply(self, batches: list[Batch]) -> None:
        records = [record for batch in batches for record in batch.records]
        try:
            dead = await asyncio.to_thread(apply_records, records, self._store)
        except ReadStoreUnavailable as exc:
            self._store_ok = False
            STORE_DOWN.inc()
            self._put_back(batches, "read store unavailable", str(exc))
            return
        self._store_ok = True
        try:
            await self._dead_letters.append([(letter.room_id, letter.encode()) for letter in dead])
            await self._subscription.commit(
                {batch.partition: batch.records[-1].position + 1 for batch in batches}
            )
        except EventLogUnavailable as exc:
            self._put_back(batches, "Kafka unavailable", str(exc))
            return
        for letter in dead:
            self._log.warning(
                "dead letter",
                extra={"partition": letter.partition, "position": letter.position,
                       "reason": letter.reason},
            )  # fmt: skip
        APPLIED.inc(len(records) - len(dead))
        DEAD.inc(len(dead))
        BATCH.observe(len(records))
        self._last_batch_at = time.time()
        for batch in batches:
            self._subscription.succeeded(batch.partition, batch.records[-1].position + 1)

    def _put_back(self, batches: list[Batch], what: str, reason: str) -> None:
        delays = [self._subscription.put_back(b.partition, b.records[0].position) for b in batches]
        self._log.warning(
            f"{what}: partitions paused",
            extra={"partitions": sorted(b.partition for b in batches),
                   "backoff_ms": max(delays, default=0), "reason": reason},
        )  # fmt: skip
