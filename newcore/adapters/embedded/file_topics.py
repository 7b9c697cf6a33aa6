"""The embedded event log's topics under one directory, with transactions across them: what
Kafka's transactions give the capture worker (outputs and consumed position, all or nothing),
for unit tests and small installs.

A transaction is a redo log: its records and its commit are first written to one journal file
(written aside, fsync'ed, then renamed into place: the rename is the commit point), then
applied to the topics' files and the group's offsets, then the journal is removed. Opening the
topics again after a crash (kill -9, power loss) redoes a journal that was committed: each
target partition is cut back to the length the journal recorded before the transaction and
the records appended again, so the result is the same bytes at the same positions whether or
not the first application got through. A journal that was not renamed into place never
happened. Every rename and the removal of the journal are made durable (the directory is
fsync'ed) before a transaction returns: a redo after a power loss never cuts records appended
after the transaction. A failure after the commit point (a full disk while applying) leaves the
instance refusing every call until the topics are opened again, which completes the
transaction. One process owns the directory (the embedded log has a single consumer).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from newcore.adapters.embedded.file_event_log import FileEventLog, sync_directory
from newcore.domain.partitioning import partition_for
from newcore.errors import EventLogUnavailable
from newcore.ports import Append

_JOURNAL = "transaction.journal"
_IDENTITY = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class FileTopics:
    def __init__(self, root: Path, partitions: int) -> None:
        self._root = root
        self._partitions = partitions
        self._logs: dict[str, FileEventLog] = {}
        self._broken: str | None = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            (root / f"{_JOURNAL}.tmp").unlink(missing_ok=True)  # never committed
            journal = root / _JOURNAL
            if journal.exists():
                self._apply(json.loads(journal.read_bytes()))
                journal.unlink()
        except OSError as exc:
            raise EventLogUnavailable(f"embedded log at {root}: {exc}") from exc

    @property
    def partitions(self) -> int:
        return self._partitions

    def log(self, topic: str) -> FileEventLog:
        """The topic's log (one instance per topic, shared by every reader and writer)."""
        self._usable()
        if topic not in self._logs:
            self._logs[topic] = FileEventLog(self._root / topic, self._partitions)
        return self._logs[topic]

    async def transact(
        self,
        appends: Sequence[Append],
        commit: tuple[str, str, int, int] | None = None,
        checkpoint: tuple[str, bytes] | None = None,
    ) -> None:
        """Appends `appends`, commits `commit` (topic, group, partition, next position) and
        writes `checkpoint` (identity, value), all or nothing (see the module docstring)."""
        self._usable()
        starts: dict[str, dict[str, int]] = {}
        for append in appends:
            home = partition_for(append.room_id, self._partitions)
            starts.setdefault(append.topic, {}).setdefault(
                str(home), self.log(append.topic).end(home)
            )
        journal: dict[str, Any] = {
            "starts": starts,
            "records": [
                [a.topic, str(a.room_id), base64.b64encode(a.value).decode("ascii")]
                for a in appends
            ],
            "commit": list(commit) if commit else None,
            "checkpoint": (
                [checkpoint[0], base64.b64encode(checkpoint[1]).decode("ascii")]
                if checkpoint
                else None
            ),
        }
        try:
            aside = self._root / f"{_JOURNAL}.tmp"
            with aside.open("wb") as file:
                file.write(json.dumps(journal).encode())
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:  # before the commit point: nothing happened
            raise EventLogUnavailable(f"embedded log at {self._root}: {exc}") from exc
        try:
            aside.replace(self._root / _JOURNAL)  # the commit point
            sync_directory(self._root)
            self._apply(journal)
            (self._root / _JOURNAL).unlink()
            sync_directory(self._root)
        except OSError as exc:
            self._broken = f"a transaction failed after its commit point ({exc}): open it again"
            raise EventLogUnavailable(f"embedded log at {self._root}: {self._broken}") from exc
        for name in starts:
            await self.log(name).wake_readers()

    def _apply(self, journal: dict[str, Any]) -> None:
        self._cut(journal)
        by_topic: dict[str, list[tuple[int, bytes]]] = {}
        for topic, room, value in journal["records"]:
            by_topic.setdefault(topic, []).append((int(room), base64.b64decode(value)))
        for topic, records in by_topic.items():
            self.log(topic).write(records)
        if journal["commit"]:
            topic, group, partition, position = journal["commit"]
            self.log(topic).commit_now(group, {int(partition): int(position)})
        if journal["checkpoint"]:
            identity, value = journal["checkpoint"]
            self._write_aside(self._checkpoint_path(identity), base64.b64decode(value))

    def checkpoint(self, identity: str) -> bytes | None:
        """The last checkpoint written for `identity`, or None."""
        path = self._checkpoint_path(identity)
        return path.read_bytes() if path.exists() else None

    def take(self, identity: str) -> int:
        """A new epoch for `identity` (durable): writers of older epochs are fenced."""
        epoch = self.epoch(identity) + 1
        self._write_aside(self._checkpoint_path(identity).with_suffix(".epoch"), b"%d" % epoch)
        return epoch

    def epoch(self, identity: str) -> int:
        path = self._checkpoint_path(identity).with_suffix(".epoch")
        return int(path.read_bytes()) if path.exists() else 0

    def _checkpoint_path(self, identity: str) -> Path:
        if not _IDENTITY.match(identity):
            raise ValueError(f"identity {identity!r}: use letters, digits, '_', '.', '-'")
        folder = self._root / "checkpoints"
        folder.mkdir(exist_ok=True)
        return folder / f"{identity}.checkpoint"

    def _write_aside(self, path: Path, data: bytes) -> None:
        aside = path.with_name(path.name + ".tmp")
        with aside.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        aside.replace(path)
        sync_directory(path.parent)

    def _cut(self, journal: dict[str, Any]) -> None:
        for topic, starts in journal["starts"].items():
            for partition, end in starts.items():
                self.log(topic).cut_to(int(partition), int(end))

    def _usable(self) -> None:
        if self._broken is not None:
            raise EventLogUnavailable(f"embedded log at {self._root}: {self._broken}")
