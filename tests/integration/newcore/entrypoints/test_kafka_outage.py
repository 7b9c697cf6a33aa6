"""The whole pipeline as real processes through a Kafka outage (issue 4, bad input: "Kafka
down: the processes wait and recover by themselves, without losing positions").

`chat-binlog-source`, `chat-capturer` and `chat-updater` run against a scratch monolith; the
test stops the real Kafka broker, writes to the monolith while it is down, starts it again,
and expects every write in the read model with no process restarted by hand. This is also
the smallest end-to-end run of the pipeline on the real stack: SQL write -> binlog -> hint ->
event -> HBase.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from legacy_adapters.domain.translation import LegacyMessageRow
from newcore.adapters.hbase.read_store import HBaseReadStore, drop_tables, ensure_tables
from newcore.settings import HBaseSettings
from tests.support.arranger import SqlArranger
from tests.support.processes import Service, free_port
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack, require_port

ROOT = Path(__file__).resolve().parents[3]
KAFKA = ROOT / "deploy" / "kafka.sh"


def kafka(action: str) -> None:
    subprocess.run(["bash", str(KAFKA), action], check=True, capture_output=True, timeout=180)


def healthy(service: Service, what: str) -> None:
    service.eventually(lambda: service.ops("/healthz")[0] == 200, f"{service.module} {what}")


def row(room: int, mid: int, body: str) -> LegacyMessageRow:
    return LegacyMessageRow(mid, room, 5, body, None, None, 1_700_000_000 + mid, 0,
                            "2023-11-15 07:13:20", 0)  # fmt: skip


@pytest.fixture
def pipeline(
    stack: Stack, tmp_path: Path
) -> Iterator[tuple[SqlArranger, HBaseReadStore, list[Service]]]:
    require_port("Kafka", stack.host, stack.kafka_port)
    require_port("HBase Thrift", stack.host, stack.hbase_thrift_port)
    run = uuid.uuid4().hex[:8]
    hbase = HBaseSettings(host=stack.host, thrift_port=stack.hbase_thrift_port,
                          table_prefix=f"test_{run}")  # fmt: skip
    ensure_tables(hbase)
    topic = f"test-{run}"
    with scratch_database(stack) as (database, engine):
        env = {
            **os.environ,
            "MIG_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "MIG_MARIADB_PORT": str(stack.mariadb_port), "MIG_DB_NAME": database.db_name,
            "MIG_HBASE_THRIFT_PORT": str(hbase.thrift_port), "MIG_HBASE_TABLE_PREFIX": hbase.table_prefix,
            "MIG_BINLOG_HINTS_TOPIC": f"{topic}.hints", "MIG_CAPTURER_HINTS_TOPIC": f"{topic}.hints",
            "MIG_CAPTURER_EVENTS_TOPIC": f"{topic}.events", "MIG_UPDATER_EVENTS_TOPIC": f"{topic}.events",
            "MIG_BINLOG_DEAD_LETTER_TOPIC": f"{topic}.dead", "MIG_CAPTURER_DEAD_LETTER_TOPIC": f"{topic}.dead",
            "MIG_UPDATER_DEAD_LETTER_TOPIC": f"{topic}.dead",
            "MIG_BINLOG_CHECKPOINT_TOPIC": f"{topic}.checkpoints",
            "MIG_BINLOG_TRANSACTIONAL_ID": f"{topic}-binlog",
            "MIG_BINLOG_SERVER_ID": str(random.randrange(10_000, 4_000_000_000)),
            "MIG_CAPTURER_TRANSACTIONAL_ID_PREFIX": topic,
            "MIG_CAPTURER_GROUP": f"{topic}-capturer", "MIG_UPDATER_GROUP": f"{topic}-updater",
            "MIG_BINLOG_PARTITIONS": "4", "MIG_CAPTURER_PARTITIONS": "4", "MIG_UPDATER_PARTITIONS": "4",
            "MIG_BINLOG_BACKOFF_MS": "200", "MIG_CAPTURER_BACKOFF_MS": "200", "MIG_UPDATER_BACKOFF_MS": "200",
            "MIG_BINLOG_MAX_BACKOFF_MS": "2000", "MIG_CAPTURER_MAX_BACKOFF_MS": "2000",
            "MIG_UPDATER_MAX_BACKOFF_MS": "2000",
        }  # fmt: skip
        services = []
        for module, ops in (("binlog_source", "MIG_BINLOG_OPS_PORT"),
                            ("capturer", "MIG_CAPTURER_OPS_PORT"),
                            ("updater", "MIG_UPDATER_OPS_PORT")):  # fmt: skip
            port = free_port()
            (tmp_path / module).mkdir()
            service_env = {**env, ops: str(port)}
            services.append(
                Service(f"newcore.entrypoints.{module}", service_env, tmp_path / module, port)
            )
        store = HBaseReadStore(hbase)
        try:
            yield SqlArranger(engine), store, services
        finally:
            for service in services:
                service.ensure_gone()
            store.close()
            drop_tables(hbase)
            kafka("start")  # whatever happened, later tests need the broker


def test_the_pipeline_waits_out_a_kafka_outage_and_loses_no_write(
    pipeline: tuple[SqlArranger, HBaseReadStore, list[Service]],
) -> None:
    arrange, store, services = pipeline
    binlog, _, updater = services
    room = 71
    arrange.add_room(room)
    for service in services:
        service.start()
        healthy(service, "healthy")
    arrange.put_many([row(room, mid, f"before {mid}") for mid in range(1, 6)])
    updater.eventually(lambda: len(store.latest(room, 100)) == 5, "the writes before the outage")

    kafka("stop")
    arrange.put_many([row(room, mid, f"during {mid}") for mid in range(6, 11)])
    binlog.eventually(
        lambda: json.loads(binlog.ops("/healthz")[1] or b"{}").get("ok") is False,
        "the binlog source sees Kafka gone",
    )
    spent = [service.cpu_seconds() for service in services]
    time.sleep(5)  # several backoffs pass; nobody crashes, nobody spins
    for service, before in zip(services, spent, strict=True):
        assert service.alive, (
            f"{service.module} died while Kafka was down:\n{service.log()[-2000:]}"
        )
        assert service.cpu_seconds() - before < 1.0, f"{service.module} busy without Kafka"
    assert len(store.latest(room, 100)) == 5

    kafka("start")
    updater.eventually(
        lambda: (
            [m.body for m in store.latest(room, 100)]
            == [f"before {m}" for m in range(1, 6)] + [f"during {m}" for m in range(6, 11)]
        ),
        "the writes made during the outage",
        seconds=120,
    )
    for service in services:
        healthy(service, "healthy again")
        assert service.alive
