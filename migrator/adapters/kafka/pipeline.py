"""The `Pipeline` port on Kafka: where the capture pipeline is, read without joining any
consumer group and without writing anything (a look never moves an offset or a checkpoint).

- `mark()`: the monolith's binlog position now (SHOW MASTER STATUS on its MariaDB) and the
  time.
- `reached(frontier)`, in the pipeline's order, each stage looked at only once the one before
  it is past, and remembered per frontier (a later look checks only what was left):
  1. the binlog source's last committed checkpoint (`last_checkpoint` of its checkpoint topic,
     keyed by its transactional id; `BinlogPosition`) is at or past the frontier's position,
     compared by file sequence number, then offset (`binlog_order`). Its hints up to the
     checkpoint are committed in the same transaction, so they are in the hints topic now;
  2. then the hints topic's end offsets are taken (once, read_committed: the last stable
     offset), and the capturer's group must have committed at least that far on every
     partition;
  3. then the events topic's end offsets are taken (once, after the capturer got there: its
     events and its offsets are committed together), and the updater's group must have
     committed at least that far. The updater commits after the read store's `apply`
     returned, so everything is applied.
- `capture_lag()`: over the hints topic's partitions, end offset minus the capturer's
  committed offset.

**Transaction markers** (seen on this stack's Kafka:
`tests/integration/migrator/parity/test_kafka_pipeline.py`): the binlog source and the capturer write in transactions, and each
commit puts a marker record after the data in every partition it wrote, so a partition's end
offset is one past its last record. Our workers commit the offset after the last *record*
they processed (`records[-1].position + 1`), never past the marker: on an idle pipeline the
group's committed offset stays one below the end offset for good. So where a group's offset
is below the end, what lies between is read (read_committed, one record at most per fetch):
nothing but markers or aborted records between them means the group is caught up. For the
same reason `capture_lag` counts markers: an idle pipeline shows about one per partition
whose last write was transactional (a bound of thousands, as the backfill's throttle uses,
does not see them).

**A quiet binlog.** The binlog source checkpoints at the end of each transaction (an XID
event, or DDL). A frontier marked where the binlog ends with something else (a new binlog
file's first events after a restart or a rotation, a GRANT, a write to a table that is not
transactional) would never be passed by the checkpoint on an idle monolith. So when the
checkpoint is behind the frontier, the binlog between them is read (SHOW BINLOG EVENTS, at most
QUIET_EVENTS events): if it holds no transaction, no DDL and no row of the watched tables
(`quiet`), nothing committed there can concern the read model, and the checkpoint counts as
past. Any doubt (a commit, an event we do not know, more events than the bound, an error)
means "not yet".

Errors: Kafka unreachable or too slow: EventLogUnavailable; a topic of the pipeline missing:
EventLogUnavailable saying the pipeline has not run (`make pipeline`); a checkpoint that is not
a binlog position: EventLogMisconfigured; MariaDB unreachable in `mark`: BinlogUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pymysql
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from legacy_adapters.adapters.mariadb.binlog_reader import current_position
from legacy_adapters.domain.binlog_rows import DDL, KEYS, WATCHED, BinlogPosition
from legacy_adapters.settings import BinlogSourceSettings, LegacyDatabaseSettings
from migrator.domain.parity import binlog_order
from migrator.ports import Frontier
from newcore.adapters.kafka.checkpoints import last_checkpoint
from newcore.adapters.kafka.group import stop_quietly, within
from newcore.errors import EventLogMisconfigured, EventLogUnavailable
from newcore.settings import KafkaSettings, TopicSettings

log = logging.getLogger("chat-migrate.pipeline")

QUIET_EVENTS = 500  # binlog events read between the checkpoint and a frontier, at most
PEEK_S = 2.0  # seconds spent looking past groups' offsets for records (markers only?)
REMEMBERED = 64  # frontiers whose progress is kept

# Events that never carry a change: a file's header, GTIDs (a transaction's start; what it
# does comes after), the statement text annotating row events, rotations.
HARMLESS = frozenset(
    {"Format_desc", "Gtid_list", "Binlog_checkpoint", "Rotate", "Stop", "Start_encryption",
     "Gtid", "Annotate_rows", "Heartbeat", "Heartbeat_log"}
)  # fmt: skip
_TABLE_MAP = re.compile(r"table_id: (\d+) \((.*)\)\s*$")
_ROWS = re.compile(r"table_id: (\d+)\b")


def quiet(events: Iterable[tuple[str, str]], schema: str) -> bool:
    """Whether binlog events (SHOW BINLOG EVENTS' Event_type and Info) hold nothing that the
    binlog source would turn into hints or move its checkpoint past: no transaction commit
    (Xid), no DDL, no statement naming a watched table, no row of a watched table of the
    monolith's schema, nothing unknown."""
    watched = {f"{schema}.{table}" for table in KEYS}
    tables: dict[str, str] = {}
    for kind, info in events:
        if kind in HARMLESS:
            continue
        if kind == "Query":
            statement = info.strip()
            upper = statement.upper()
            if upper in ("BEGIN", "COMMIT", "ROLLBACK"):
                continue
            if upper.startswith(DDL) or WATCHED.search(statement):
                return False
            continue
        if kind == "Table_map":
            mapped = _TABLE_MAP.match(info.strip())
            if mapped is None or mapped.group(2) in watched:
                return False
            tables[mapped.group(1)] = mapped.group(2)
            continue
        if "_rows" in kind:
            rows = _ROWS.match(info.strip())
            if rows is None or rows.group(1) not in tables:
                return False
            continue
        return False  # Xid, and anything this version does not know
    return True


def _connect(
    database: LegacyDatabaseSettings,
) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    return pymysql.connect(
        host=database.mariadb_host, port=database.mariadb_port, user=database.db_user,
        password=database.db_password.get_secret_value(), connect_timeout=5,
    )  # fmt: skip


def quiet_between(database: LegacyDatabaseSettings, start: BinlogPosition, frontier: str) -> bool:
    """Reads the binlog from `start` (a checkpoint: an event boundary) to `frontier` and
    judges it with `quiet`; False on any doubt (module docstring)."""
    first, last = binlog_order(str(start)), binlog_order(frontier)
    events: list[tuple[str, str]] = []
    try:
        connection = _connect(database)
    except pymysql.err.MySQLError as exc:
        log.warning(
            "cannot read the binlog between checkpoint and frontier", extra={"reason": repr(exc)}
        )
        return False
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW BINARY LOGS")
            files = sorted(
                (binlog_order(f"{row[0]}:4")[0], str(row[0])) for row in cursor.fetchall()
            )
            wanted = [name for number, name in files if first[0] <= number <= last[0]]
            if len(wanted) != last[0] - first[0] + 1:
                return False  # a file in between is gone (purged) or not there yet
            for name in wanted:
                number = binlog_order(f"{name}:4")[0]
                offset = first[1] if number == first[0] else 4
                cursor.execute(
                    "SHOW BINLOG EVENTS IN %s FROM %s LIMIT %s",
                    (name, offset, QUIET_EVENTS + 1 - len(events)),
                )
                for row in cursor.fetchall():
                    if number == last[0] and int(row[1]) >= last[1]:
                        break
                    events.append((str(row[2]), str(row[5] or "")))
                if len(events) > QUIET_EVENTS:
                    return False
    except (pymysql.err.MySQLError, ValueError) as exc:
        log.warning(
            "cannot read the binlog between checkpoint and frontier", extra={"reason": repr(exc)}
        )
        return False
    finally:
        connection.close()
    return quiet(events, database.db_name)


async def _close_admin(admin: AIOKafkaAdminClient) -> None:
    with contextlib.suppress(KafkaError, TimeoutError, OSError):
        await asyncio.wait_for(admin.close(), 5)


@dataclass
class _Progress:
    """How far a frontier's look got (stages in order)."""

    source_past: bool = False
    hints_ends: dict[int, int] | None = None
    hints_left: set[int] = field(default_factory=set)
    events_ends: dict[int, int] | None = None
    events_left: set[int] = field(default_factory=set)
    done: bool = False


class KafkaPipeline:
    def __init__(
        self,
        kafka: KafkaSettings,
        topics: TopicSettings,
        binlog: BinlogSourceSettings,
        database: LegacyDatabaseSettings,
        capturer_group: str,
        updater_group: str,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._binlog = binlog
        self._database = database
        self._capturer = capturer_group
        self._updater = updater_group
        self._seconds = kafka.request_timeout_ms / 1000
        self._reader: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()
        self._progress: OrderedDict[Frontier, _Progress] = OrderedDict()
        self._topics_seen: set[str] = set()

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
        try:
            await self._ensure_topics(
                self._topics.hints, self._topics.events, self._binlog.checkpoint_topic
            )
            if not progress.source_past:
                if not await self._source_past(frontier):
                    return False
                progress.source_past = True
            hints, events = self._topics.hints, self._topics.events
            if progress.hints_ends is None:
                progress.hints_ends = await self._ends(hints)
                progress.hints_left = set(progress.hints_ends)
            progress.hints_left = await self._left(
                self._capturer, hints, progress.hints_ends, progress.hints_left
            )
            if progress.hints_left:
                return False
            if progress.events_ends is None:
                progress.events_ends = await self._ends(events)
                progress.events_left = set(progress.events_ends)
            progress.events_left = await self._left(
                self._updater, events, progress.events_ends, progress.events_left
            )
            if progress.events_left:
                return False
        except KafkaError as exc:
            raise self._unavailable(exc) from exc
        progress.done = True
        return True

    async def capture_lag(self) -> int:
        hints = self._topics.hints
        try:
            await self._ensure_topics(hints)
            ends = await self._ends(hints)
            committed = await self._committed(self._capturer, hints, sorted(ends))
        except KafkaError as exc:
            raise self._unavailable(exc) from exc
        return sum(max(0, end - committed[p]) for p, end in ends.items())

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        admin, self._admin = self._admin, None
        if reader is not None:
            await stop_quietly(reader)
        if admin is not None:
            await _close_admin(admin)

    # -- the stages ----------------------------------------------------------------------

    async def source_checkpoint(self) -> str | None:
        position = await self._source_position()
        return None if position is None else str(position)

    async def _source_position(self) -> BinlogPosition | None:
        topic = self._binlog.checkpoint_topic
        raw = await within(
            self._seconds,
            last_checkpoint(self._kafka, topic, self._binlog.transactional_id.encode()),
            "reading the binlog source's checkpoint",
        )
        if raw is None:
            log.info("no checkpoint of the binlog source yet", extra={"topic": topic})
            return None
        try:
            return BinlogPosition.decode(raw)
        except ValueError as exc:
            raise EventLogMisconfigured(
                f"the binlog source's checkpoint in {topic} is not a binlog position: {exc}"
            ) from None

    async def _source_past(self, frontier: Frontier) -> bool:
        position = await self._source_position()
        if position is None:
            return False
        if binlog_order(str(position)) >= binlog_order(frontier.binlog):
            return True
        return await asyncio.to_thread(quiet_between, self._database, position, frontier.binlog)

    async def _ensure_topics(self, *topics: str) -> None:
        """The topics exist (a consumer asking for a missing one could wait without end, or
        have the broker create it)."""
        wanted = [topic for topic in topics if topic not in self._topics_seen]
        if not wanted:
            return
        admin = await self._admin_client()
        described = await within(self._seconds, admin.describe_topics(wanted), "describing topics")
        missing = [d["topic"] for d in described if d["error_code"] != 0 or not d["partitions"]]
        if missing:
            raise EventLogUnavailable(
                f"topic(s) {', '.join(missing)} do not exist at {self._kafka.bootstrap}: the "
                "capture pipeline has not run here (start it: make pipeline)"
            )
        self._topics_seen.update(wanted)

    async def _ends(self, topic: str) -> dict[int, int]:
        """End offsets (the last stable offset: read_committed) of every partition."""
        tps = [TopicPartition(topic, p) for p in range(self._topics.partitions)]
        async with self._lock:
            reader = await self._reader_client()
            ends = await within(self._seconds, reader.end_offsets(tps), f"end offsets of {topic}")
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def _committed(self, group: str, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The group's committed offsets (0 where it never committed), read as an admin: no
        group is joined."""
        admin = await self._admin_client()
        tps = [TopicPartition(topic, p) for p in partitions]
        found = await within(
            self._seconds,
            admin.list_consumer_group_offsets(group, partitions=tps),
            f"offsets of group {group}",
        )
        return {tp.partition: max(0, found[tp].offset) if tp in found else 0 for tp in tps}

    async def _left(self, group: str, topic: str, ends: dict[int, int], left: set[int]) -> set[int]:
        """The partitions of `left` where the group has not consumed up to `ends`."""
        if not left:
            return left
        committed = await self._committed(group, topic, sorted(left))
        behind = {p: (committed[p], ends[p]) for p in sorted(left) if committed[p] < ends[p]}
        still = await self._with_records(topic, behind) if behind else set()
        if still:
            log.debug(
                "a group is behind",
                extra={"group": group, "topic": topic, "partitions": sorted(still)},
            )
        return still

    async def _with_records(self, topic: str, ranges: dict[int, tuple[int, int]]) -> set[int]:
        """The partitions whose range [start, end) holds a record a read_committed consumer
        gets (transaction markers and aborted records are skipped: a range of only those is
        consumed). Every range is read at once; one still undecided after PEEK_S counts as
        holding records (look again later)."""
        tps = {p: TopicPartition(topic, p) for p in ranges}
        found: set[int] = set()
        undecided = set(ranges)
        async with self._lock:
            reader = await self._reader_client()
            reader.assign(list(tps.values()))
            try:
                for p, (start, _) in ranges.items():
                    reader.seek(tps[p], start)
                deadline = asyncio.get_running_loop().time() + PEEK_S
                # No wait_for around getmany or position: bounded by their own timeouts (a
                # position sought is known at once), and a cancelled one can leave the
                # consumer unable to stop (aiokafka 0.14).
                while undecided and asyncio.get_running_loop().time() < deadline:
                    batches = await reader.getmany(*(tps[p] for p in undecided), timeout_ms=100)
                    for tp, records in batches.items():
                        if any(r.offset < ranges[tp.partition][1] for r in records):
                            found.add(tp.partition)
                            undecided.discard(tp.partition)
                    for p in sorted(undecided):
                        if await reader.position(tps[p]) >= ranges[p][1]:
                            undecided.discard(p)
            finally:
                # Paused, not unassigned: no more fetching, and assign([]) with a fetch in
                # flight leaves the consumer unable to stop (aiokafka 0.14: stop() hangs).
                reader.pause(*tps.values())
        return found | undecided

    # -- clients -------------------------------------------------------------------------

    async def _reader_client(self) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = AIOKafkaConsumer(
                bootstrap_servers=self._kafka.bootstrap, group_id=None,
                enable_auto_commit=False, isolation_level="read_committed",
                request_timeout_ms=self._kafka.request_timeout_ms, fetch_max_wait_ms=100,
            )  # fmt: skip
            try:
                await within(self._seconds, reader.start(), "starting a reader")
            except BaseException:
                await stop_quietly(reader)
                raise
            self._reader = reader
        return self._reader

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._kafka.bootstrap,
                request_timeout_ms=self._kafka.request_timeout_ms,
            )
            try:
                await within(self._seconds, admin.start(), "starting an admin client")
            except BaseException:
                await _close_admin(admin)
                raise
            self._admin = admin
        return self._admin

    def _unavailable(self, exc: Exception) -> EventLogUnavailable:
        return EventLogUnavailable(f"Kafka at {self._kafka.bootstrap}: {exc!r}")
