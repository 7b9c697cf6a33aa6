"""The new core's composition root: the only place that wires real adapters into the
processes. Entry points parse their input, call one of these, and run what it returns.

The engine is picked here, from one setting (`EngineSettings`, `MIG_ENGINE`): Kafka and HBase,
or the embedded files (`MIG_EMBEDDED_DIR`). The other composition roots (the binlog source's,
the gateway's, the migrator's) take the new core's parts from `hints_log`, `read_store` and
`embedded_topics` below, so that every process of one install is on the same engine.

Nothing connects here: the workers connect when they run (and wait for what is down); the
embedded files are opened on first use too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from legacy_adapters.adapters.mariadb.directory import MariaDbAccountDirectory
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.adapters.embedded.file_subscription import FileSubscription
from newcore.adapters.embedded.file_topics import FileTopics
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.adapters.hbase.read_store import HBaseReadStore, ensure_tables
from newcore.adapters.kafka.event_log import KafkaEventLog
from newcore.adapters.kafka.subscription import KafkaCaptureSubscription, KafkaSubscription
from newcore.adapters.ops import WithOps, configure_logging
from newcore.ports import EventLog, ReadStore, Subscription, TransactionalSubscription
from newcore.service.capture import Capturer
from newcore.service.capture_worker import CaptureWorker
from newcore.service.reads import Reads
from newcore.service.update_worker import UpdateWorker
from newcore.settings import (
    EngineSettings,
    HBaseSettings,
    KafkaSettings,
    NewCoreSettings,
    TopicSettings,
    read,
)

# -- the engine's parts, for every composition root ------------------------------------------


def embedded_topics(engine: EngineSettings, topics: TopicSettings) -> FileTopics:
    """The embedded topics (one instance per process: its lock serializes this process's
    threads, the file lock the processes)."""
    return FileTopics(engine.log_dir, topics.partitions)


def hints_log(
    engine: EngineSettings, kafka: KafkaSettings, topics: TopicSettings, append_timeout_ms: int = 0
) -> EventLog:
    """The hints topic, for a process that appends hints (the gateway's shipper, the backfill,
    the repair). `append_timeout_ms`: Kafka's bound on an append (0: its request timeout)."""
    if engine.embedded:
        return embedded_topics(engine, topics).log(topics.hints)
    return KafkaEventLog(kafka, topics.hints, topics.partitions, append_timeout_ms)


def read_store(engine: EngineSettings, hbase: HBaseSettings) -> ReadStore:
    """The read model (connected on first use)."""
    if engine.embedded:
        return SqliteReadStore(engine.read_model)
    return HBaseReadStore(hbase)


# -- the processes ---------------------------------------------------------------------------


@contextmanager
def capturer(settings: NewCoreSettings) -> Iterator[WithOps]:
    """`chat-capturer`: the capture worker on a Kafka group (or the embedded topics), reading
    the monolith's MariaDB (MIG_MARIADB_*, MIG_DB_*) through a pool as large as the reads it
    runs at once."""
    s, t = settings.capturer, settings.topics
    log = configure_logging("capturer")
    engine = make_engine(read(LegacyDatabaseSettings), pool_size=s.db_pool_size)
    subscription: TransactionalSubscription
    if settings.engine.embedded:
        subscription = FileSubscription(
            embedded_topics(settings.engine, t), t.hints, s.group, backoff_ms=s.backoff_ms,
            max_backoff_ms=s.max_backoff_ms,
        )  # fmt: skip
    else:
        subscription = KafkaCaptureSubscription(
            settings.kafka, t.hints, t.partitions, s, creates=(t.events, t.dead_letters), log=log
        )
    capture = Capturer(
        MariaDbMonolithReader(engine), partitions=t.partitions, range_page=s.range_page,
        max_event_bytes=s.max_event_bytes,
    )  # fmt: skip
    try:
        yield WithOps(CaptureWorker(subscription, capture, t, s, log), s.ops_host, s.ops_port)
    finally:
        engine.dispose()


def updater(settings: NewCoreSettings) -> WithOps:
    """`chat-updater`: the update worker on a Kafka group, applying to HBase (it creates
    missing tables before its first event); or on the embedded topics, applying to the SQLite
    read model (made with its tables at the start)."""
    s, t = settings.updater, settings.topics
    log = configure_logging("updater")
    subscription: Subscription
    if settings.engine.embedded:
        topics = embedded_topics(settings.engine, t)
        subscription = FileSubscription(
            topics, t.events, s.group, backoff_ms=s.backoff_ms, max_backoff_ms=s.max_backoff_ms
        )
        sqlite = SqliteReadStore(settings.engine.read_model)
        store: ReadStore = sqlite
        dead_letters: EventLog = topics.log(t.dead_letters)
        prepare: Callable[[], object] = sqlite.open
    else:
        subscription = KafkaSubscription(
            settings.kafka, t.events, t.partitions, s.group, s, creates=(t.dead_letters,), log=log
        )
        store = HBaseReadStore(settings.hbase)
        dead_letters = KafkaEventLog(
            settings.kafka, t.dead_letters, t.partitions, append_timeout_ms=10_000
        )
        prepare = partial(ensure_tables, settings.hbase)
    worker = UpdateWorker(subscription, store, dead_letters, prepare, t, s, log)
    return WithOps(worker, s.ops_host, s.ops_port)


@contextmanager
def read_api(settings: NewCoreSettings, database: LegacyDatabaseSettings) -> Iterator[Reads]:
    """`chat-read-api`'s use cases: the read model (HBase, or the embedded SQLite file) and the
    account directory on the monolith's MariaDB (a pool of MIG_READ_API_DB_POOL_SIZE). Both
    connect on first use, so the API starts while HBase or MariaDB is down (its /healthz says
    so); closed on exit."""
    engine = make_engine(database, pool_size=settings.read_api.db_pool_size)
    store = read_store(settings.engine, settings.hbase)
    try:
        yield Reads(store, MariaDbAccountDirectory(engine), settle_s=settings.read_api.settle_s)
    finally:
        store.close()
        engine.dispose()
