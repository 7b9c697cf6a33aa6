"""Convergence on the real stack: the property of tests/convergence.py with MariaDB as the
monolith the capturer reads, Kafka as the hints, events and dead-letter logs, and HBase as the
read model. Fewer, shorter examples than on the embedded adapters: each one talks to three
servers."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from newcore.adapters.hbase.read_store import HBaseReadStore, drop_tables, ensure_tables
from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.settings import HBaseSettings, KafkaSettings
from tests.support.arranger import SqlArranger
from tests.support.convergence import PARTITIONS, Legacy, Rig, ops, play
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


async def play_real(program: list[tuple[Any, ...]], real: Real) -> None:
    example = next(real.examples)
    run = uuid.uuid4().hex[:8]
    names = [f"test-conv-{run}.{name}" for name in ("hints", "events", "dead")]
    for name in names:
        await ensure_topic(real.kafka, name, PARTITIONS)
    hints, events, dead = logs = [KafkaEventLog(real.kafka, name, PARTITIONS) for name in names]
    store = HBaseReadStore(real.hbase)
    rig = Rig(
        Legacy(SqlArranger(real.engine)), MariaDbMonolithReader(real.engine),
        hints, events, dead, store,
        room_base=example * 100, id_base=example * 1_000_000,
        timeout_ms=300, idle_rounds=2,
    )  # fmt: skip
    try:
        await play(program, rig)
    finally:
        store.close()
        for log in logs:
            await log.close()


@settings(
    max_examples=8, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
@given(st.lists(ops, min_size=5, max_size=30))
def test_the_real_read_model_ends_equal_to_the_monolith(
    real: Real, program: list[tuple[Any, ...]]
) -> None:
    asyncio.run(play_real(program, real))
