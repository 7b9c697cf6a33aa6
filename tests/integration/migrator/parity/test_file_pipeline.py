"""The Pipeline port on the embedded engine (the files the pipeline's processes share) with the
real MariaDB for the binlog: the contract suite, played by a rig that writes and commits as the
binlog source (the embedded checkpointed log), the capturer (the embedded subscription's
transactions) and the updater (its commits) do, on a directory of its own; and the errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text

from legacy_adapters.adapters.mariadb.binlog_reader import current_position
from legacy_adapters.domain.binlog_rows import BinlogPosition
from legacy_adapters.settings import BinlogSourceSettings, LegacyDatabaseSettings
from migrator.adapters.embedded.file_pipeline import FilePipeline
from migrator.ports import Pipeline
from newcore.adapters.embedded.file_checkpointed_log import FileCheckpointedLog
from newcore.adapters.embedded.file_subscription import FileSubscription
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.domain.hints import MessageHint
from newcore.errors import EventLogMisconfigured, EventLogUnavailable
from newcore.ports import Append
from newcore.settings import TopicSettings
from newcore.wire.hints import encode_hint
from tests.contracts.pipeline import PARTITIONS, PipelineContract, PipelineRig
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack

NAMES = TopicSettings(hints="hints", events="events", dead_letters="dead", partitions=PARTITIONS)
BINLOG = BinlogSourceSettings(transactional_id="binlog-source")


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


class FileRig:
    def __init__(self, root: Path, database: LegacyDatabaseSettings, scratch: Engine) -> None:
        # Each part with topics of its own on the one directory, as each is a process.
        self.database = database
        self.file_pipeline = FilePipeline(
            FileTopics(root, PARTITIONS), NAMES, BINLOG, database, "capturer", "updater"
        )
        self._scratch = scratch
        self._source = FileCheckpointedLog(FileTopics(root, PARTITIONS), BINLOG.transactional_id)
        self._capturer = FileSubscription(FileTopics(root, PARTITIONS), NAMES.hints, "capturer")
        self._updater = FileSubscription(FileTopics(root, PARTITIONS), NAMES.events, "updater")

    @property
    def pipeline(self) -> Pipeline:
        return self.file_pipeline

    async def start(self) -> FileRig:
        await self._source.start()
        await self._capturer.start()
        await self._updater.start()
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
        appends = [Append(NAMES.hints, room, encode_hint(MessageHint(room, 1))) for room in rooms]
        await self._source.append(appends, position.encode())

    async def capture(self) -> None:
        """As chat-capturer: per batch, an event per hint and the position after it, in one
        transaction."""
        while True:
            async with self._capturer.poll(1000, 0) as batches:
                for batch in batches:
                    events = [
                        Append(NAMES.events, r.room_id, f"event of hint {r.position}".encode())
                        for r in batch.records
                    ]
                    await self._capturer.transact(
                        batch.partition, events, batch.records[-1].position + 1
                    )
            if not batches:
                return

    async def update(self) -> None:
        """As chat-updater: the position after the last event applied."""
        while True:
            async with self._updater.poll(1000, 0) as batches:
                if batches:
                    await self._updater.commit(
                        {b.partition: b.records[-1].position + 1 for b in batches}
                    )
            if not batches:
                return

    async def close(self) -> None:
        await self.file_pipeline.close()
        await self._source.close()


class TestFilePipeline(PipelineContract):
    @pytest.fixture(autouse=True)
    def _services(self, stack: Stack, scratch: Engine, tmp_path: Path) -> None:
        self._database = server(stack)
        self._scratch = scratch
        self._root = tmp_path

    async def rig(self) -> PipelineRig:
        root = self._root / f"rig-{len(list(self._root.iterdir()))}"
        return await FileRig(root, self._database, self._scratch).start()


def test_a_directory_no_pipeline_used_is_unavailable_and_left_alone(
    stack: Stack, tmp_path: Path
) -> None:
    """Looking must not make an embedded pipeline: nothing is written there, and the error
    says how to start one."""

    async def scenario() -> None:
        pipeline = FilePipeline(
            FileTopics(tmp_path / "none", PARTITIONS), NAMES, BINLOG, server(stack), "c", "u"
        )
        frontier = await pipeline.mark()
        with pytest.raises(EventLogUnavailable, match=r"make pipeline ENGINE=embedded"):
            await pipeline.reached(frontier)
        with pytest.raises(EventLogUnavailable, match=r"no embedded pipeline has run"):
            await pipeline.capture_lag()

    asyncio.run(scenario())
    assert not (tmp_path / "none").exists()


def test_a_checkpoint_that_is_not_a_binlog_position_is_misconfigured(
    stack: Stack, tmp_path: Path
) -> None:
    async def scenario() -> None:
        topics = FileTopics(tmp_path, PARTITIONS)
        source = FileCheckpointedLog(topics, BINLOG.transactional_id)
        await source.start()
        await source.append([], b"not a position")
        pipeline = FilePipeline(topics, NAMES, BINLOG, server(stack), "c", "u")
        with pytest.raises(EventLogMisconfigured, match="is not a binlog position"):
            await pipeline.reached(await pipeline.mark())

    asyncio.run(scenario())
