"""The embedded event log: one append-only file per partition, for unit tests and small installs
(the pipeline's processes on one machine, `MIG_ENGINE=embedded`).

A record is `room_id (8 bytes) | length (4 bytes) | value`; a group's committed positions are one
JSON file per group (`offsets/<group>.json`). What it promises, also when several processes
share the directory:

- **Durable**: `append` and `commit` fsync before they return; a commit replaces the group's
  file at once (written aside, fsync'ed, renamed, the directory fsync'ed): a crash leaves the
  old positions or the new ones, never half.
- **Serialized**: appends and commits hold the directory's lock exclusively (`DirectoryLock`,
  flock): records of concurrent appenders never interleave inside one append, the positions
  `append` returns are the ones `read` shows, and a room's records keep the order of its
  appends. The log of a topic of `FileTopics` uses the topics' lock instead: a transaction
  across topics and a plain append of another process are serialized too.
- **Seen by every process**: each process keeps an index of the records it has seen and reads
  on from the file when it runs out (under the shared lock, so never a record being written).
  A waiting `read` looks again every few milliseconds: another process's append shows within
  about `POLL_S`.
- **Crash-safe**: a record torn by a writer killed in the middle of an append (never
  acknowledged) is never shown, and the next writer cuts it off (under the exclusive lock, so
  never the record of a live writer) before appending. The complete records of an append that
  died half way may stay (the port allows it: appenders tolerate duplicates).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

from newcore.adapters.embedded.file_lock import DirectoryLock
from newcore.domain.partitioning import partition_for
from newcore.errors import EventLogMisconfigured
from newcore.ports import EventLogUnavailable, LogRecord

_HEADER = struct.Struct(">QI")
_GROUP = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
# How often a waiting read looks at the files again (another process's appends).
POLL_S = 0.01
# The marker `FileTopics` writes at its root: a topic's directory is written through its topics.
TOPICS_MARKER = "topics.json"


class FileEventLog:
    def __init__(
        self, directory: Path, partitions: int, *, lock: DirectoryLock | None = None
    ) -> None:
        """`lock`: the lock of the `FileTopics` this log is a topic of; None for a log of its
        own (its lock file in `directory`). Nothing is opened until first use."""
        if partitions < 1:
            raise ValueError("a log needs at least one partition")
        if lock is None and (directory.parent / TOPICS_MARKER).exists():
            raise ValueError(
                f"{directory} is a topic of embedded topics at {directory.parent}: open it "
                "through FileTopics(...).log(topic), which shares their lock"
            )
        self._dir = directory
        self._partitions = partitions
        self._own_lock = lock is None
        self._lock = lock if lock is not None else DirectoryLock(directory / "writer.lock")
        # Per partition, the byte offset of every complete record seen, then where the next
        # one starts: position n is index[n].
        self._index: list[list[int]] = [[0] for _ in range(partitions)]
        # Looked at every few milliseconds by an idle reader: made once.
        self._files = [os.fspath(directory / f"partition-{p}.log") for p in range(partitions)]

    def _path(self, partition: int) -> Path:
        return Path(self._files[partition])

    def _unavailable(self, exc: OSError) -> EventLogUnavailable:
        return EventLogUnavailable(f"embedded log at {self._dir}: {exc}")

    @property
    def partitions(self) -> int:
        return self._partitions

    # -- what the files hold ----------------------------------------------------------------

    def _refresh(self, partition: int) -> None:
        """Indexes the complete records appended since this process last looked (by anyone).
        Under the lock (shared or exclusive): no record is being written."""
        index = self._index[partition]
        try:
            size = os.stat(self._files[partition]).st_size
        except FileNotFoundError:
            size = 0
        if size <= index[-1]:
            return
        with open(self._files[partition], "rb") as file:
            at = index[-1]
            file.seek(at)
            while at + _HEADER.size <= size:
                header = file.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                _, length = _HEADER.unpack(header)
                if at + _HEADER.size + length > size:
                    break  # torn: a writer died in the middle of it
                file.seek(length, os.SEEK_CUR)
                at += _HEADER.size + length
                index.append(at)

    def end(self, partition: int) -> int:
        """The position the next record of the partition gets (how many it holds), as the
        files say now."""
        try:
            with self._lock.shared():
                self._refresh(partition)
                return len(self._index[partition]) - 1
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def ends(self) -> list[int]:
        """`end` of every partition, in one look."""
        try:
            with self._lock.shared():
                for partition in range(self._partitions):
                    self._refresh(partition)
                return [len(index) - 1 for index in self._index]
        except OSError as exc:
            raise self._unavailable(exc) from exc

    # -- writing ----------------------------------------------------------------------------

    def cut_to(self, partition: int, end: int) -> None:
        """Drops the partition's records from position `end` on (durably). Only for redoing a
        transaction that a crash interrupted (`FileTopics`, under its exclusive lock): the
        records dropped are the transaction's own, appended again right after."""
        with self._lock.exclusive():
            self._refresh(partition)
            index = self._index[partition]
            if end > len(index) - 1:
                raise EventLogMisconfigured(
                    f"embedded log at {self._dir}: partition {partition} holds "
                    f"{len(index) - 1} records, a transaction started at {end}: its file was "
                    "changed by something else than this log"
                )
            path = self._path(partition)
            if not path.exists():
                return
            with path.open("r+b") as file:
                file.truncate(index[end])
                file.flush()
                os.fsync(file.fileno())
            del index[end + 1 :]

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        if not records:
            return []
        # In a thread: waiting for another process's write must not hold up the event loop.
        return await asyncio.to_thread(self.write, records)

    def write(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        """`append` for a caller outside an event loop (blocking); each record's position, in
        the order of `records`."""
        if not records:
            return []
        by_partition: dict[int, list[int]] = {}  # partition -> indexes into records
        for at, (room_id, _value) in enumerate(records):
            by_partition.setdefault(partition_for(room_id, self._partitions), []).append(at)
        positions = [0] * len(records)
        try:
            with self._lock.exclusive():
                self._dir.mkdir(parents=True, exist_ok=True)
                for partition, members in by_partition.items():
                    self._refresh(partition)
                    index = self._index[partition]
                    path = self._path(partition)
                    ends: list[int] = []  # the index moves only once the bytes are durable
                    with path.open("ab") as file:
                        if file.tell() > index[-1]:  # a dead writer's torn record
                            file.truncate(index[-1])
                        elif file.tell() < index[-1]:
                            raise EventLogMisconfigured(
                                f"embedded log at {self._dir}: partition {partition} is shorter "
                                "than the records already read from it (changed by hand?)"
                            )
                        for at in members:
                            room_id, value = records[at]
                            file.write(_HEADER.pack(room_id, len(value)) + value)
                            ends.append(
                                (ends[-1] if ends else index[-1]) + _HEADER.size + len(value)
                            )
                        file.flush()
                        os.fsync(file.fileno())
                    first = len(index) - 1  # the position the partition's next record gets
                    for n, at in enumerate(members):
                        positions[at] = first + n
                    index.extend(ends)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        return positions

    # -- reading ----------------------------------------------------------------------------

    async def read(
        self, partition: int, from_position: int, max_records: int, timeout_ms: int
    ) -> list[LogRecord]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            records = self.read_now(partition, from_position, max_records)
            left = deadline - loop.time()
            if records or left <= 0:
                return records
            await asyncio.sleep(min(POLL_S, left))

    def read_now(self, partition: int, from_position: int, max_records: int) -> list[LogRecord]:
        """`read` without waiting: what the partition holds now from `from_position` on."""
        try:
            with self._lock.shared():
                index = self._index[partition]
                if from_position >= len(index) - 1:
                    self._refresh(partition)
                if from_position >= len(index) - 1 or max_records <= 0:
                    return []
                last = min(len(index) - 1, from_position + max_records)
                with self._path(partition).open("rb") as file:
                    file.seek(index[from_position])
                    data = file.read(index[last] - index[from_position])
        except OSError as exc:
            raise self._unavailable(exc) from exc
        records, at = [], 0
        for position in range(from_position, last):
            room_id, length = _HEADER.unpack_from(data, at)
            start = at + _HEADER.size
            records.append(LogRecord(partition, position, room_id, data[start : start + length]))
            at = start + length
        return records

    # -- consumer groups --------------------------------------------------------------------

    def _offsets_path(self, group: str) -> Path:
        if not _GROUP.match(group):
            raise ValueError(f"consumer group {group!r}: use letters, digits, '_', '.', '-'")
        return self._dir / "offsets" / f"{group}.json"

    def _offsets(self, path: Path) -> dict[str, int]:
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise EventLogMisconfigured(f"unreadable committed positions in {path}: {exc}") from exc
        if not isinstance(data, dict) or not all(isinstance(n, int) for n in data.values()):
            raise EventLogMisconfigured(f"unreadable committed positions in {path}")
        return data

    async def committed(self, group: str, partition: int) -> int:
        return self.committed_now(group, partition)

    def committed_now(self, group: str, partition: int) -> int:
        """`committed`, for a caller outside an event loop."""
        path = self._offsets_path(group)
        try:
            with self._lock.shared():  # a dead writer's transaction is finished first
                return int(self._offsets(path).get(str(partition), 0))
        except OSError as exc:
            raise self._unavailable(exc) from exc

    async def commit(self, group: str, positions: Mapping[int, int]) -> None:
        await asyncio.to_thread(self.commit_now, group, positions)

    def commit_now(self, group: str, positions: Mapping[int, int]) -> None:
        """`commit`, for a caller outside an event loop (blocking)."""
        path = self._offsets_path(group)
        try:
            with self._lock.exclusive():  # read, change, replace: one writer at a time
                current = self._offsets(path)
                current.update({str(p): int(n) for p, n in positions.items()})
                path.parent.mkdir(parents=True, exist_ok=True)
                write_aside(path, json.dumps(current).encode())
        except OSError as exc:
            raise self._unavailable(exc) from exc

    async def close(self) -> None:
        if self._own_lock:
            self._lock.close()


def write_aside(path: Path, data: bytes) -> None:
    """Replaces `path` with `data` at once: written aside, fsync'ed, renamed over it, and the
    rename made durable. A crash leaves the old content or the new, never half."""
    aside = path.with_name(path.name + ".tmp")
    with aside.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    aside.replace(path)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Makes the renames and removals in `directory` durable (a power loss keeps them)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
