"""The Pipeline port on the real Kafka and MariaDB: the contract suite, played by a rig that
writes and commits as the binlog source, the capturer and the updater do (transactions,
offsets after the last record), on topics and groups of its own; what the transaction markers
do to end offsets, seen on this Kafka; the binlog read between a checkpoint and a frontier;
and the errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence

import pymysql
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr
from sqlalchemy import Engine, text

from legacy_adapters.adapters.mariadb.binlog_reader import current_position
from legacy_adapters.domain.binlog_rows import BinlogPosition
from legacy_adapters.settings import BinlogSourceSettings, LegacyDatabaseSettings
from migrator.adapters.kafka.pipeline import KafkaPipeline, quiet_between
from migrator.ports import Frontier, Pipeline
from newcore.adapters.kafka.checkpoints import KafkaCheckpointedLog, ensure_checkpoint_topic
from newcore.adapters.kafka.event_log import KafkaEventLog, ensure_topic
from newcore.domain.hints import MessageHint
from newcore.errors import EventLogUnavailable, Unavailable
from newcore.ports import Append
from newcore.settings import KafkaSettings, TopicSettings
from newcore.wire.hints import encode_hint
from tests.contracts.pipeline import PARTITIONS, PipelineContract, PipelineRig
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack, require_port


def server(stack: Stack) -> LegacyDatabaseSettings:
    return LegacyDatabaseSettings(
        mariadb_host=stack.host, mariadb_port=stack.mariadb_port, db_name=stack.db_name,
        db_user=stack.db_user, db_password=SecretStr(stack.db_password),
    )  # fmt: skip


@pytest.fixture(scope="module")
def scratch(stack: Stack) -> Iterator[Engine]:
    """A scratch database where the rig's "monolith" commits its transactions."""
    with scratch_database(stack) as (_, engine):
        yield engine


class KafkaRig:
    def __init__(self, stack: Stack, scratch: Engine) -> None:
        name = f"parity-pipe-{uuid.uuid4().hex[:10]}"
        self.name = name
        self.kafka = KafkaSettings(bootstrap=stack.kafka_bootstrap, request_timeout_ms=10_000)
        self.topics = TopicSettings(
            hints=f"{name}.hints", events=f"{name}.events", dead_letters=f"{name}.dead",
            partitions=PARTITIONS,
        )  # fmt: skip
        self.binlog = BinlogSourceSettings(
            checkpoint_topic=f"{name}.cp", transactional_id=f"{name}-binlog"
        )
        self.database = server(stack)
        self.capturer_group, self.updater_group = f"{name}-capturer", f"{name}-updater"
        self.kafka_pipeline = KafkaPipeline(
            self.kafka, self.topics, self.binlog, self.database, self.capturer_group,
            self.updater_group,
        )  # fmt: skip
        self._scratch = scratch
        self._source = KafkaCheckpointedLog(
            self.kafka, self.topics, self.binlog.checkpoint_topic, self.binlog.transactional_id,
            15_000,
        )  # fmt: skip
        self.hints = KafkaEventLog(self.kafka, self.topics.hints, PARTITIONS)
        self.events = KafkaEventLog(self.kafka, self.topics.events, PARTITIONS)
        self._capturer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None

    @property
    def pipeline(self) -> Pipeline:
        return self.kafka_pipeline

    async def start(self) -> KafkaRig:
        await ensure_topic(self.kafka, self.topics.events, PARTITIONS)
        await self._source.start()  # the hints and checkpoint topics, as the source makes them
        await ensure_checkpoint_topic(self.kafka, self.binlog.checkpoint_topic)
        return self

    async def write(self) -> None:
        def insert() -> None:
            with self._scratch.begin() as conn:
                conn.execute(text("INSERT INTO rooms (name) VALUES ('pipeline contract')"))

        await asyncio.to_thread(insert)

    async def source(self, rooms: Sequence[int], at: str | None = None) -> None:
        if at is None:
            position = await asyncio.to_thread(current_position, self.database)
        else:
            file, _, pos = at.rpartition(":")
            position = BinlogPosition(file, int(pos))
        appends = [
            Append(self.topics.hints, room, encode_hint(MessageHint(room, 1))) for room in rooms
        ]
        await self._source.append(appends, position.encode())

    async def records(self, topic: str, partition: int, start: int) -> list[int]:
        """The offsets of the committed records of the partition from `start` to its end."""
        if self._reader is None:
            self._reader = AIOKafkaConsumer(
                bootstrap_servers=self.kafka.bootstrap, isolation_level="read_committed",
                enable_auto_commit=False, fetch_max_wait_ms=50,
            )  # fmt: skip
            await self._reader.start()
        tp = TopicPartition(topic, partition)
        end = (await self._reader.end_offsets([tp]))[tp]
        if start >= end:
            return []
        self._reader.assign([tp])
        self._reader.seek(tp, start)
        found: list[int] = []
        while await self._reader.position(tp) < end:
            batch = await self._reader.getmany(tp, timeout_ms=200)
            found += [record.offset for record in batch.get(tp, []) if record.offset < end]
        return found

    async def capture(self) -> None:
        """As chat-capturer: per partition, events out and the offset after the last hint
        consumed, in one transaction."""
        if self._capturer is None:
            self._capturer = AIOKafkaProducer(
                bootstrap_servers=self.kafka.bootstrap, transactional_id=f"{self.name}-capture"
            )
            await self._capturer.start()
        for partition in range(PARTITIONS):
            start = await self.hints.committed(self.capturer_group, partition)
            offsets = await self.records(self.topics.hints, partition, start)
            if not offsets:
                continue
            await self._capturer.begin_transaction()
            for offset in offsets:
                await self._capturer.send(
                    self.topics.events, f"event of hint {offset}".encode(), partition=partition
                )
            await self._capturer.send_offsets_to_transaction(
                {TopicPartition(self.topics.hints, partition): offsets[-1] + 1},
                self.capturer_group,
            )
            await self._capturer.commit_transaction()

    async def update(self) -> None:
        """As chat-updater: the offset after the last event applied."""
        for partition in range(PARTITIONS):
            start = await self.events.committed(self.updater_group, partition)
            offsets = await self.records(self.topics.events, partition, start)
            if offsets:
                await self.events.commit(self.updater_group, {partition: offsets[-1] + 1})

    async def ends(self, topic: str) -> dict[int, int]:
        reader = KafkaEventLog(self.kafka, topic, PARTITIONS)
        try:
            consumer = await reader._consumer(None)
            found = await consumer.end_offsets(
                [TopicPartition(topic, p) for p in range(PARTITIONS)]
            )
            return {tp.partition: offset for tp, offset in found.items()}
        finally:
            await reader.close()

    async def close(self) -> None:
        await self.kafka_pipeline.close()
        await self._source.close()
        await self.hints.close()
        await self.events.close()
        if self._capturer is not None:
            await self._capturer.stop()
        if self._reader is not None:
            await self._reader.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(
                [self.topics.hints, self.topics.events, self.topics.dead_letters,
                 self.binlog.checkpoint_topic]
            )  # fmt: skip
        finally:
            await admin.close()


class TestKafkaPipeline(PipelineContract):
    @pytest.fixture(autouse=True)
    def _services(self, stack: Stack, scratch: Engine) -> None:
        require_port("Kafka", stack.host, stack.kafka_port)
        self._stack = stack
        self._scratch = scratch

    async def rig(self) -> PipelineRig:
        return await KafkaRig(self._stack, self._scratch).start()


def test_transaction_markers_keep_committed_offsets_below_the_end_and_the_pipeline_is_caught_up(
    stack: Stack, scratch: Engine
) -> None:
    """What the brief assumed (a read_committed consumer's committed offset reaches the end
    offset after a marker) does not hold for our workers: they commit the offset after their
    last record, one below the end. Looking past it finds markers only."""

    async def scenario() -> None:
        rig = await KafkaRig(stack, scratch).start()
        try:
            room = 3
            await rig.source([room])
            await rig.capture()
            await rig.update()
            hint_ends, event_ends = (
                await rig.ends(rig.topics.hints),
                await rig.ends(rig.topics.events),
            )
            written = [p for p, end in hint_ends.items() if end]
            assert len(written) == 1
            (partition,) = written
            assert hint_ends[partition] == 2  # the hint at 0, the commit marker at 1
            assert await rig.hints.committed(rig.capturer_group, partition) == 1
            assert event_ends[partition] == 2
            assert await rig.events.committed(rig.updater_group, partition) == 1
            frontier = await rig.pipeline.mark()
            await rig.source([])
            assert await rig.pipeline.reached(frontier) is True
            assert await rig.pipeline.capture_lag() == 1  # the marker counts
        finally:
            await rig.close()

    asyncio.run(scenario())


def test_the_binlog_between_a_checkpoint_and_a_frontier_is_read_on_the_real_server(
    stack: Stack,
) -> None:
    """A new binlog file's first events (its header, the GTID list, the binlog checkpoint)
    carry no change: a checkpoint at the file's start counts as past a frontier after them;
    the whole file so far (with its transactions) does not."""
    database = server(stack)
    end = current_position(database)
    connection = pymysql.connect(
        host=stack.host, port=stack.mariadb_port, user=stack.db_user, password=stack.db_password
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW BINLOG EVENTS IN %s FROM %s LIMIT %s", (end.file, 4, 10))
            events = cursor.fetchall()
    finally:
        connection.close()
    first_change = next(int(row[1]) for row in events if row[2] not in (
        "Format_desc", "Gtid_list", "Binlog_checkpoint"))  # fmt: skip
    start = BinlogPosition(end.file, 4)
    assert quiet_between(database, start, f"{end.file}:{first_change}") is True
    assert quiet_between(database, start, str(end)) is False  # transactions since
    # A checkpoint that is no event boundary: the server refuses the read, and doubt is "no".
    assert quiet_between(database, BinlogPosition(end.file, 5), str(end)) is False


def test_a_pipeline_that_has_not_run_and_services_that_are_down_are_errors(
    stack: Stack, scratch: Engine
) -> None:
    async def scenario() -> None:
        rig = KafkaRig(stack, scratch)  # not started: no topic exists
        try:
            frontier = await rig.pipeline.mark()
            with pytest.raises(EventLogUnavailable, match="make pipeline"):
                await rig.pipeline.reached(frontier)
            with pytest.raises(EventLogUnavailable, match="make pipeline"):
                await rig.pipeline.capture_lag()
        finally:
            await rig.kafka_pipeline.close()
            await rig.hints.close()
            await rig.events.close()
        nowhere = KafkaPipeline(
            KafkaSettings(bootstrap=f"{stack.host}:1", request_timeout_ms=1000), rig.topics,
            rig.binlog, rig.database.model_copy(update={"mariadb_port": 1}), "g", "h",
        )  # fmt: skip
        try:
            with pytest.raises(EventLogUnavailable):
                await nowhere.reached(Frontier("mariadb-bin.000001:4", 0.0))
            with pytest.raises(EventLogUnavailable):
                await nowhere.capture_lag()
            with pytest.raises(Unavailable):
                await nowhere.mark()
        finally:
            await nowhere.close()

    asyncio.run(scenario())
