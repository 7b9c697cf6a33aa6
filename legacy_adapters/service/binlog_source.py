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

The policy, decided here (the adapters only translate their drivers' errors): MariaDB down or
the stream cut, or the event log down: back off (jittered, bounded) and resume from the last
committed checkpoint, which a failed transaction did not move; the same binlog range is read
again. Either down at
start: the same backoff, with the ops endpoint up and unhealthy meanwhile. A position no
longer on the server (binlogs purged while we were away) or a server that does not log full
row images stops the process with what to do (exit 3): changes may have been missed, which
only a repair can make good, and we never skip them in silence. Fenced by another copy: exit 5.

Its ports: the monolith's binlog (`legacy_adapters/ports.py` `Binlog`, on MariaDB:
`adapters/mariadb/binlog_reader.py`) and a checkpointed log (`newcore/ports.py`
`CheckpointedLog`, on Kafka: `newcore/adapters/kafka/checkpoints.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from prometheus_client import Counter, Gauge
from tenacity import RetryError

from legacy_adapters.domain.binlog_rows import BinlogBatch, BinlogPosition
from legacy_adapters.errors import BinlogMisconfigured, BinlogUnavailable
from legacy_adapters.ports import Binlog, BinlogStream
from legacy_adapters.settings import BinlogSourceSettings
from newcore.domain.dead_letters import DeadLetter
from newcore.domain.hints import MessageHint
from newcore.errors import EventLogFenced, EventLogMisconfigured, EventLogUnavailable
from newcore.ports import Append, CheckpointedLog
from newcore.service.worker import retrying
from newcore.settings import TopicSettings
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
    def __init__(
        self,
        binlog: Binlog,
        output: CheckpointedLog,
        topics: TopicSettings,
        settings: BinlogSourceSettings,
        log: logging.Logger,
    ) -> None:
        self._binlog = binlog
        self._output = output
        self._topics = topics
        self._settings = settings
        self._log = log
        self._stopping = asyncio.Event()
        self._checkpoint: BinlogPosition | None = None
        self._problem: str | None = "starting"
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
        try:
            await self._run()
        except Stopped as stopped:
            self.exit_code = stopped.code
            self._log.error("binlog source stopped", extra={"reason": str(stopped)})
        finally:
            await self._output.close()
            self._log.info("binlog source stopped")

    async def _run(self) -> None:
        s = self._settings
        try:
            async for attempt in retrying(
                s.backoff_ms, s.max_backoff_ms, self._stopping, self._rewinding,
                retry_on=(BinlogUnavailable, EventLogUnavailable),
            ):  # fmt: skip
                with attempt:
                    if self._stopping.is_set():  # told during the wait
                        return
                    await self._stream()
        except RetryError:
            return  # told to stop while waiting

    async def _stream(self) -> None:
        """Reads the binlog from the last committed checkpoint until told to stop; raises when
        MariaDB or the event log fails (the caller backs off, then this starts again from the
        checkpoint, which the failed transaction did not move)."""
        s = self._settings
        stream: BinlogStream | None = None
        try:
            start = await self._start_position()
            stream = self._binlog.stream(start)
            self._log.info("reading the binlog", extra={"from": str(start)})
            while not self._stopping.is_set():
                batch = await asyncio.to_thread(stream.read, s.max_hints, s.max_wait_ms / 1000)
                await self._append(batch)
                self._problem = None
        except (BinlogMisconfigured, EventLogMisconfigured) as exc:
            raise Stopped(EXIT_MISCONFIGURED, str(exc)) from exc
        except EventLogFenced as exc:
            raise Stopped(EXIT_FENCED, str(exc)) from exc
        finally:
            if stream is not None:
                stream.close()

    def _rewinding(self, error: BaseException, wait_ms: int) -> None:
        """Told before each wait: this process is no consumer-group member, so waiting costs
        no membership; the stream then resumes from the last committed checkpoint."""
        cause = "monolith" if isinstance(error, BinlogUnavailable) else "kafka"
        self._problem = f"{cause} unavailable: {error}"
        UNAVAILABLE.labels(cause=cause).inc()
        self._log.warning(
            "rewinding to the checkpoint after a failure",
            extra={"cause": cause, "reason": str(error), "backoff_ms": wait_ms,
                   "checkpoint": str(self._checkpoint)},
        )  # fmt: skip

    async def _start_position(self) -> BinlogPosition:
        """The last committed checkpoint, or (first start) the binlog's current end, written
        as the first checkpoint so that a restart before any write starts there too. Taking
        the output fences any other copy first, so its last commit is settled."""
        await asyncio.to_thread(self._binlog.check)
        raw = await self._output.start()
        if raw is not None:
            try:
                position = BinlogPosition.decode(raw)
            except ValueError as exc:
                raise BinlogMisconfigured(f"unreadable checkpoint: {exc}") from exc
        else:
            position = await asyncio.to_thread(self._binlog.end)
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
        t = self._topics
        letters = [
            DeadLetter(f"binlog:{problem.table}", 0, f"at {problem.position}: {problem.reason}")
            for problem in batch.problems
        ]
        appends = [Append(t.hints, hint.room_id, encode_hint(hint)) for hint in batch.hints]
        appends += [Append(t.dead_letters, 0, letter.encode()) for letter in letters]
        try:
            await self._output.append(appends, batch.position.encode())
        except EventLogUnavailable:
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
