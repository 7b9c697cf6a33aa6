"""`chat-capturer` as a real process on real MariaDB and Kafka (issue 4, items 5, 8 and 10).

The capturer's promise is transactional: a batch's events, follow-up hints, dead letters and
consumed offset become visible together or not at all. So after a kill -9 in the middle of the
work, every hint has produced its events exactly once, as read_committed consumers see them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import Engine

from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from legacy_adapters.domain.translation import LegacyMessageRow
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.domain.events import CursorMoved, MessageDeleted, MessageUpserted
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.domain.model import MAX_ID, Message
from newcore.domain.partitioning import partition_for
from newcore.ports import LogRecord
from newcore.service.update import apply_records
from newcore.settings import KafkaSettings
from newcore.wire.events import decode
from newcore.wire.hints import encode_hint
from tests.support import topics
from tests.support.arranger import SqlArranger
from tests.support.processes import Relay, Service, free_port
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack, require_port

PARTITIONS = 4


@dataclass
class Setup:
    kafka: KafkaSettings
    engine: Engine
    arrange: SqlArranger
    capturer: Service
    env: dict[str, str]
    hints: str
    events: str
    dead: str
    prefix: str

    def hint(self, *hints: Hint | bytes, room: int = 0) -> None:
        records = [
            (room, h) if isinstance(h, bytes) else (h.room_id, encode_hint(h)) for h in hints
        ]
        asyncio.run(topics.append(self.kafka, self.hints, PARTITIONS, records))

    def events_read(self) -> list[LogRecord]:
        return asyncio.run(topics.read_all(self.kafka, self.events, PARTITIONS))

    def dead_letters(self) -> list[dict[str, object]]:
        found = asyncio.run(topics.read_all(self.kafka, self.dead, PARTITIONS))
        return [json.loads(record.value) for record in found]

    def metric(self, line_start: str, *, present: bool = False) -> float:
        """The sample's value; 0 when the process has no such sample yet, unless `present`
        (then its absence fails the test)."""
        for line in self.capturer.ops("/metrics")[1].decode().splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
        assert not present, f"no sample {line_start} in the capturer's /metrics"
        return 0.0


@pytest.fixture
def setup(stack: Stack, tmp_path: Path) -> Iterator[Setup]:
    require_port("Kafka", stack.host, stack.kafka_port)
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap=stack.kafka_bootstrap)
    hints, events, dead = f"test-{run}.hints", f"test-{run}.events", f"test-{run}.dead"
    with scratch_database(stack) as (database, engine):
        ops_port = free_port()
        env = {
            **os.environ,
            "MIG_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MIG_MARIADB_PORT": str(stack.mariadb_port),
            "MIG_DB_NAME": database.db_name,
            "MIG_TOPIC_HINTS": hints,
            "MIG_TOPIC_EVENTS": events,
            "MIG_TOPIC_DEAD_LETTERS": dead,
            "MIG_TOPIC_PARTITIONS": str(PARTITIONS),
            "MIG_CAPTURER_GROUP": f"test-{run}",
            "MIG_CAPTURER_TRANSACTIONAL_ID_PREFIX": f"test-{run}",
            "MIG_CAPTURER_OPS_PORT": str(ops_port),
            "MIG_CAPTURER_BACKOFF_MS": "200",
            "MIG_CAPTURER_MAX_BACKOFF_MS": "1000",
        }
        capturer = Service("newcore.entrypoints.capturer", env, tmp_path, ops_port)
        try:
            yield Setup(
                kafka,
                engine,
                SqlArranger(engine),
                capturer,
                env,
                hints,
                events,
                dead,
                f"test-{run}",
            )
        finally:
            capturer.ensure_gone()


def row(room: int, mid: int, **fields: object) -> LegacyMessageRow:
    values: dict[str, object] = dict(
        message_id=mid, room_id=room, account_id=5, body=f"本文 {mid} 😀", body_v1=None,
        body_raw=None, send_time=1_700_000_000 + mid, update_time=0,
        created_at="2023-11-15 07:13:20", deleted=0,
    )  # fmt: skip
    values.update(fields)
    return LegacyMessageRow(**values)  # type: ignore[arg-type]


def read_model_of(records: list[LogRecord], path: Path) -> SqliteReadStore:
    """The events applied to an embedded read store: what an updater would make of them."""
    store = SqliteReadStore(path)
    assert apply_records(records, store) == []
    return store


def monolith_messages(engine: Engine, room: int) -> list[Message]:
    return MariaDbMonolithReader(engine).read_range(room, 1, MAX_ID, 100_000).live


def test_each_hint_captured_exactly_once_across_a_kill_9(setup: Setup, tmp_path: Path) -> None:
    room, other = 77, 78
    setup.arrange.add_room(room)
    setup.arrange.add_room(other)
    setup.arrange.put_many([row(room, mid) for mid in range(1, 3001)])
    setup.arrange.put_many(
        [row(other, mid) for mid in range(5001, 5011)] + [row(other, 5011, body=None)]
    )
    setup.arrange.move_cursor(room, 5, 10, 20)
    setup.hint(*(MessageHint(room, mid) for mid in range(1, 3001)))
    setup.hint(CursorHint(room, 5), RangeHint(other, 1, MAX_ID), MessageHint(999, 1))
    setup.hint(b"nonsense", room=room)

    capturer = setup.capturer.start(MIG_CAPTURER_MAX_RECORDS="20")
    capturer.eventually(
        lambda: setup.metric('chat_capturer_transactions_total{outcome="committed"}') >= 3,
        "a few transactions committed",
    )
    capturer.kill9()
    assert len({r.value for r in setup.events_read()}) < 3000 + 1 + 11, "killed too late"

    capturer.start()
    capturer.eventually(
        lambda: len(setup.events_read()) >= 3000 + 1 + 11, "every hint captured", seconds=90
    )
    time.sleep(1)  # anything captured twice would show up now
    events = [decode(r.value) for r in setup.events_read()]
    per_message = Counter(
        (e.message.room_id, e.message.message_id) for e in events if isinstance(e, MessageUpserted)
    )
    assert set(per_message) == {(room, m) for m in range(1, 3001)} | {
        (other, m) for m in range(5001, 5012)
    }
    assert max(per_message.values()) == 1, "a hint was captured twice"
    (cursor,) = (e for e in events if isinstance(e, CursorMoved))
    assert cursor.cursor.last_read_message_id == 10 and cursor.cursor.last_fetched_message_id == 20

    letters = {str(letter["reason"]): letter for letter in setup.dead_letters()}
    assert len(letters) == 3, list(letters)
    unknown_room = letters["room 999 does not exist in the monolith"]
    assert unknown_room["source"] == "hints" and unknown_room["room_id"] == "999"
    no_body = letters["no body in body, body_v1 or body_raw: shown as empty"]
    assert no_body["source"] == "monolith:messages" and no_body["key"] == "5011"
    (garbage,) = (v for k, v in letters.items() if k.startswith("not UTF-8 JSON"))
    assert base64.b64decode(str(garbage["record_b64"])) == b"nonsense"

    # The dead-letter counter counts, and the pipeline goes on after a bad hint.
    before = setup.metric('chat_capturer_dead_letters_total{source="hints"}')
    setup.hint(b'{"v": 7}', room=room)
    capturer.eventually(
        lambda: setup.metric('chat_capturer_dead_letters_total{source="hints"}') == before + 1,
        "the bad hint counted",
    )
    # A foreign record: a 12-byte key (no room id) and JSON nested past any parser's depth.
    asyncio.run(topics.send_raw(setup.kafka, setup.hints, 2, b"k" * 12, b"[" * 4000))
    capturer.eventually(
        lambda: setup.metric('chat_capturer_dead_letters_total{source="hints"}') == before + 2,
        "the foreign hint counted",
    )
    foreign = [
        v
        for v in setup.dead_letters()
        if v["reason"] == "not UTF-8 JSON we read: nested too deeply"
    ]
    assert [letter["room_id"] for letter in foreign] == ["0"]

    # Later writes, hinted: an edit, a soft delete and a purge reach the events too.
    setup.arrange.update(7, body="edited", update_time=1_700_000_100)
    setup.arrange.update(8, deleted=1)
    setup.arrange.purge(9)
    setup.hint(MessageHint(room, 7), MessageHint(room, 8), MessageHint(room, 9))
    capturer.eventually(
        lambda: sum(isinstance(decode(r.value), MessageDeleted) for r in setup.events_read()) == 2,
        "the deletes captured",
    )
    store = read_model_of(setup.events_read(), tmp_path / "model.db")
    try:
        assert store.latest(room, 5000) == monolith_messages(setup.engine, room)
        assert store.latest(other, 100) == monolith_messages(setup.engine, other)
        message = store.message(room, 7)
        assert message is not None and message.body == "edited"
    finally:
        store.close()

    health = json.loads(capturer.ops("/healthz")[1])
    assert health["ok"] is True and health["monolith"] == "up"
    assert sorted(health["owned_partitions"]) == list(range(PARTITIONS))
    assert capturer.stop() == 0
    assert '"msg": "capturer stopped"' in capturer.log()


def test_a_monolith_outage_pauses_then_resumes_without_losing_hints(
    setup: Setup, stack: Stack
) -> None:
    room = 81
    setup.arrange.add_room(room)
    setup.arrange.put_many([row(room, mid) for mid in range(1, 21)])
    relay = Relay(stack.mariadb_port)
    relay.start()
    capturer = setup.capturer.start(MIG_MARIADB_PORT=str(relay.port))
    setup.hint(*(MessageHint(room, mid) for mid in range(1, 11)))
    capturer.eventually(lambda: len(setup.events_read()) == 10, "the first hints captured")
    relay.cut()
    setup.hint(*(MessageHint(room, mid) for mid in range(11, 21)))
    capturer.eventually(
        lambda: capturer.ops("/healthz")[0] == 503, "unhealthy while MariaDB is cut off"
    )
    health = json.loads(capturer.ops("/healthz")[1])
    assert health["monolith"] == "unavailable" and health["paused_partitions"]
    time.sleep(3)  # several backoffs while cut off: the process stays up, nothing is skipped
    assert capturer.alive and len(setup.events_read()) == 10
    relay.start()
    capturer.eventually(
        lambda: len(setup.events_read()) == 20, "the held-back hints after MariaDB returns"
    )
    capturer.eventually(lambda: capturer.ops("/healthz")[0] == 200, "healthy again")
    assert setup.metric("chat_capturer_monolith_unavailable_total") >= 1


def test_a_fenced_capturer_gives_the_partition_up_until_the_group_reassigns_it(
    setup: Setup, tmp_path: Path
) -> None:
    room = 91
    partition = partition_for(room, PARTITIONS)
    setup.arrange.add_room(room)
    setup.arrange.put_many([row(room, mid) for mid in range(1, 4)])
    first = setup.capturer.start()
    setup.hint(MessageHint(room, 1))
    first.eventually(lambda: len(setup.events_read()) == 1, "the first hint captured")

    async def fence() -> AIOKafkaProducer:
        zombie_killer = AIOKafkaProducer(
            bootstrap_servers=setup.kafka.bootstrap,
            transactional_id=f"{setup.prefix}-{setup.hints}-{partition}",
        )
        await zombie_killer.start()  # a newer producer of the same id: the capturer's is fenced
        await zombie_killer.stop()
        return zombie_killer

    asyncio.run(fence())
    setup.hint(MessageHint(room, 2))
    first.eventually(
        lambda: (
            json.loads(first.ops("/healthz")[1] or b"{}").get("fenced_partitions") == [partition]
        ),
        "the capturer knows it was fenced",
    )
    assert first.ops("/healthz")[0] == 503
    assert len(setup.events_read()) == 1, "a fenced producer's events became visible"

    # A second member joins: the group rebalances, the partition is owned (and fenced) anew.
    second = Service("newcore.entrypoints.capturer", setup.env, tmp_path / "second", free_port())
    (tmp_path / "second").mkdir()
    second.start(MIG_CAPTURER_OPS_PORT=str(second.ops_port))
    try:
        first.eventually(
            lambda: len(setup.events_read()) == 2, "the hint captured after the rebalance"
        )
        assert Counter(
            decode(r.value).message.message_id  # type: ignore[union-attr]
            for r in setup.events_read()
        ) == {1: 1, 2: 1}
    finally:
        second.ensure_gone()


def test_an_event_too_large_for_kafka_is_a_dead_letter_and_the_partition_goes_on(
    setup: Setup,
) -> None:
    """A 1.5 MB body (MEDIUMTEXT holds 16 MB) makes an event Kafka refuses at its default
    limits, on every retry: without a limit of our own the room's partition would stall."""
    room = 83
    setup.arrange.add_room(room)
    setup.arrange.put_many(
        [row(room, 1), row(room, 2, body="長" * 500_000), row(room, 3)]  # 1.5 MB of UTF-8
    )
    capturer = setup.capturer.start()  # the default limit, just under Kafka's defaults
    setup.hint(MessageHint(room, 1), MessageHint(room, 2), MessageHint(room, 3))
    capturer.eventually(lambda: len(setup.events_read()) == 2, "the small messages captured")
    setup.hint(MessageHint(room, 3))
    capturer.eventually(lambda: len(setup.events_read()) == 3, "the partition still moves")
    captured = {decode(r.value).message.message_id for r in setup.events_read()}  # type: ignore[union-attr]
    assert captured == {1, 3}
    (letter,) = setup.dead_letters()
    assert letter["source"] == "capture" and letter["key"] == "2" and letter["room_id"] == "83"
    assert "exceeds the event log's limit of 1000000" in str(letter["reason"])
    assert setup.metric('chat_capturer_dead_letters_total{source="capture"}') == 1
    assert capturer.stop() == 0


def test_a_kafka_outage_puts_batches_back_without_busy_looping_and_loses_no_hint(
    setup: Setup, stack: Stack, kafka_relay: Relay
) -> None:
    """Kafka cut off in the middle of the work (the test's own clients still reach it): the
    transactions in flight fail, the process waits without spinning, and once Kafka is back
    every hint has produced its events exactly once."""
    room = 85
    setup.arrange.add_room(room)
    setup.arrange.put_many([row(room, mid) for mid in range(1, 2001)])
    setup.hint(*(MessageHint(room, mid) for mid in range(1, 2001)))
    capturer = setup.capturer.start(
        MIG_KAFKA_BOOTSTRAP=stack.kafka_relay_bootstrap,
        MIG_CAPTURER_MAX_RECORDS="20",
        MIG_CAPTURER_TRANSACTION_TIMEOUT_MS="20000",  # a transaction may hang 5 s: the outage
    )  # is noticed sooner
    capturer.eventually(
        lambda: setup.metric('chat_capturer_transactions_total{outcome="committed"}') >= 3,
        "a few transactions committed",
    )
    kafka_relay.cut()
    capturer.eventually(lambda: capturer.ops("/healthz")[0] == 503, "unhealthy while cut off")
    assert json.loads(capturer.ops("/healthz")[1])["kafka"] == "unavailable"
    during = len(setup.events_read())
    assert during < 2000, "cut off too late to show anything"
    spent = capturer.cpu_seconds()
    time.sleep(5)
    assert capturer.cpu_seconds() - spent < 1.0, "busy while waiting for Kafka"
    assert capturer.alive and len(setup.events_read()) == during

    kafka_relay.start()
    capturer.eventually(
        lambda: len(setup.events_read()) >= 2000, "every hint captured once Kafka is back",
        seconds=120,
    )  # fmt: skip
    time.sleep(1)  # anything captured twice would show up now
    captured = Counter(decode(r.value).message.message_id for r in setup.events_read())  # type: ignore[union-attr]
    assert set(captured) == set(range(1, 2001)) and max(captured.values()) == 1
    capturer.eventually(lambda: capturer.ops("/healthz")[0] == 200, "healthy again")
    assert capturer.stop() == 0


def test_kafka_down_at_start_is_waited_for_and_an_idle_cut_is_unhealthy(
    setup: Setup, stack: Stack, kafka_relay: Relay
) -> None:
    room = 86
    setup.arrange.add_room(room)
    setup.arrange.put_many([row(room, mid) for mid in range(1, 6)])
    setup.hint(*(MessageHint(room, mid) for mid in range(1, 6)))
    kafka_relay.cut()
    overrides = {"MIG_KAFKA_BOOTSTRAP": stack.kafka_relay_bootstrap, "MIG_KAFKA_SILENCE_MS": "6000"}
    capturer = setup.capturer.start(**overrides)
    capturer.eventually(lambda: "waiting for Kafka" in capturer.log(), "waiting for Kafka")
    status, body = capturer.ops("/healthz")
    assert status == 503 and json.loads(body)["kafka"] == "unavailable"
    assert setup.metric("chat_capturer_hints_total", present=True) == 0  # served while waiting
    assert capturer.stop() == 0  # told to stop while waiting: a clean exit, at once

    capturer.start(**overrides)
    capturer.eventually(lambda: "waiting for Kafka" in capturer.log(), "waiting for Kafka again")
    spent = capturer.cpu_seconds()
    time.sleep(3)
    assert capturer.cpu_seconds() - spent < 0.6, "busy while waiting for Kafka"
    kafka_relay.start()
    capturer.eventually(
        lambda: len(setup.events_read()) == 5, "the hints captured once Kafka is up"
    )
    capturer.eventually(lambda: capturer.ops("/healthz")[0] == 200, "healthy")
    assert setup.metric("chat_capturer_hints_total", present=True) == 5
    home = f'chat_capturer_lag_records{{partition="{partition_for(room, PARTITIONS)}"}}'
    capturer.eventually(lambda: setup.metric(home, present=True) == 0, "the lag caught up")

    # Cut off while idle: no transaction fails, the silence of its fetches tells.
    kafka_relay.cut()
    capturer.eventually(lambda: capturer.ops("/healthz")[0] == 503, "unhealthy once silent")
    health = json.loads(capturer.ops("/healthz")[1])
    assert health["kafka"] == "unavailable" and health["fetch_silence_s"] >= 6
    assert capturer.stop() == 0  # and a stop while cut off is clean too
    assert "Traceback" not in capturer.log()


def test_a_topic_with_another_partition_count_stops_it_with_exit_3(setup: Setup) -> None:
    """Retrying cannot fix a misconfiguration, and running on would move rooms to other
    partitions: the one reason to exit rather than wait."""
    setup.hint(MessageHint(1, 1))  # the hints topic now exists with PARTITIONS partitions
    capturer = setup.capturer.start(MIG_TOPIC_PARTITIONS=str(PARTITIONS + 1))
    assert capturer.process is not None and capturer.process.wait(60) == 3
    assert f"has {PARTITIONS} partitions, expected {PARTITIONS + 1}" in capturer.log()
