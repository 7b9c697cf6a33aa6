"""The CheckpointedLog port on the embedded topics: the appends and the checkpoint in one
redo-journal transaction (`FileTopics`), so that after any crash (kill -9 included) the last
checkpoint and the appends readers see agree.

The identity is exclusive, in this process and across processes sharing the directory: `start`
takes a new epoch for it (`FileTopics.take`, under the topics' lock; a transaction a dead copy
committed is completed first), and a writer whose epoch is no longer the latest is fenced at its
next append (EventLogFenced, checked under the lock, so never after the new copy started), as a
second producer with the same transactional id fences the first on Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from newcore.adapters.embedded.file_topics import FileTopics, Lease
from newcore.errors import EventLogUnavailable
from newcore.ports import Append


class FileCheckpointedLog:
    def __init__(self, topics: FileTopics, identity: str) -> None:
        self._topics = topics
        self._identity = identity
        self._lease: Lease | None = None

    async def start(self) -> bytes | None:
        self._lease = await asyncio.to_thread(self._topics.take, self._identity)
        return await asyncio.to_thread(self._topics.checkpoint, self._identity)

    async def append(self, appends: Sequence[Append], checkpoint: bytes) -> None:
        if self._lease is None:
            raise EventLogUnavailable("not started: start first")
        await self._topics.transact(
            appends, checkpoint=(self._identity, checkpoint), lease=self._lease
        )

    async def close(self) -> None:
        self._lease = None
