"""The binlog source: the monolith's binlog as hints, the guarantee behind the gateway's.

Writes that bypass the gateway (the monolith's own jobs, a manual SQL fix, another endpoint)
reach the read model through this process: it reads MariaDB's row-based binlog as a replica
and appends a hint per changed message or cursor row to the hints topic.

Durability: the hints of whole committed transactions and the binlog position after them are
written in ONE Kafka transaction (the position to a compacted checkpoint topic). After a crash
the process resumes from the last committed checkpoint: hints are neither lost nor, as
read_committed consumers see them, duplicated. The producer's transactional id is the
source's identity: a second copy started for the same monolith fences the first, which stops.

On its first start there is no checkpoint: it begins at the binlog's current end and writes
that as its first checkpoint. History before it is the backfill's job.

MariaDB down or the stream cut: back off and resume from the last checkpoint. Kafka down: the
transaction is aborted and the same binlog range is read again after a backoff. Either down at
start: the same backoff, with the ops endpoint up and unhealthy meanwhile. A position no
longer on the server (binlogs purged while we were away) or a server that does not log full
row images stops the process with what to do: changes may have been missed, which only a
repair can make good, and we never skip them in silence.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced
from prometheus_client import Counter, Gauge
from tenacity import RetryError

from legacy_adapters.adapters.mariadb.binlog_reader import (
    BinlogReader,
    check_logging,
    current_position,
)
from legacy_adapters.domain.binlog_rows import BinlogBatch, BinlogPosition
from legacy_adapters.errors import BinlogMisconfigured, BinlogUnavailable
from legacy_adapters.settings import LegacySettings
from newcore.adapters.kafka.checkpoints import ensure_checkpoint_topic, last_checkpoint
from newcore.adapters.kafka.event_log import ensure_topic, send_batched
from newcore.adapters.kafka.group import stop_quietly, transact, within
from newcore.adapters.ops import configure_logging, serve_ops
from newcore.domain.dead_letters import DeadLetter
from newcore.domain.hints import MessageHint
from newcore.domain.partitioning import partition_for
from newcore.ports import EventLogMisconfigured, EventLogUnavailable
from newcore.service.worker import retrying
from newcore.wire.hints import encode_hint

ROWS = Counter("chat_binlog_rows_total", "Row images read from the binlog (watched tables)")
HINTS = Counter("chat_binlog_hints_total", "Hints appended (committed), by kind", ["kind"])
DEAD = Counter("chat_binlog_dead_letters_total", "Binlog rows or statements that gave no hint")
TRANSACTIONS = Counter(
    "chat_binlog_transactions_total", "Kafka transactions, by outcome", ["outcome"]
)
BEHIND = Gauge(
    "chat_binlog_seconds_behind",
    "Now minus the server time of the last binlog event turned into hints (0 when idle)",
)
POSITION = Gauge("chat_binlog_checkpoint_offset", "Offset in the binlog file of the checkpoint")
FILE = Gauge("chat_binlog_checkpoint_file", "Number of the binlog file of the checkpoint")
UNAVAILABLE = Counter(
    "chat_binlog_unavailable_total",
    "Rewinds to the checkpoint after a failure, by cause",
    ["cause"],
)

EXIT_MISCONFIGURED, EXIT_FENCED = 3, 5


class Stopped(Exception):
    """The source cannot go on; `code` is the exit status, the message says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class BinlogSource:
    def __init__(self, settings: LegacySettings) -> None:
        self._settings = settings.binlog
        self._topics = settings.topics
        self._kafka = settings.kafka
        self._database = settings.database
        self._log = configure_logging("binlog-source")
        self._stopping = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._checkpoint: BinlogPosition | None = None
        self._problem: str | None = "starting"
        self._topics_ready = False
        self.exit_code = 0

    def stop(self) -> None:
        self._stopping.set()

    def health(self) -> dict[str, Any]:
        return {
            "ok": self._problem is None,
            "problem": self._problem,
            "checkpoint": str(self._checkpoint) if self._checkpoint else None,
        }

    async def run(self) -> None:
        s = self._settings
        ops = await serve_ops(s.ops_host, s.ops_port, self.health)
        try:
            await self._run()
        except Stopped as stopped:
            self.exit_code = stopped.code
            self._log.error("binlog source stopped", extra={"reason": str(stopped)})
        finally:
            if self._producer is not None:
                await self._producer.stop()
            ops.close()
            self._log.info("binlog source stopped")

    async def _run(self) -> None:
        s = self._settings
        try:
            async for attempt in retrying(
                s.backoff_ms, s.max_backoff_ms, self._stopping, self._rewinding,
                retry_on=(BinlogUnavailable, KafkaError, EventLogUnavailable),
            ):  # fmt: skip
                with attempt:
                    await self._stream()
        except RetryError:
            return  # told to stop while waiting

    async def _stream(self) -> None:
        """Reads the binlog from the last committed checkpoint until told to stop; raises when
        MariaDB or Kafka fails (the caller backs off, then this starts again from the
        checkpoint, which the failed transaction did not move)."""
        s = self._settings
        reader: BinlogReader | None = None
        try:
            start = await self._start_position()
            reader = BinlogReader(self._database, start, s.server_id)
            self._log.info("reading the binlog", extra={"from": str(start)})
            while not self._stopping.is_set():
                batch = await asyncio.to_thread(reader.read, s.max_hints, s.max_wait_ms / 1000)
                await self._append(batch)
                self._problem = None
        except (BinlogMisconfigured, EventLogMisconfigured) as exc:
            raise Stopped(EXIT_MISCONFIGURED, str(exc)) from exc
        except ProducerFenced as exc:
            raise Stopped(
                EXIT_FENCED,
                f"another binlog source with transactional id {s.transactional_id} took over",
            ) from exc
        except (KafkaError, EventLogUnavailable):
            await self._drop_producer()
            raise
        finally:
            if reader is not None:
                reader.close()

    def _rewinding(self, error: BaseException, wait_ms: int) -> None:
        """Told before each wait: this process is no consumer-group member, so waiting costs
        no membership; the stream then resumes from the last committed checkpoint."""
        cause = "monolith" if isinstance(error, BinlogUnavailable) else "kafka"
        reason = str(error) if cause == "monolith" else repr(error)
        self._problem = f"{cause} unavailable: {reason}"
        UNAVAILABLE.labels(cause=cause).inc()
        self._log.warning(
            "rewinding to the checkpoint after a failure",
            extra={"cause": cause, "reason": reason, "backoff_ms": wait_ms,
                   "checkpoint": str(self._checkpoint)},
        )  # fmt: skip

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._kafka.bootstrap,
                transactional_id=self._settings.transactional_id,
                request_timeout_ms=self._kafka.request_timeout_ms, linger_ms=5,
            )  # fmt: skip
            try:  # fences any other copy of this source
                await within(self._settings.transaction_timeout_ms / 1000, producer.start(),
                             "starting the producer")  # fmt: skip
            except BaseException:
                await stop_quietly(producer)
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await stop_quietly(producer)

    async def _start_position(self) -> BinlogPosition:
        """The last committed checkpoint, or (first start) the binlog's current end, written
        as the first checkpoint so that a restart before any write starts there too."""
        await asyncio.to_thread(check_logging, self._database)
        if not self._topics_ready:
            t = self._topics
            await ensure_topic(self._kafka, t.hints, t.partitions)
            await ensure_topic(self._kafka, t.dead_letters, t.partitions)
            await ensure_checkpoint_topic(self._kafka, self._settings.checkpoint_topic)
            self._topics_ready = True
        await self._ensure_producer()  # fenced the others first: their last commit is settled
        key = self._settings.transactional_id.encode()
        raw = await within(
            self._settings.transaction_timeout_ms / 1000,
            last_checkpoint(self._kafka, self._settings.checkpoint_topic, key),
            "reading the checkpoint",
        )
        if raw is not None:
            try:
                position = BinlogPosition.decode(raw)
            except ValueError as exc:
                raise BinlogMisconfigured(f"unreadable checkpoint: {exc}") from exc
        else:
            position = await asyncio.to_thread(current_position, self._database)
            await self._append(BinlogBatch(position=position))
            self._log.info(
                "first start: from the binlog's current end", extra={"at": str(position)}
            )
        self._checkpoint = position
        return position

    async def _append(self, batch: BinlogBatch) -> None:
        """The batch's hints, its dead letters and the checkpoint after it: one transaction."""
        if batch.position is None:
            BEHIND.set(0)
            return
        s, t = self._settings, self._topics
        producer = await self._ensure_producer()
        position = batch.position

        async def body() -> None:
            sent = await send_batched(
                producer,
                t.hints,
                (
                    (
                        partition_for(hint.room_id, t.partitions),
                        hint.room_id.to_bytes(8, "big"),
                        encode_hint(hint),
                    )
                    for hint in batch.hints
                ),
            )
            letters = [
                DeadLetter(
                    f"binlog:{problem.table}", 0, f"at {problem.position}: {problem.reason}"
                ).encode()
                for problem in batch.problems
            ]
            sent += await send_batched(
                producer, t.dead_letters, ((0, None, letter) for letter in letters)
            )
            sent.append(
                await producer.send(
                    s.checkpoint_topic, position.encode(),
                    key=s.transactional_id.encode(), partition=0,
                )
            )  # fmt: skip
            await asyncio.gather(*sent)

        try:
            await transact(producer, body, s.transaction_timeout_ms / 1000)
        except (KafkaError, EventLogUnavailable):
            TRANSACTIONS.labels(outcome="aborted").inc()
            raise
        TRANSACTIONS.labels(outcome="committed").inc()
        ROWS.inc(batch.rows)
        for hint in batch.hints:
            HINTS.labels(kind="message" if isinstance(hint, MessageHint) else "cursor").inc()
        DEAD.inc(len(batch.problems))
        for problem in batch.problems:
            self._log.warning(
                "binlog dead letter",
                extra={"table": problem.table, "at": problem.position, "reason": problem.reason},
            )
        self._checkpoint = batch.position
        POSITION.set(batch.position.pos)
        FILE.set(int(batch.position.file.rsplit(".", 1)[-1]) if "." in batch.position.file else 0)
        BEHIND.set(max(0.0, time.time() - batch.last_event_at) if batch.last_event_at else 0)
