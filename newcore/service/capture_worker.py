"""The capture worker: hints in, the monolith's current state out, as full-state events.

The loop `chat-capturer` runs, and the one the convergence property runs (on the embedded
adapters and on the real stack alike): consume -> read -> produce in a transaction. For each
partition's batch (cut so that one capture reads a bounded number of rows): read the rows the
hints name from the monolith, in a few queries; then, in ONE transaction of the subscription,
append the events, the follow-up range hints and the dead letters, and commit the consumed
position. Either all of it is visible to readers of committed data, or none of it is and the
batch is read again: no lost and no half-captured batch.

The policy, decided here: the monolith unavailable -> the partition's batch is put back (the
subscription pauses it and resumes after a backoff; the loop never sleeps); the event log
unavailable -> the same; fenced -> the partition is another member's now, this one stops
working on it. Everything is counted and logged with the partition and the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from newcore.errors import EventLogFenced, EventLogUnavailable, MonolithUnavailable
from newcore.ports import Append, Batch, LogRecord, TransactionalSubscription
from newcore.service.capture import CaptureOutcome, Capturer, split_by_ranges
from newcore.service.worker import SteppingWorker
from newcore.settings import CapturerSettings, TopicSettings

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
TRANSACTIONS = Counter("chat_capturer_transactions_total", "Transactions, by outcome", ["outcome"])
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

POLL_TIMEOUT_MS = 500


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CaptureWorker(SteppingWorker):
    def __init__(
        self,
        subscription: TransactionalSubscription,
        capturer: Capturer,
        topics: TopicSettings,
        settings: CapturerSettings,
        log: logging.Logger,
    ) -> None:
        super().__init__("capturer", topics.hints, settings, settings.group, log)
        self._subscription = subscription
        self._capturer = capturer
        self._topics = topics
        self._settings: CapturerSettings = settings
        self._reads = asyncio.Semaphore(settings.db_pool_size)
        self._monolith_ok = True
        self._started = False
        self._last_batch_at = 0.0

    def health(self) -> dict[str, Any]:
        state = self._subscription.health()
        return state | {
            "ok": self._started and bool(state.get("ok")) and self._monolith_ok,
            "monolith": "up" if self._monolith_ok else "unavailable",
            "last_batch_at": round(self._last_batch_at, 3),
        }

    async def start(self) -> bool:
        """Joins the group on the hints topic (the caller retries while Kafka is down)."""
        await self._subscription.start()
        self._started = True
        return True

    async def finish(self) -> None:
        await self._subscription.close()

    async def step(self, max_records: int | None = None, timeout_ms: int = POLL_TIMEOUT_MS) -> int:
        """One poll captured (every partition's batch, side by side); the number of hint
        records polled. An error the policy does not handle stops the other partitions' work
        before the poll's hold on its partitions is released (a task group, not a gather that
        would leave them running)."""
        limit = max_records or self._settings.max_records
        async with self._subscription.poll(limit, timeout_ms) as batches, asyncio.TaskGroup() as tg:
            for batch in batches:
                tg.create_task(self._capture(batch))
        for partition, lag in (await self._subscription.lag()).items():
            LAG.labels(partition=str(partition)).set(lag)
        health = self._subscription.health()
        PAUSED.set(len(health.get("paused_partitions", [])))
        FENCED.set(len(health.get("fenced_partitions", [])))
        return sum(len(batch.records) for batch in batches)

    async def _capture(self, batch: Batch) -> None:
        for piece in split_by_ranges(batch.records, self._settings.max_ranges_per_transaction):
            if not await self._capture_piece(batch.partition, piece):
                return
        self._subscription.succeeded(batch.partition, batch.records[-1].position + 1)

    async def _capture_piece(self, partition: int, piece: list[LogRecord]) -> bool:
        started = time.perf_counter()
        try:
            async with self._reads:
                outcome = await asyncio.to_thread(self._capturer.capture, piece, _now_ms())
        except MonolithUnavailable as exc:
            self._monolith_ok = False
            MONOLITH_DOWN.inc()
            delay = self._subscription.put_back(partition, piece[0].position)
            self._log.warning(
                "monolith unavailable: partition paused",
                extra={"partition": partition, "backoff_ms": delay, "reason": str(exc)},
            )
            return False
        CAPTURE_SECONDS.observe(time.perf_counter() - started)
        self._monolith_ok = True
        try:
            await self._subscription.transact(
                partition, self._appends(outcome), piece[-1].position + 1
            )
        except EventLogFenced as exc:
            TRANSACTIONS.labels(outcome="fenced").inc()
            self._log.error("fenced", extra={"partition": partition, "reason": str(exc)})
            return False
        except EventLogUnavailable as exc:
            TRANSACTIONS.labels(outcome="aborted").inc()
            delay = self._subscription.put_back(partition, piece[0].position)
            self._log.warning(
                "transaction failed: partition paused",
                extra={"partition": partition, "backoff_ms": delay, "reason": str(exc)},
            )
            return False
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

    def _appends(self, outcome: CaptureOutcome) -> list[Append]:
        t = self._topics
        return (
            [Append(t.events, room, value) for room, value in outcome.event_records()]
            + [Append(t.hints, room, value) for room, value in outcome.follow_up_records()]
            + [Append(t.dead_letters, room, value) for room, value in outcome.dead_letter_records()]
        )
