"""The Kafka checkpointed log holds the CheckpointedLog contract, on the real Kafka."""

from __future__ import annotations

import pytest

from newcore.adapters.kafka.checkpoints import KafkaCheckpointedLog
from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.ports import CheckpointedLog, EventLog
from newcore.settings import KafkaSettings, TopicSettings
from tests.contracts.checkpointed_log import PARTITIONS, CheckpointedLogContract
from tests.support.stack import Stack, require_port


class TestKafkaCheckpointedLog(CheckpointedLogContract):
    @pytest.fixture(autouse=True)
    def _kafka(self, stack: Stack) -> None:
        require_port("Kafka", stack.host, stack.kafka_port)
        self._settings = KafkaSettings(bootstrap=stack.kafka_bootstrap)

    async def open_source(self, name: str) -> CheckpointedLog:
        topics = TopicSettings(
            hints=f"{name}.hints", events=f"{name}.events", dead_letters=f"{name}.dead",
            partitions=PARTITIONS,
        )  # fmt: skip
        return KafkaCheckpointedLog(self._settings, topics, f"{name}.cp", name, 15_000)

    async def hints(self, name: str) -> EventLog:
        await ensure_topic(self._settings, f"{name}.hints", PARTITIONS)
        return KafkaEventLog(self._settings, f"{name}.hints", PARTITIONS)
