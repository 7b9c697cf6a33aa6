"""`chat-updater` as a real process on real Kafka and HBase (issue 4, items 7, 8 and 10).

The HBase outage is a cut network: the updater talks to HBase's Thrift server through a TCP
relay of the test's own, which the test stops (connections refused and cut) and starts again.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from newcore.adapters.hbase.read_store import HBaseReadStore, drop_tables, ensure_tables
from newcore.domain.events import MessageDeleted, MessageUpserted
from newcore.domain.model import Message
from newcore.ports import LogRecord
from newcore.settings import HBaseSettings, KafkaSettings
from newcore.wire.events import encode
from tests.support import topics
from tests.support.processes import Relay, Service, free_port
from tests.support.stack import Stack, require_port

PARTITIONS = 4


@dataclass
class Setup:
    kafka: KafkaSettings
    hbase: HBaseSettings
    env: dict[str, str]
    updater: Service
    events_topic: str
    dead_topic: str


@pytest.fixture
def setup(stack: Stack, tmp_path: Path) -> Iterator[Setup]:
    require_port("Kafka", stack.host, stack.kafka_port)
    require_port("HBase Thrift", stack.host, stack.hbase_thrift_port)
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap=stack.kafka_bootstrap)
    hbase = HBaseSettings(
        host=stack.host, thrift_port=stack.hbase_thrift_port, table_prefix=f"test_{run}"
    )
    ops_port = free_port()
    events_topic, dead_topic = f"test-{run}.events", f"test-{run}.dead"
    env = {
        **os.environ,
        "MIG_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "MIG_HBASE_THRIFT_PORT": str(hbase.thrift_port),
        "MIG_HBASE_TABLE_PREFIX": hbase.table_prefix,
        "MIG_TOPIC_EVENTS": events_topic,
        "MIG_TOPIC_DEAD_LETTERS": dead_topic,
        "MIG_TOPIC_PARTITIONS": str(PARTITIONS),
        "MIG_UPDATER_GROUP": f"test-{run}",
        "MIG_UPDATER_OPS_PORT": str(ops_port),
        "MIG_UPDATER_BACKOFF_MS": "200",
        "MIG_UPDATER_MAX_BACKOFF_MS": "1000",
    }
    ensure_tables(hbase)
    updater = Service("newcore.entrypoints.updater", env, tmp_path, ops_port)
    try:
        yield Setup(kafka, hbase, env, updater, events_topic, dead_topic)
    finally:
        updater.ensure_gone()
        drop_tables(hbase)


async def append(setup: Setup, topic: str, records: list[tuple[int, bytes]]) -> None:
    await topics.append(setup.kafka, topic, PARTITIONS, records)


async def read_topic(setup: Setup, topic: str) -> list[LogRecord]:
    return await topics.read_all(setup.kafka, topic, PARTITIONS)


def committed_everything(setup: Setup) -> bool:
    """The group's committed offsets reach the end of the events topic."""
    group = setup.env["MIG_UPDATER_GROUP"]
    return asyncio.run(topics.unconsumed(setup.kafka, setup.events_topic, PARTITIONS, group)) == 0


def msg(room: int, mid: int, body: str) -> Message:
    return Message(room, mid, 3, body, 1_700_000_000, 0)


def upserts(room: int, ids: range, body: str, position: int) -> list[tuple[int, bytes]]:
    return [(room, encode(MessageUpserted(msg(room, mid, body), position, 1))) for mid in ids]


def test_applies_dead_letters_survives_kill_9_and_serves_ops(setup: Setup) -> None:
    room = 77
    store = HBaseReadStore(setup.hbase)
    asyncio.run(
        append(
            setup,
            setup.events_topic,
            [*upserts(room, range(1, 201), "v1", 1), (room, b'{"v": 99}')],
        )
    )
    # A foreign record: a 12-byte key (no room id) and JSON nested past any parser's depth.
    asyncio.run(topics.send_raw(setup.kafka, setup.events_topic, 3, b"k" * 12, b"[" * 5000))
    updater = setup.updater.start()
    try:
        updater.eventually(lambda: len(store.latest(room, 1000)) == 200, "200 messages in HBase")
        updater.eventually(lambda: updater.ops("/healthz")[0] == 200, "healthy")
        health = json.loads(updater.ops("/healthz")[1])
        assert health["ok"] is True and health["read_store"] == "up"
        # The rows are visible before the batch's dead letters are sent and its offsets
        # committed; the counters move after that.
        updater.eventually(
            lambda: (
                "chat_updater_events_applied_total 200.0" in updater.ops("/metrics")[1].decode()
            ),
            "the applied events counted",
        )
        assert "chat_updater_dead_letters_total 2.0" in updater.ops("/metrics")[1].decode()
        dead = asyncio.run(read_topic(setup, setup.dead_topic))
        assert sorted((json.loads(r.value)["room_id"], json.loads(r.value)["reason"])
                      for r in dead) == [
            ("0", "not UTF-8 JSON we read: nested too deeply"),
            (str(room), "unknown event version 99 (this reader knows 1)"),
        ]  # fmt: skip

        updater.kill9()
        later = [
            *upserts(room, range(1, 101), "v2", 5),
            (room, encode(MessageDeleted(room, 150, 6, 1))),
        ]
        asyncio.run(append(setup, setup.events_topic, later))
        updater.start()
        updater.eventually(
            lambda: store.message(room, 1) == msg(room, 1, "v2"), "the edits after a kill -9"
        )
        updater.eventually(lambda: store.message(room, 150) is None, "the deletion after a kill -9")
        expected = [msg(room, m, "v2") for m in range(1, 101)] + [
            msg(room, m, "v1") for m in range(101, 201) if m != 150
        ]
        assert store.latest(room, 1000) == expected

        assert updater.stop() == 0
        assert '"msg": "updater stopped"' in updater.log()
    finally:
        store.close()


def test_hbase_outage_pauses_then_resumes_without_losing_the_batch(setup: Setup) -> None:
    relay = Relay(setup.hbase.thrift_port)
    relay.start()
    room = 88
    store = HBaseReadStore(setup.hbase)
    updater = setup.updater.start(MIG_HBASE_THRIFT_PORT=str(relay.port))
    try:
        asyncio.run(append(setup, setup.events_topic, upserts(room, range(1, 11), "before", 1)))
        updater.eventually(lambda: len(store.latest(room, 100)) == 10, "the first batch")
        relay.cut()
        asyncio.run(append(setup, setup.events_topic, upserts(room, range(11, 21), "during", 2)))
        updater.eventually(
            lambda: updater.ops("/healthz")[0] == 503, "unhealthy while HBase is cut off"
        )
        paused = json.loads(updater.ops("/healthz")[1])
        assert paused["read_store"] == "unavailable" and paused["paused_partitions"]
        time.sleep(3)  # several backoffs pass while cut off: the process stays up
        assert updater.alive
        assert len(store.latest(room, 100)) == 10
        relay.start()
        updater.eventually(
            lambda: len(store.latest(room, 100)) == 20, "the held-back batch after HBase returns"
        )
        updater.eventually(lambda: updater.ops("/healthz")[0] == 200, "healthy again")
        metrics = updater.ops("/metrics")[1].decode()
        down = [line for line in metrics.splitlines()
                if line.startswith("chat_updater_store_unavailable_total ")]  # fmt: skip
        assert down and float(down[0].split()[1]) >= 1, metrics  # batches were put back
        assert "chat_updater_events_applied_total 20.0" in metrics  # and applied once back
    finally:
        store.close()


def test_a_kafka_outage_puts_batches_back_without_busy_looping_and_loses_no_position(
    setup: Setup, stack: Stack, kafka_relay: Relay
) -> None:
    """Kafka cut off while batches are applied (the test's own clients still reach it): the
    commits in flight fail, the process waits without spinning, and once Kafka is back the
    read model is complete and the group has committed every record."""
    rooms = range(90, 94)
    asyncio.run(append(setup, setup.events_topic, [
        record for room in rooms for record in upserts(room, range(1, 751), "v1", 1)
    ]))  # fmt: skip
    store = HBaseReadStore(setup.hbase)
    updater = setup.updater.start(
        MIG_KAFKA_BOOTSTRAP=stack.kafka_relay_bootstrap, MIG_UPDATER_MAX_RECORDS="20"
    )
    try:
        updater.eventually(lambda: len(store.latest(90, 1000)) >= 60, "some batches applied")
        kafka_relay.cut()
        updater.eventually(lambda: updater.ops("/healthz")[0] == 503, "unhealthy while cut off")
        assert json.loads(updater.ops("/healthz")[1])["kafka"] == "unavailable"
        spent = updater.cpu_seconds()
        time.sleep(5)
        assert updater.cpu_seconds() - spent < 1.0, "busy while waiting for Kafka"
        assert updater.alive

        kafka_relay.start()
        updater.eventually(
            lambda: all(len(store.latest(room, 1000)) == 750 for room in rooms),
            "every event applied once Kafka is back", seconds=120,
        )  # fmt: skip
        assert store.latest(93, 1000) == [msg(93, m, "v1") for m in range(1, 751)]
        updater.eventually(lambda: committed_everything(setup), "every record committed")
        updater.eventually(lambda: updater.ops("/healthz")[0] == 200, "healthy again")
        assert updater.stop() == 0
    finally:
        store.close()


def test_hbase_down_at_start_is_waited_for(setup: Setup) -> None:
    relay = Relay(setup.hbase.thrift_port)  # never started: HBase refuses connections
    room = 89
    asyncio.run(append(setup, setup.events_topic, upserts(room, range(1, 6), "v1", 1)))
    store = HBaseReadStore(setup.hbase)
    updater = setup.updater.start(MIG_HBASE_THRIFT_PORT=str(relay.port))
    try:
        updater.eventually(lambda: "waiting for HBase" in updater.log(), "waiting for HBase")
        status, body = updater.ops("/healthz")
        assert status == 503 and json.loads(body)["read_store"] == "unavailable"
        spent = updater.cpu_seconds()
        time.sleep(3)
        assert updater.cpu_seconds() - spent < 0.6, "busy while waiting for HBase"
        relay.start()
        updater.eventually(lambda: len(store.latest(room, 100)) == 5, "applied once HBase is up")
        updater.eventually(lambda: updater.ops("/healthz")[0] == 200, "healthy")
        assert updater.stop() == 0
    finally:
        store.close()


def test_an_idle_updater_cut_off_from_kafka_is_unhealthy(
    setup: Setup, stack: Stack, kafka_relay: Relay
) -> None:
    """Nothing to apply, so no commit fails: only the silence of its fetches tells."""
    updater = setup.updater.start(
        MIG_KAFKA_BOOTSTRAP=stack.kafka_relay_bootstrap, MIG_KAFKA_SILENCE_MS="6000"
    )
    updater.eventually(
        lambda: json.loads(updater.ops("/healthz")[1] or b"{}").get("fetch_silence_s") is not None,
        "fetching",
    )
    status, body = updater.ops("/healthz")
    assert status == 200 and json.loads(body)["fetch_silence_s"] < 6
    kafka_relay.cut()
    updater.eventually(lambda: updater.ops("/healthz")[0] == 503, "unhealthy once silent")
    health = json.loads(updater.ops("/healthz")[1])
    assert health["kafka"] == "unavailable" and health["fetch_silence_s"] >= 6
    kafka_relay.start()
    updater.eventually(lambda: updater.ops("/healthz")[0] == 200, "healthy again")
    assert updater.stop() == 0


def test_a_rebalance_while_a_poll_is_applied_waits_for_its_commit(
    setup: Setup, tmp_path: Path
) -> None:
    """A second updater joins while the first is inside an HBase call (its HBase stalled):
    the first gives its partitions up only after that poll is committed, and neither exits.
    (Before, the revocation went through at once; the late commit and the pause of the
    revoked partitions raised IllegalStateError and the first updater exited 4.)"""
    rooms = range(60, 64)
    asyncio.run(append(setup, setup.events_topic, [
        record for room in rooms for record in upserts(room, range(1, 501), "v1", 1)
    ]))  # fmt: skip
    store = HBaseReadStore(setup.hbase)
    relay = Relay(setup.hbase.thrift_port)
    relay.start()
    first = setup.updater.start(
        MIG_HBASE_THRIFT_PORT=str(relay.port), MIG_UPDATER_MAX_RECORDS="50",
        MIG_HBASE_TIMEOUT_MS="20000",
    )  # fmt: skip
    second_port = free_port()
    (tmp_path / "second").mkdir()
    second = Service(
        "newcore.entrypoints.updater",
        {**setup.env, "MIG_UPDATER_OPS_PORT": str(second_port)},
        (tmp_path / "second").resolve(),
        second_port,
    )
    try:
        first.eventually(lambda: len(store.latest(60, 1000)) >= 50, "some polls applied")
        relay.stall()
        time.sleep(1)  # the first updater is now inside a call that hangs
        second.start(MIG_UPDATER_MAX_RECORDS="50")
        second.eventually(lambda: second.ops("/healthz")[0] == 200, "the second one up")
        time.sleep(3)  # the group is rebalancing; the first is still stuck
        relay.flow()
        first.eventually(
            lambda: all(len(store.latest(room, 1000)) == 500 for room in rooms),
            "every event applied by the two", seconds=120,
        )  # fmt: skip
        first.eventually(lambda: committed_everything(setup), "every record committed")
        assert first.alive, first.log()[-3000:]
        assert second.alive, second.log()[-3000:]
        assert "Traceback" not in first.log()
        assert first.stop() == 0
        assert second.stop() == 0
    finally:
        second.ensure_gone()
        relay.cut()
        store.close()
