"""The CheckpointedLog port on the embedded topics: the appends and the checkpoint in one
redo-journal transaction (`FileTopics`). The identity is an epoch counter: `start` takes a new
epoch, and a writer whose epoch is no longer the latest is fenced at its next append (a second
copy in the same process, sharing the `FileTopics`, takes over, as on Kafka). The embedded
topics belong to one process: a second process on the same directory is not supported."""

from __future__ import annotations

from collections.abc import Sequence

from newcore.adapters.embedded.file_topics import FileTopics
from newcore.errors import EventLogFenced, EventLogUnavailable
from newcore.ports import Append


class FileCheckpointedLog:
    def __init__(self, topics: FileTopics, identity: str) -> None:
        self._topics = topics
        self._identity = identity
        self._epoch: int | None = None

    async def start(self) -> bytes | None:
        try:
            self._epoch = self._topics.take(self._identity)
            return self._topics.checkpoint(self._identity)
        except OSError as exc:
            raise EventLogUnavailable(f"embedded checkpoints: {exc}") from exc

    async def append(self, appends: Sequence[Append], checkpoint: bytes) -> None:
        if self._epoch is None:
            raise EventLogUnavailable("not started: start first")
        if self._topics.epoch(self._identity) != self._epoch:
            raise EventLogFenced(f"another source with identity {self._identity} took over")
        await self._topics.transact(appends, checkpoint=(self._identity, checkpoint))

    async def close(self) -> None:
        self._epoch = None
