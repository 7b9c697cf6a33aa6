"""The embedded subscription holds the subscription contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from newcore.adapters.embedded.file_subscription import FileSubscription
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.ports import EventLog, TransactionalSubscription
from tests.contracts.subscription import PARTITIONS, SubscriptionContract, Topics


class FileContractTopics:
    def __init__(self, root: Path) -> None:
        self._root = root
        self._topics = FileTopics(root, PARTITIONS)

    def log(self, topic: str) -> EventLog:
        return self._topics.log(topic)

    def member(
        self, topic: str, group: str, creates: tuple[str, ...] = ()
    ) -> TransactionalSubscription:
        return FileSubscription(self._topics, topic, group, backoff_ms=50, max_backoff_ms=200)

    async def restart(self) -> None:
        self._topics = FileTopics(self._root, PARTITIONS)

    async def close(self) -> None:
        return None


class TestFileSubscription(SubscriptionContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self._root = tmp_path

    async def open_topics(self, name: str) -> Topics:
        return FileContractTopics(self._root / name)
