"""The `Pipeline` port on the embedded engine (`MIG_ENGINE=embedded`): where the capture
pipeline is, read from the files the pipeline's processes share (`MIG_EMBEDDED_DIR/log`,
`newcore/adapters/embedded/file_topics.py`), without joining any group and without writing
anything of its own (a look never moves an offset, an epoch or a checkpoint).

The same stages as the Kafka adapter (`migrator/adapters/kafka/pipeline.py`), in the same order,
each looked at only once the one before it is past, remembered per frontier:

1. the binlog source's last checkpoint (`FileTopics.checkpoint`, under its identity, the
   transactional id) is at or past the frontier's position, or the binlog between them is
   quiet (no commit, DDL or watched row: `quiet_between`, the Kafka adapter's own reading of
   the binlog, so an idle monolith is not late forever). Its hints up to the checkpoint were
   appended in the same transaction;
2. then the hints topic's ends are taken (once), and the capturer's group must have committed
   at least that far on every partition;
3. then the events topic's ends are taken (once, after the capturer got there: its events and
   its offsets are committed together), and the updater's group must have committed that far.

No transaction markers here: a partition's end is the number of its records, so a caught-up
group's committed position equals it and `capture_lag` is exactly the hints not yet consumed.
Reads take the topics' lock shared: a look never sees half a transaction, and a transaction a
killed writer left committed is completed first (the only write a look can cause, the one any
reader of the topics makes).

`mark()` asks the monolith's MariaDB where its binlog ends (SHOW MASTER STATUS), as on Kafka.

Errors: the embedded directory never used by a pipeline: EventLogUnavailable saying so
(`make pipeline ENGINE=embedded`); a checkpoint that is not a binlog position, or topics with
another partition count: EventLogMisconfigured; MariaDB unreachable in `mark`:
BinlogUnavailable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from legacy_adapters.adapters.mariadb.binlog_reader import current_position
from legacy_adapters.domain.binlog_rows import BinlogPosition
from legacy_adapters.settings import BinlogSourceSettings, LegacyDatabaseSettings
from migrator.adapters.kafka.pipeline import quiet_between
from migrator.domain.parity import binlog_order
from migrator.ports import Frontier
from newcore.adapters.embedded.file_event_log import TOPICS_MARKER
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.errors import EventLogMisconfigured, EventLogUnavailable
from newcore.settings import TopicSettings

log = logging.getLogger("chat-migrate.pipeline")

REMEMBERED = 64  # frontiers whose progress is kept


@dataclass
class _Progress:
    """How far a frontier's look got (stages in order)."""

    source_past: bool = False
    hints_ends: list[int] | None = None
    hints_left: set[int] = field(default_factory=set)
    events_ends: list[int] | None = None
    events_left: set[int] = field(default_factory=set)
    done: bool = False


class FilePipeline:
    def __init__(
        self,
        topics: FileTopics,
        names: TopicSettings,
        binlog: BinlogSourceSettings,
        database: LegacyDatabaseSettings,
        capturer_group: str,
        updater_group: str,
    ) -> None:
        """`topics`: the embedded topics the pipeline's processes share; `names`: the topics'
        names (MIG_TOPIC_*); `binlog.transactional_id`: the binlog source's identity."""
        self._topics = topics
        self._names = names
        self._binlog = binlog
        self._database = database
        self._capturer = capturer_group
        self._updater = updater_group
        self._progress: OrderedDict[Frontier, _Progress] = OrderedDict()

    # -- the port ------------------------------------------------------------------------

    async def mark(self) -> Frontier:
        position = await asyncio.to_thread(current_position, self._database)
        return Frontier(str(position), time.time())

    async def reached(self, frontier: Frontier) -> bool:
        binlog_order(frontier.binlog)  # a frontier that is not a position: ValueError now
        progress = self._progress.get(frontier)
        if progress is None:
            progress = self._progress[frontier] = _Progress()
            while len(self._progress) > REMEMBERED:
                self._progress.popitem(last=False)
        if progress.done:
            return True
        self._ran()
        if not progress.source_past:
            if not await self._source_past(frontier):
                return False
            progress.source_past = True
        hints, events = self._names.hints, self._names.events
        if progress.hints_ends is None:
            progress.hints_ends = await asyncio.to_thread(self._topics.log(hints).ends)
            progress.hints_left = set(range(len(progress.hints_ends)))
        progress.hints_left = await self._left(
            self._capturer, hints, progress.hints_ends, progress.hints_left
        )
        if progress.hints_left:
            return False
        if progress.events_ends is None:
            progress.events_ends = await asyncio.to_thread(self._topics.log(events).ends)
            progress.events_left = set(range(len(progress.events_ends)))
        progress.events_left = await self._left(
            self._updater, events, progress.events_ends, progress.events_left
        )
        if progress.events_left:
            return False
        progress.done = True
        return True

    async def capture_lag(self) -> int:
        self._ran()
        log_ = self._topics.log(self._names.hints)
        ends = await asyncio.to_thread(log_.ends)
        lag = 0
        for partition, end in enumerate(ends):
            lag += max(0, end - await log_.committed(self._capturer, partition))
        return lag

    async def close(self) -> None:
        return None

    # -- the stages ----------------------------------------------------------------------

    def _ran(self) -> None:
        """Refuses a directory no pipeline process ever used (the first one records the
        partition count there): looking must not make one."""
        if not (self._topics.root / TOPICS_MARKER).exists():
            raise EventLogUnavailable(
                f"no embedded pipeline has run at {self._topics.root} (MIG_EMBEDDED_DIR): "
                "start it (make pipeline ENGINE=embedded)"
            )

    async def source_checkpoint(self) -> str | None:
        self._ran()
        position = await self._source_position()
        return None if position is None else str(position)

    async def _source_position(self) -> BinlogPosition | None:
        identity = self._binlog.transactional_id
        raw = await asyncio.to_thread(self._topics.checkpoint, identity)
        if raw is None:
            log.info("no checkpoint of the binlog source yet", extra={"identity": identity})
            return None
        try:
            return BinlogPosition.decode(raw)
        except ValueError as exc:
            raise EventLogMisconfigured(
                f"the binlog source's checkpoint {identity} in {self._topics.root} is not a "
                f"binlog position: {exc}"
            ) from None

    async def _source_past(self, frontier: Frontier) -> bool:
        position = await self._source_position()
        if position is None:
            return False
        if binlog_order(str(position)) >= binlog_order(frontier.binlog):
            return True
        return await asyncio.to_thread(quiet_between, self._database, position, frontier.binlog)

    async def _left(self, group: str, topic: str, ends: list[int], left: set[int]) -> set[int]:
        """The partitions of `left` where the group has not consumed up to `ends`."""
        log_ = self._topics.log(topic)
        return {p for p in left if await log_.committed(group, p) < ends[p]}
