"""The embedded checkpointed log holds the CheckpointedLog contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from newcore.adapters.embedded.file_checkpointed_log import FileCheckpointedLog
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.ports import CheckpointedLog, EventLog
from tests.contracts.checkpointed_log import PARTITIONS, CheckpointedLogContract


class TestFileCheckpointedLog(CheckpointedLogContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self._root = tmp_path
        self._topics: dict[str, FileTopics] = {}

    def _opened(self, name: str) -> FileTopics:
        if name not in self._topics:
            self._topics[name] = FileTopics(self._root / name, PARTITIONS)
        return self._topics[name]

    async def open_source(self, name: str) -> CheckpointedLog:
        return FileCheckpointedLog(self._opened(name), name)

    async def hints(self, name: str) -> EventLog:
        return self._opened(name).log(f"{name}.hints")
