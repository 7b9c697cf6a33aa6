"""The embedded event log: one append-only file per partition, for unit tests and small installs.

Durable across a restart of the process: `append` and `commit` fsync before they return. A
record is `room_id (8 bytes) | length (4 bytes) | value`; a record torn by a crash in the middle
of an append is cut off when the log is opened again (it was never acknowledged).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

from newcore.domain.partitioning import partition_for
from newcore.ports import EventLogUnavailable, LogRecord

_HEADER = struct.Struct(">QI")
_GROUP = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class FileEventLog:
    def __init__(self, directory: Path, partitions: int) -> None:
        if partitions < 1:
            raise ValueError("a log needs at least one partition")
        self._dir = directory
        self._partitions = partitions
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "offsets").mkdir(exist_ok=True)
            self._index = [self._open_partition(p) for p in range(partitions)]
        except OSError as exc:
            raise EventLogUnavailable(f"embedded log at {directory}: {exc}") from exc
        self._appended = asyncio.Condition()

    def _path(self, partition: int) -> Path:
        return self._dir / f"partition-{partition}.log"

    def _open_partition(self, partition: int) -> list[int]:
        """Byte offsets of the partition's complete records; a torn tail is truncated."""
        path = self._path(partition)
        path.touch()
        data = path.read_bytes()
        offsets, at = [], 0
        while at + _HEADER.size <= len(data):
            _, length = _HEADER.unpack_from(data, at)
            if at + _HEADER.size + length > len(data):
                break
            offsets.append(at)
            at += _HEADER.size + length
        if at < len(data):
            with path.open("r+b") as file:
                file.truncate(at)
        offsets.append(at)  # the end: where the next record goes
        return offsets

    @property
    def partitions(self) -> int:
        return self._partitions

    def end(self, partition: int) -> int:
        """The position the next record of the partition gets (how many it holds)."""
        return len(self._index[partition]) - 1

    def cut_to(self, partition: int, end: int) -> None:
        """Drops the partition's records from position `end` on (durably). Only for redoing
        a transaction that a crash interrupted (`FileTopics`): the records dropped were
        never acknowledged."""
        index = self._index[partition]
        if end >= len(index) - 1:
            return
        with self._path(partition).open("r+b") as file:
            file.truncate(index[end])
            file.flush()
            os.fsync(file.fileno())
        del index[end + 1 :]

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        positions = self.write(records)
        await self.wake_readers()
        return positions

    def write(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        """`append` without waking readers that wait (for a caller outside an event loop);
        each record's position, in the order of `records`."""
        if not records:
            return []
        by_partition: dict[int, list[int]] = {}  # partition -> indexes into records
        for at, (room_id, _value) in enumerate(records):
            by_partition.setdefault(partition_for(room_id, self._partitions), []).append(at)
        positions = [0] * len(records)
        try:
            for partition, members in by_partition.items():
                index = self._index[partition]
                ends: list[int] = []  # the index moves only once the bytes are durable
                with self._path(partition).open("ab") as file:
                    for at in members:
                        room_id, value = records[at]
                        file.write(_HEADER.pack(room_id, len(value)) + value)
                        ends.append((ends[-1] if ends else index[-1]) + _HEADER.size + len(value))
                    file.flush()
                    os.fsync(file.fileno())
                first = len(index) - 1  # the position the partition's next record gets
                for n, at in enumerate(members):
                    positions[at] = first + n
                index.extend(ends)
        except OSError as exc:
            raise EventLogUnavailable(f"embedded log at {self._dir}: {exc}") from exc
        return positions

    async def wake_readers(self) -> None:
        """Wakes the reads waiting for records."""
        async with self._appended:
            self._appended.notify_all()

    async def read(
        self, partition: int, from_position: int, max_records: int, timeout_ms: int
    ) -> list[LogRecord]:
        index = self._index[partition]
        if from_position >= len(index) - 1:
            try:
                async with self._appended:
                    await asyncio.wait_for(
                        self._appended.wait_for(lambda: from_position < len(index) - 1),
                        timeout_ms / 1000,
                    )
            except TimeoutError:
                return []
        return self.read_now(partition, from_position, max_records)

    def read_now(self, partition: int, from_position: int, max_records: int) -> list[LogRecord]:
        """`read` without waiting: what the partition holds now from `from_position` on."""
        index = self._index[partition]
        if from_position >= len(index) - 1:
            return []
        last = min(len(index) - 1, from_position + max_records)
        with self._path(partition).open("rb") as file:
            file.seek(index[from_position])
            data = file.read(index[last] - index[from_position])
        records, at = [], 0
        for position in range(from_position, last):
            room_id, length = _HEADER.unpack_from(data, at)
            start = at + _HEADER.size
            records.append(LogRecord(partition, position, room_id, data[start : start + length]))
            at = start + length
        return records

    def _offsets_path(self, group: str) -> Path:
        if not _GROUP.match(group):
            raise ValueError(f"consumer group {group!r}: use letters, digits, '_', '.', '-'")
        return self._dir / "offsets" / f"{group}.json"

    async def committed(self, group: str, partition: int) -> int:
        path = self._offsets_path(group)
        if not path.exists():
            return 0
        return int(json.loads(path.read_text()).get(str(partition), 0))

    async def commit(self, group: str, positions: Mapping[int, int]) -> None:
        self.commit_now(group, positions)

    def commit_now(self, group: str, positions: Mapping[int, int]) -> None:
        """`commit`, for a caller outside an event loop."""
        path = self._offsets_path(group)
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update({str(p): int(n) for p, n in positions.items()})
        temporary = path.with_suffix(".tmp")
        with temporary.open("w") as file:
            json.dump(current, file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)  # atomic: a crash leaves the old or the new offsets, never half
        sync_directory(path.parent)  # and the rename survives a power loss

    async def close(self) -> None:
        return None


def sync_directory(directory: Path) -> None:
    """Makes the renames and removals in `directory` durable (a power loss keeps them)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
