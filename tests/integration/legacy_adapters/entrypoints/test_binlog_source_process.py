"""`chat-binlog-source` as a real process on the real MariaDB binlog and Kafka (issue 4, items
6 and 8): writes that bypass the gateway become hints, the process resumes from its durable
checkpoint after a kill -9, and what cannot become a hint is a dead letter with the reason."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import Engine, text

from legacy_adapters.domain.translation import LegacyMessageRow
from newcore.domain.hints import CursorHint, Hint, MessageHint
from newcore.settings import KafkaSettings
from newcore.wire.hints import decode_hint
from tests.support import topics
from tests.support.arranger import SqlArranger
from tests.support.processes import Relay, Service, free_port
from tests.support.scratch_db import scratch_database
from tests.support.stack import REPO, Stack, require_port

PARTITIONS = 4
ROOT = REPO

# The share of one core the source may use while it waits for Kafka: a busy loop takes all of
# it; waiting with backoff costs a new producer per try (up to 2 s apart), measured 0.35-0.75 s
# in 3 s on this machine, before issue 12's changes as after (the former bounds, 0.2 of a core,
# failed now and then on both).
WAITING_SHARE = 0.4


@dataclass
class Setup:
    kafka: KafkaSettings
    engine: Engine
    db_name: str
    arrange: SqlArranger
    source: Service
    hints: str
    dead: str
    checkpoints: str
    identity: str

    def hints_seen(self) -> list[Hint]:
        found = asyncio.run(topics.read_all(self.kafka, self.hints, PARTITIONS))
        return [decode_hint(record.value) for record in found]

    def dead_letters(self) -> list[dict[str, object]]:
        found = asyncio.run(topics.read_all(self.kafka, self.dead, PARTITIONS))
        return [json.loads(record.value) for record in found]

    def health(self) -> dict[str, object]:
        status, body = self.source.ops("/healthz")
        return json.loads(body) if status else {}


@pytest.fixture
def setup(stack: Stack, tmp_path: Path) -> Iterator[Setup]:
    require_port("Kafka", stack.host, stack.kafka_port)
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap=stack.kafka_bootstrap)
    with scratch_database(stack) as (database, engine):
        ops_port = free_port()
        names = {
            "MIG_TOPIC_HINTS": f"test-{run}.hints",
            "MIG_TOPIC_DEAD_LETTERS": f"test-{run}.dead",
            "MIG_BINLOG_CHECKPOINT_TOPIC": f"test-{run}.checkpoints",
            "MIG_BINLOG_TRANSACTIONAL_ID": f"test-{run}-binlog",
        }
        env = {
            **os.environ, **names,
            "MIG_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MIG_MARIADB_PORT": str(stack.mariadb_port),
            "MIG_DB_NAME": database.db_name,
            "MIG_TOPIC_PARTITIONS": str(PARTITIONS),
            "MIG_BINLOG_SERVER_ID": str(random.randrange(10_000, 4_000_000_000)),
            "MIG_BINLOG_OPS_PORT": str(ops_port),
            "MIG_BINLOG_BACKOFF_MS": "200",
            "MIG_BINLOG_MAX_BACKOFF_MS": "1000",
        }  # fmt: skip
        source = Service("legacy_adapters.entrypoints.binlog_source", env, tmp_path, ops_port)
        try:
            yield Setup(
                kafka, engine, database.db_name, SqlArranger(engine), source,
                names["MIG_TOPIC_HINTS"], names["MIG_TOPIC_DEAD_LETTERS"],
                names["MIG_BINLOG_CHECKPOINT_TOPIC"], names["MIG_BINLOG_TRANSACTIONAL_ID"],
            )  # fmt: skip
        finally:
            source.ensure_gone()


def row(room: int, mid: int) -> LegacyMessageRow:
    return LegacyMessageRow(mid, room, 5, f"本文 {mid}", None, None, 1_700_000_000, 0,
                            "2023-11-15 07:13:20", 0)  # fmt: skip


def started(setup: Setup, **overrides: str) -> Service:
    source = setup.source.start(**overrides)
    source.eventually(lambda: setup.health().get("ok") is True, "reading the binlog")
    return source


def test_bypassing_writes_become_hints_and_a_kill_9_loses_none(setup: Setup) -> None:
    room, other = 61, 62
    setup.arrange.add_room(room)
    setup.arrange.put(row(room, 1))  # before the first start: history, the backfill's
    source = started(setup)

    setup.arrange.put_many([row(room, mid) for mid in range(2, 7)])
    setup.arrange.update(2, body="edited by a cron job")
    setup.arrange.update(3, deleted=1)
    setup.arrange.purge(4)
    setup.arrange.move_cursor(room, 5, 6, 6)
    with setup.engine.begin() as conn:  # a manual fix that moves a message to another room
        conn.execute(text("UPDATE messages SET room_id = :to WHERE message_id = 5"), {"to": other})
    expected = {MessageHint(room, m) for m in range(2, 7)} | {
        CursorHint(room, 5),
        MessageHint(other, 5),
    }
    source.eventually(lambda: set(setup.hints_seen()) == expected, "a hint for every write")
    assert MessageHint(room, 1) not in setup.hints_seen()
    before_kill = Counter(setup.hints_seen())

    source.kill9()
    setup.arrange.put_many([row(room, mid) for mid in range(101, 106)])  # while it is down
    setup.arrange.update(101, body="edited while the source was down")
    setup.arrange.move_cursor(other, 9, 101, 101)
    started(setup)
    later = {MessageHint(room, m) for m in range(101, 106)} | {CursorHint(other, 9)}
    source.eventually(
        lambda: set(setup.hints_seen()) == expected | later, "the writes made while it was down"
    )
    time.sleep(1)  # a re-read of what was already appended would show up now
    after = Counter(setup.hints_seen())
    assert {h: after[h] for h in before_kill} == dict(before_kill), "re-appended after restart"

    health = setup.health()
    assert health["ok"] is True and str(health["checkpoint"]).startswith("mariadb-bin.")
    metrics = source.ops("/metrics")[1].decode()
    assert 'chat_binlog_hints_total{kind="cursor"}' in metrics
    assert source.stop() == 0


def test_rows_and_statements_that_cannot_be_hints_are_dead_letters(setup: Setup) -> None:
    room = 63
    setup.arrange.add_room(room)
    setup.arrange.put_many([row(room, mid) for mid in range(1, 4)])
    source = started(setup)
    # A DBA's session logging minimal row images: the update's before image has no room_id.
    subprocess.run(
        ["bash", str(ROOT / "deploy" / "mariadb.sh"), "sql", setup.db_name, "-e",
         "SET SESSION binlog_row_image = MINIMAL; UPDATE messages SET body = 'x' WHERE message_id = 1"],
        check=True, capture_output=True,
    )  # fmt: skip
    with setup.engine.begin() as conn:
        conn.execute(text("TRUNCATE TABLE room_cursors"))
    setup.arrange.put(row(room, 10))  # and the pipeline goes on
    source.eventually(lambda: MessageHint(room, 10) in setup.hints_seen(), "the hint after them")
    # A column added in front moves every column: rows after it must still give the right keys
    # (the reader caches table maps, and forgets them on DDL).
    with setup.engine.begin() as conn:
        conn.execute(text("ALTER TABLE messages ADD COLUMN note INT NULL FIRST"))
    setup.arrange.put(row(room, 11))
    source.eventually(lambda: MessageHint(room, 11) in setup.hints_seen(), "the hint after DDL")
    assert {h for h in setup.hints_seen() if h.room_id != room} == set(), setup.hints_seen()
    reasons = [str(letter["reason"]) for letter in setup.dead_letters()]
    assert any("messages row image lacks room_id" in r for r in reasons), reasons
    assert any(
        "a statement changed room_cursors without row events" in r and "TRUNCATE" in r
        for r in reasons
    ), reasons
    assert all(str(letter["source"]).startswith("binlog:") for letter in setup.dead_letters())
    assert any("ALTER TABLE messages" in r for r in reasons)
    assert "chat_binlog_dead_letters_total 3.0" in source.ops("/metrics")[1].decode()


def test_a_position_no_longer_on_the_server_stops_with_what_to_do(setup: Setup) -> None:
    async def plant() -> None:
        from newcore.adapters.kafka.checkpoints import ensure_checkpoint_topic

        await ensure_checkpoint_topic(setup.kafka, setup.checkpoints)
        producer = AIOKafkaProducer(bootstrap_servers=setup.kafka.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                setup.checkpoints, b'{"v": 1, "file": "mariadb-bin.999999", "pos": 4}',
                key=setup.identity.encode(), partition=0,
            )  # fmt: skip
        finally:
            await producer.stop()

    asyncio.run(plant())
    source = setup.source.start()
    assert source.process is not None
    assert source.process.wait(60) == 3
    log = source.log()
    assert "cannot read the binlog from mariadb-bin.999999:4" in log and "repair" in log


def test_a_monolith_outage_rewinds_to_the_checkpoint_and_loses_nothing(
    setup: Setup, stack: Stack
) -> None:
    room = 64
    setup.arrange.add_room(room)
    relay = Relay(stack.mariadb_port)
    relay.start()
    source = started(setup, MIG_MARIADB_PORT=str(relay.port))
    setup.arrange.put(row(room, 1))
    source.eventually(lambda: MessageHint(room, 1) in setup.hints_seen(), "the first hint")
    relay.cut()
    setup.arrange.put_many([row(room, mid) for mid in range(2, 12)])  # written meanwhile
    source.eventually(lambda: setup.health().get("ok") is False, "unhealthy while cut off")
    assert "monolith unavailable" in str(setup.health()["problem"])
    time.sleep(2)
    assert source.alive
    relay.start()
    source.eventually(
        lambda: {MessageHint(room, m) for m in range(1, 12)} <= set(setup.hints_seen()),
        "the writes made during the outage",
    )
    source.eventually(lambda: setup.health().get("ok") is True, "healthy again")


def test_a_kafka_outage_rewinds_to_the_checkpoint_without_busy_looping_or_duplicates(
    setup: Setup, stack: Stack, kafka_relay: Relay
) -> None:
    """Kafka cut off (the test's own clients still reach it): the source backs off without
    spinning, and once Kafka is back the writes made meanwhile become hints, each once."""
    room = 65
    setup.arrange.add_room(room)
    source = started(
        setup,
        MIG_KAFKA_BOOTSTRAP=stack.kafka_relay_bootstrap,
        MIG_BINLOG_TRANSACTION_TIMEOUT_MS="5000",  # how long a transaction may hang: the outage
    )  # is noticed sooner
    setup.arrange.put(row(room, 1))
    source.eventually(lambda: MessageHint(room, 1) in setup.hints_seen(), "the first hint")
    kafka_relay.cut()
    setup.arrange.put_many([row(room, mid) for mid in range(2, 52)])  # written meanwhile
    source.eventually(lambda: setup.health().get("ok") is False, "unhealthy while cut off")
    assert "kafka unavailable" in str(setup.health()["problem"])
    spent = source.cpu_seconds()
    time.sleep(5)
    assert source.cpu_seconds() - spent < WAITING_SHARE * 5, "busy while waiting for Kafka"
    assert source.alive and setup.hints_seen() == [MessageHint(room, 1)]

    kafka_relay.start()
    source.eventually(
        lambda: set(setup.hints_seen()) == {MessageHint(room, m) for m in range(1, 52)},
        "the writes made during the outage", seconds=120,
    )  # fmt: skip
    time.sleep(1)  # a re-read of what was already appended would show up now
    assert max(Counter(setup.hints_seen()).values()) == 1, "appended twice"
    source.eventually(lambda: setup.health().get("ok") is True, "healthy again")
    assert source.stop() == 0


def test_kafka_down_at_start_is_waited_for(setup: Setup, stack: Stack, kafka_relay: Relay) -> None:
    room = 66
    setup.arrange.add_room(room)
    kafka_relay.cut()
    source = setup.source.start(MIG_KAFKA_BOOTSTRAP=stack.kafka_relay_bootstrap)
    source.eventually(
        lambda: "kafka unavailable" in str(setup.health().get("problem")), "waiting for Kafka"
    )
    spent = source.cpu_seconds()
    time.sleep(3)
    assert source.cpu_seconds() - spent < WAITING_SHARE * 3, "busy while waiting for Kafka"
    kafka_relay.start()
    source.eventually(lambda: setup.health().get("ok") is True, "reading the binlog")
    setup.arrange.put(row(room, 1))
    source.eventually(lambda: setup.hints_seen() == [MessageHint(room, 1)], "the first hint")
    assert source.stop() == 0
