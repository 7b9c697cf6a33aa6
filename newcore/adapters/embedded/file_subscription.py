"""The workers' subscription on the embedded event log: the group's only member, owning every
partition, with transactions (`FileTopics`) for the capture worker.

It keeps the Kafka subscription's rules (the port's contract): a partition's batch starts
where its previous one ended, `put_back` rewinds it and pauses it for a backoff that doubles up
to a bound, `commit` and `transact` are durable when they return. There is no other member, so
nothing is ever fenced or revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from newcore.adapters.embedded.file_topics import FileTopics
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
        self._positions: dict[int, int] = {}
        self._paused: dict[int, float] = {}  # partition -> when it may be read again
        self._backoffs: dict[int, int] = {}  # partition -> its current backoff (ms)

    async def start(self) -> None:
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
            await asyncio.sleep(min(0.01, max(0.0, deadline - loop.time())))
        yield batches

    def _read(self, max_records: int, now: float) -> list[Batch]:
        batches: list[Batch] = []
        left = max_records
        for partition, position in self._positions.items():
            if left <= 0:
                break
            if self._paused.get(partition, 0.0) > now:
                continue
            self._paused.pop(partition, None)
            end = self._log.end(partition)
            if position >= end:
                continue
            records = self._log.read_now(partition, position, left)
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

    async def commit(self, positions: Mapping[int, int]) -> None:
        await self._log.commit(self._group, positions)

    async def transact(self, partition: int, appends: Sequence[Append], next_position: int) -> None:
        await self._topics.transact(
            appends, commit=(self._topic, self._group, partition, next_position)
        )

    async def lag(self) -> dict[int, int]:
        return {p: self._log.end(p) - position for p, position in self._positions.items()}

    def health(self) -> dict[str, Any]:
        return {"ok": True, "event_log": "embedded", "paused_partitions": sorted(self._paused)}

    async def close(self) -> None:
        return None
