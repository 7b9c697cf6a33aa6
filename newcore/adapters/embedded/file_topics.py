"""The embedded event log's topics under one directory, with transactions across them: what
Kafka's transactions give the capture worker and the binlog source (outputs and the consumed
position or the source's checkpoint, all or nothing), for unit tests and small installs. The
pipeline's processes share one such directory (`MIG_ENGINE=embedded`).

One lock for the whole directory (`DirectoryLock` on `topics.lock`): every append to any of its
topics, every commit and every transaction holds it exclusively, every read shared. So a
transaction and another process's plain append never interleave, and a reader never sees part
of a transaction: its records, its commit and its checkpoint show at once.

A transaction is a redo log: its records and its commit are first written to one journal file
(written aside, fsync'ed, then renamed into place: the rename is the commit point), then
applied to the topics' files and the group's offsets, then the journal is removed. A writer
killed after the commit point leaves the journal; whoever takes the lock next (a writer, or a
reader, which then takes it exclusively) redoes it before anything else: each target partition
is cut back to the length the journal recorded before the transaction and the records appended
again, so the result is the same bytes at the same positions whether or not the first
application got through (a reader that saw some of them sees the same records again). Holding
the lock proves the writer is gone: a live writer is never redone under its feet. A journal that
was not renamed into place never happened. Every rename and the removal of the journal are made
durable (the directory is fsync'ed) before a transaction returns: a redo after a power loss
never cuts records appended after the transaction. A failure after the commit point (a full
disk while applying) leaves the instance refusing every call until the topics are opened
again; the next holder of the lock (this process or another) completes the transaction.

Owners are fenced by epochs, as Kafka fences producers and group members: a source's identity
(`take`) and a group's membership of a topic (`join`) each get a new epoch when taken, and a
transaction or commit made under an older epoch is refused (`EventLogFenced`) under the lock, so
a second copy of a process (or a restarted one) takes over and the first can never write again.

`topics.json` at the root holds the partition count: a process configured with another one is
refused (`EventLogMisconfigured`), as Kafka refuses a topic with another partition count.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newcore.adapters.embedded.file_event_log import (
    TOPICS_MARKER,
    FileEventLog,
    sync_directory,
    write_aside,
)
from newcore.adapters.embedded.file_lock import DirectoryLock
from newcore.domain.partitioning import partition_for
from newcore.errors import EventLogFenced, EventLogMisconfigured, EventLogUnavailable
from newcore.ports import Append

_JOURNAL = "transaction.journal"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_RESERVED = {".", "..", "checkpoints"}


@dataclass(frozen=True, slots=True)
class Lease:
    """An owner's hold on a name: the epoch it took. Taking the name again fences it."""

    file: Path
    epoch: int
    what: str  # for messages: "source X", "member of group G on topic T"


class FileTopics:
    def __init__(self, root: Path, partitions: int) -> None:
        """Nothing is opened until first use (then: the partition count checked, and what a
        dead writer left finished)."""
        if partitions < 1:
            raise ValueError("topics need at least one partition")
        self._root = root
        self._partitions = partitions
        self._logs: dict[str, FileEventLog] = {}
        self._broken: str | None = None
        self._checked = False
        self._journal = os.fspath(root / _JOURNAL)  # looked for at every lock taken: made once
        self._lock = DirectoryLock(root / "topics.lock", self._unsettled, self._settle)

    @property
    def partitions(self) -> int:
        return self._partitions

    @property
    def root(self) -> Path:
        return self._root

    def _unavailable(self, exc: OSError) -> EventLogUnavailable:
        return EventLogUnavailable(f"embedded log at {self._root}: {exc}")

    def log(self, topic: str) -> FileEventLog:
        """The topic's log (one instance per topic and per `FileTopics`, sharing its lock)."""
        self._usable()
        if not _NAME.match(topic) or topic in _RESERVED:
            raise ValueError(f"topic {topic!r}: use letters, digits, '_', '.', '-'")
        if topic not in self._logs:
            self._logs[topic] = FileEventLog(self._root / topic, self._partitions, lock=self._lock)
        return self._logs[topic]

    # -- what a dead writer left, finished by the next holder of the lock --------------------

    def _unsettled(self) -> bool:
        return not self._checked or os.path.exists(self._journal)

    def _settle(self) -> None:
        """Under the exclusive lock: the partition count checked (or recorded), then a
        committed journal redone and removed."""
        if not self._checked:
            marker = self._root / TOPICS_MARKER
            if marker.exists():
                try:
                    found = json.loads(marker.read_bytes())["partitions"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise EventLogMisconfigured(f"unreadable {marker}: {exc}") from exc
                if found != self._partitions:
                    raise EventLogMisconfigured(
                        f"embedded topics at {self._root} have {found} partitions, the settings "
                        f"say {self._partitions} (MIG_TOPIC_PARTITIONS): a room would change "
                        "partition. Use the same count everywhere, or another MIG_EMBEDDED_DIR"
                    )
            else:
                write_aside(marker, json.dumps({"partitions": self._partitions}).encode())
            self._checked = True
        (self._root / f"{_JOURNAL}.tmp").unlink(missing_ok=True)  # never committed
        journal = self._root / _JOURNAL
        if journal.exists():
            try:
                content = json.loads(journal.read_bytes())
            except ValueError as exc:
                raise EventLogMisconfigured(
                    f"the redo journal {journal} is unreadable ({exc}): a committed "
                    "transaction cannot be completed; an operator must look"
                ) from exc
            self._apply(content)
            journal.unlink()
            sync_directory(self._root)

    # -- transactions -----------------------------------------------------------------------

    async def transact(
        self,
        appends: Sequence[Append],
        commit: tuple[str, str, int, int] | None = None,
        checkpoint: tuple[str, bytes] | None = None,
        lease: Lease | None = None,
    ) -> None:
        """Appends `appends`, commits `commit` (topic, group, partition, next position) and
        writes `checkpoint` (identity, value), all or nothing (see the module docstring).
        `lease`: refused with EventLogFenced when its name was taken again since."""
        # In a thread: waiting for another process's write must not hold up the event loop.
        await asyncio.to_thread(self.transact_now, appends, commit, checkpoint, lease)

    def transact_now(
        self,
        appends: Sequence[Append],
        commit: tuple[str, str, int, int] | None = None,
        checkpoint: tuple[str, bytes] | None = None,
        lease: Lease | None = None,
    ) -> None:
        """`transact` for a caller outside an event loop (blocking)."""
        self._usable()
        for topic in {append.topic for append in appends}:
            self.log(topic)  # a bad topic name is refused before anything is written
        try:
            with self._lock.exclusive():
                self._usable()
                self._hold(lease)
                self._transact_locked(appends, commit, checkpoint)
        except OSError as exc:  # before the commit point: nothing happened
            raise self._unavailable(exc) from exc

    def _transact_locked(
        self,
        appends: Sequence[Append],
        commit: tuple[str, str, int, int] | None,
        checkpoint: tuple[str, bytes] | None,
    ) -> None:
        starts: dict[str, dict[str, int]] = {}
        for append in appends:
            home = partition_for(append.room_id, self._partitions)
            topic = starts.setdefault(append.topic, {})
            if str(home) not in topic:
                topic[str(home)] = self.log(append.topic).end(home)
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
        aside = self._root / f"{_JOURNAL}.tmp"
        with aside.open("wb") as file:
            file.write(json.dumps(journal).encode())
            file.flush()
            os.fsync(file.fileno())
        try:
            aside.replace(self._root / _JOURNAL)  # the commit point
            sync_directory(self._root)
            self._apply(journal)
            (self._root / _JOURNAL).unlink()
            sync_directory(self._root)
        except OSError as exc:
            self._broken = f"a transaction failed after its commit point ({exc}): open it again"
            raise EventLogUnavailable(f"embedded log at {self._root}: {self._broken}") from exc

    def _apply(self, journal: dict[str, Any]) -> None:
        for topic, starts in journal["starts"].items():
            for partition, end in starts.items():
                self.log(topic).cut_to(int(partition), int(end))
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
            path = self._checkpoint_path(identity)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_aside(path, base64.b64decode(value))

    # -- consumer groups --------------------------------------------------------------------

    async def commit(
        self, topic: str, group: str, positions: Mapping[int, int], lease: Lease | None = None
    ) -> None:
        """Commits `positions` for `group` on `topic` (durable when it returns); refused with
        EventLogFenced when `lease` was taken again since."""
        await asyncio.to_thread(self._commit_now, topic, group, positions, lease)

    def _commit_now(
        self, topic: str, group: str, positions: Mapping[int, int], lease: Lease | None
    ) -> None:
        self._usable()
        log = self.log(topic)
        try:
            with self._lock.exclusive():
                self._hold(lease)
                log.commit_now(group, positions)
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def join(self, topic: str, group: str) -> Lease:
        """Makes the caller `group`'s member on `topic`, fencing any earlier member."""
        self.log(topic)
        if not _NAME.match(group):
            raise ValueError(f"consumer group {group!r}: use letters, digits, '_', '.', '-'")
        return self._take(
            self._root / topic / "members" / f"{group}.epoch",
            f"member of group {group} on topic {topic}",
        )

    # -- sources' checkpoints ---------------------------------------------------------------

    def checkpoint(self, identity: str) -> bytes | None:
        """The last checkpoint written for `identity`, or None."""
        path = self._checkpoint_path(identity)
        try:
            with self._lock.shared():  # a dead writer's transaction is finished first
                return path.read_bytes() if path.exists() else None
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def take(self, identity: str) -> Lease:
        """A new epoch for the source `identity` (durable): writers of older epochs are fenced."""
        return self._take(
            self._checkpoint_path(identity).with_suffix(".epoch"), f"source {identity}"
        )

    def _checkpoint_path(self, identity: str) -> Path:
        if not _NAME.match(identity):
            raise ValueError(f"identity {identity!r}: use letters, digits, '_', '.', '-'")
        return self._root / "checkpoints" / f"{identity}.checkpoint"

    # -- epochs -----------------------------------------------------------------------------

    def _take(self, file: Path, what: str) -> Lease:
        self._usable()
        try:
            with self._lock.exclusive():
                epoch = self._epoch(file) + 1
                file.parent.mkdir(parents=True, exist_ok=True)
                write_aside(file, b"%d" % epoch)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        return Lease(file, epoch, what)

    def _hold(self, lease: Lease | None) -> None:
        """Under the lock: refuses a lease whose name was taken again since."""
        if lease is not None and self._epoch(lease.file) != lease.epoch:
            raise EventLogFenced(f"another {lease.what} took over (embedded log at {self._root})")

    @staticmethod
    def _epoch(file: Path) -> int:
        try:
            return int(file.read_bytes())
        except FileNotFoundError:
            return 0
        except ValueError as exc:
            raise EventLogMisconfigured(f"unreadable epoch in {file}: {exc}") from exc

    def _usable(self) -> None:
        if self._broken is not None:
            raise EventLogUnavailable(f"embedded log at {self._root}: {self._broken}")
