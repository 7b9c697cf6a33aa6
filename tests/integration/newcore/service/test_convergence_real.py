"""Convergence on the real stack: the property of tests/support/convergence.py, run by the
workers `chat-capturer` and `chat-updater` run, with MariaDB as the monolith the capture worker
reads, Kafka consumer groups and transactions as the hints, events and dead-letter logs, and
HBase as the read model. Fewer, shorter examples than on the embedded adapters: each one talks to three
servers."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from newcore.adapters.hbase.read_store import HBaseReadStore, drop_tables, ensure_tables
from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.adapters.kafka.subscription import KafkaCaptureSubscription, KafkaSubscription
from newcore.service.capture_worker import CaptureWorker
from newcore.service.update_worker import UpdateWorker
from newcore.settings import (
    CapturerSettings,
    HBaseSettings,
    KafkaSettings,
    TopicSettings,
    UpdaterSettings,
)
from tests.support.arranger import SqlArranger
from tests.support.convergence import (
    DEATHS,
    PARTITIONS,
    Fuse,
    Legacy,
    Rig,
    capture_worker,
    dying,
    ops,
    play,
    update_worker,
)
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack, require_port


@dataclass
class Real:
    engine: Engine
    kafka: KafkaSettings
    hbase: HBaseSettings
    examples: Iterator[int]


@pytest.fixture(scope="module")
def real(stack: Stack) -> Iterator[Real]:
    require_port("Kafka", stack.host, stack.kafka_port)
    require_port("HBase Thrift", stack.host, stack.hbase_thrift_port)
    hbase = HBaseSettings(
        host=stack.host, thrift_port=stack.hbase_thrift_port,
        table_prefix=f"test_conv_{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    ensure_tables(hbase)
    try:
        with scratch_database(stack) as (_, engine):
            yield Real(
                engine, KafkaSettings(bootstrap=stack.kafka_bootstrap), hbase, itertools.count(1)
            )
    finally:
        drop_tables(hbase)


class KafkaPipeline:
    """The workers on Kafka consumer groups: a crashed worker's subscription is closed without
    committing anything more (the capture worker's open transaction is left for the next
    owner's producer to abort, as after a kill) and a fresh member joins in its place."""

    def __init__(self, real: Real, topics: TopicSettings, run: str, store: HBaseReadStore) -> None:
        self._real = real
        self._topics = topics
        self._run = run
        self._store = store
        self._hints = KafkaEventLog(real.kafka, topics.hints, PARTITIONS)
        self._dead = KafkaEventLog(real.kafka, topics.dead_letters, PARTITIONS)
        self._fuses = {"capture": Fuse(), "update": Fuse()}
        self._capture: CaptureWorker | None = None
        self._update: UpdateWorker | None = None
        self._subscriptions: dict[str, KafkaSubscription] = {}

    async def append_hints(self, records: list[tuple[int, bytes]]) -> None:
        await self._hints.append(records)

    async def capture(self) -> tuple[CaptureWorker, Fuse]:
        if self._capture is None:
            t = self._topics
            worker = CapturerSettings(
                group=f"{self._run}-capturer", transactional_id_prefix=self._run,
                transaction_timeout_ms=20_000, fetch_max_wait_ms=50,
            )  # fmt: skip
            subscription = KafkaCaptureSubscription(
                self._real.kafka, t.hints, PARTITIONS, worker, creates=(t.events, t.dead_letters)
            )
            self._subscriptions["capture"] = subscription
            reader = MariaDbMonolithReader(self._real.engine)
            self._capture = capture_worker(subscription, self._fuses["capture"], reader, t)
            await self._capture.start()
        return self._capture, self._fuses["capture"]

    async def update(self) -> tuple[UpdateWorker, Fuse]:
        if self._update is None:
            t = self._topics
            subscription = KafkaSubscription(
                self._real.kafka,
                t.events,
                PARTITIONS,
                f"{self._run}-updater",
                UpdaterSettings(fetch_max_wait_ms=50),
                creates=(t.dead_letters,),
            )
            self._subscriptions["update"] = subscription
            self._update = update_worker(
                subscription, self._fuses["update"], self._store, self._dead, t
            )
            await self._update.start()
        return self._update, self._fuses["update"]

    async def crashed(self, worker: str) -> None:
        subscription = self._subscriptions.pop(worker, None)
        if subscription is not None:
            await subscription.close()
        self._fuses[worker] = Fuse()  # a fresh process; the dead one's fuse stays blown
        if worker == "capture":
            self._capture = None
        else:
            self._update = None

    async def close(self) -> None:
        for worker in list(self._subscriptions):
            await self.crashed(worker)
        await self._hints.close()
        await self._dead.close()


async def play_real(program: list[tuple[Any, ...]], real: Real) -> None:
    example = next(real.examples)
    run = f"test-conv-{uuid.uuid4().hex[:8]}"
    topics = TopicSettings(
        hints=f"{run}.hints", events=f"{run}.events", dead_letters=f"{run}.dead",
        partitions=PARTITIONS,
    )  # fmt: skip
    for name in (topics.hints, topics.events, topics.dead_letters):
        await ensure_topic(real.kafka, name, PARTITIONS)
    store = HBaseReadStore(real.hbase)
    pipeline = KafkaPipeline(real, topics, run, store)
    rig = Rig(
        Legacy(SqlArranger(real.engine)), pipeline, store,
        room_base=example * 100, id_base=example * 1_000_000,
        timeout_ms=300, idle_rounds=3,
    )  # fmt: skip
    try:
        await play(program, rig)
    finally:
        await pipeline.close()
        store.close()


@settings(
    max_examples=8, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
@given(st.lists(ops, min_size=5, max_size=30))
@example(DEATHS[-1])  # both workers die after their commit: a fresh member rejoins and fences
@example(dying(None, "before_commit"))  # the update worker dies between effect and commit
def test_the_real_read_model_ends_equal_to_the_monolith(
    real: Real, program: list[tuple[Any, ...]]
) -> None:
    asyncio.run(play_real(program, real))
