"""The embedded event log holds the EventLog contract, and cuts a torn record on reopen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from newcore.adapters.embedded.file_event_log import FileEventLog
from newcore.domain.partitioning import partition_for
from newcore.ports import EventLog
from tests.contracts.event_log import PARTITIONS, EventLogContract, read_all


class TestFileEventLog(EventLogContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self._root = tmp_path

    async def open_log(self, name: str) -> EventLog:
        return FileEventLog(self._root / name, PARTITIONS)


def test_a_record_torn_by_a_crash_is_cut_off_on_reopen(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = FileEventLog(tmp_path, PARTITIONS)
        await log.append([(5, b"whole"), (5, b"also whole")])
        partition = partition_for(5, PARTITIONS)
        path = tmp_path / f"partition-{partition}.log"
        path.write_bytes(path.read_bytes() + b"\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x09tor")
        again = FileEventLog(tmp_path, PARTITIONS)
        assert [r.value for r in await read_all(again, partition)] == [b"whole", b"also whole"]
        await again.append([(5, b"after")])
        assert [r.value for r in await read_all(again, partition)] == [
            b"whole",
            b"also whole",
            b"after",
        ]

    asyncio.run(scenario())


def test_a_nonsense_group_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"consumer group '\.\./x'"):
        asyncio.run(FileEventLog(tmp_path, 2).committed("../x", 0))
