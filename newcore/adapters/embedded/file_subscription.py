"""The workers' subscription on the embedded event log: a group's one member, owning every
partition, with transactions (`FileTopics`) for the capture worker.

It keeps the Kafka subscription's rules (the port's contract): a partition's batch starts
where its previous one ended, `put_back` rewinds it and pauses it for a backoff that doubles up
to a bound, `commit` and `transact` are durable when they return.

Processes: the member reads what any process appended (the log looks at its files again when it
runs out; a waiting poll looks every few milliseconds). A group has one member at a time: `start`
takes the group's membership of the topic (a new epoch, `FileTopics.join`), and an earlier member
(a second copy of the worker, in this process or another) is fenced: its next `transact` raises
EventLogFenced, its next `commit` EventLogUnavailable (nothing committed), and from then on it
polls nothing and its health says so, as a Kafka member whose partitions went to another. It
never fences the new member back: only a new `start` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from newcore.adapters.embedded.file_event_log import POLL_S
from newcore.adapters.embedded.file_topics import FileTopics, Lease
from newcore.errors import EventLogFenced, EventLogUnavailable
from newcore.ports import Append, Batch


class FileSubscription:
    def __init__(
        self,
        topics: FileTopics,
        topic: str,
        group: str,
        *,
        backoff_ms: int = 500,
        max_backoff_ms: int = 2000,
    ) -> None:
        self._topics = topics
        self._topic = topic
        self._log = topics.log(topic)
        self._group = group
        self._backoff_ms = backoff_ms
        self._max_backoff_ms = max_backoff_ms
        self._lease: Lease | None = None
        self._fenced = False
        self._positions: dict[int, int] = {}
        self._paused: dict[int, float] = {}  # partition -> when it may be read again
        self._backoffs: dict[int, int] = {}  # partition -> its current backoff (ms)

    async def start(self) -> None:
        self._lease = await asyncio.to_thread(self._topics.join, self._topic, self._group)
        self._fenced = False
        self._positions = {
            p: await self._log.committed(self._group, p) for p in range(self._log.partitions)
        }

    @contextlib.asynccontextmanager
    async def poll(self, max_records: int, timeout_ms: int) -> AsyncIterator[list[Batch]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            batches = self._read(max_records, loop.time())
            if batches or loop.time() >= deadline:
                break
            await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))
        yield batches

    def _read(self, max_records: int, now: float) -> list[Batch]:
        if self._fenced:
            return []
        batches: list[Batch] = []
        left = max_records
        ends = self._log.ends()
        for partition, position in self._positions.items():
            if left <= 0:
                break
            if self._paused.get(partition, 0.0) > now:
                continue
            self._paused.pop(partition, None)
            if position >= ends[partition]:
                continue
            records = self._log.read_now(partition, position, left)
            if not records:
                continue
            self._positions[partition] = records[-1].position + 1
            left -= len(records)
            batches.append(Batch(partition, records))
        return batches

    def put_back(self, partition: int, position: int) -> int:
        backoff = min(
            self._backoffs.get(partition, self._backoff_ms // 2) * 2, self._max_backoff_ms
        )
        self._backoffs[partition] = backoff
        self._positions[partition] = position
        self._paused[partition] = asyncio.get_running_loop().time() + backoff / 1000
        return backoff

    def succeeded(self, partition: int, next_position: int) -> None:
        self._backoffs.pop(partition, None)
        self._positions[partition] = next_position

    def _member(self) -> Lease:
        if self._lease is None:
            raise EventLogUnavailable("not a member of the group: start first")
        return self._lease

    async def commit(self, positions: Mapping[int, int]) -> None:
        try:
            await self._topics.commit(self._topic, self._group, positions, self._member())
        except EventLogFenced as exc:
            self._fenced = True
            raise EventLogUnavailable(f"nothing committed: {exc}") from exc

    async def transact(self, partition: int, appends: Sequence[Append], next_position: int) -> None:
        try:
            await self._topics.transact(
                appends, commit=(self._topic, self._group, partition, next_position),
                lease=self._member(),
            )  # fmt: skip
        except EventLogFenced:
            self._fenced = True
            raise

    async def lag(self) -> dict[int, int]:
        if self._fenced:
            return {}
        ends = self._log.ends()
        return {p: ends[p] - position for p, position in self._positions.items()}

    def health(self) -> dict[str, Any]:
        return {
            "ok": not self._fenced,
            "event_log": "embedded",
            "paused_partitions": sorted(self._paused),
            "fenced_partitions": sorted(self._positions) if self._fenced else [],
        }

    async def close(self) -> None:
        return None
