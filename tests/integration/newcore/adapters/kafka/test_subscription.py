"""The Kafka consumer-group subscriptions hold the subscription contract, on the real Kafka."""

from __future__ import annotations

import pytest

from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.adapters.kafka.subscription import KafkaCaptureSubscription
from newcore.ports import EventLog, TransactionalSubscription
from newcore.settings import CapturerSettings, KafkaSettings
from tests.contracts.subscription import PARTITIONS, SubscriptionContract, Topics
from tests.support.stack import Stack, require_port


class KafkaContractTopics:
    def __init__(self, kafka: KafkaSettings, name: str) -> None:
        self._kafka = kafka
        self._name = name
        self._logs: dict[str, KafkaEventLog] = {}

    def log(self, topic: str) -> EventLog:
        if topic not in self._logs:
            self._logs[topic] = KafkaEventLog(self._kafka, topic, PARTITIONS)
        return self._logs[topic]

    def member(
        self, topic: str, group: str, creates: tuple[str, ...] = ()
    ) -> TransactionalSubscription:
        worker = CapturerSettings(
            group=f"{self._name}-{group}", transactional_id_prefix=self._name,
            transaction_timeout_ms=20_000, fetch_max_wait_ms=50, backoff_ms=50,
            max_backoff_ms=200,
        )  # fmt: skip
        return KafkaCaptureSubscription(self._kafka, topic, PARTITIONS, worker, creates=creates)

    async def restart(self) -> None:
        return None

    async def close(self) -> None:
        for log in self._logs.values():
            await log.close()


class TestKafkaSubscription(SubscriptionContract):
    @pytest.fixture(autouse=True)
    def _kafka(self, stack: Stack) -> None:
        require_port("Kafka", stack.host, stack.kafka_port)
        self._settings = KafkaSettings(bootstrap=stack.kafka_bootstrap)

    async def open_topics(self, name: str) -> Topics:
        for topic in (f"{name}.in", f"{name}.out"):
            await ensure_topic(self._settings, topic, PARTITIONS)
        return KafkaContractTopics(self._settings, name)
