"""The new core's composition root: the only place that wires real adapters into the
processes. Entry points parse their input, call one of these, and run what it returns.

Nothing connects here: the workers connect when they run (and wait for what is down).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from legacy_adapters.adapters.mariadb.directory import MariaDbAccountDirectory
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.adapters.hbase.read_store import HBaseReadStore, ensure_tables
from newcore.adapters.kafka.event_log import KafkaEventLog
from newcore.adapters.kafka.subscription import KafkaCaptureSubscription, KafkaSubscription
from newcore.adapters.ops import WithOps, configure_logging
from newcore.service.capture import Capturer
from newcore.service.capture_worker import CaptureWorker
from newcore.service.reads import Reads
from newcore.service.update_worker import UpdateWorker
from newcore.settings import NewCoreSettings, read


@contextmanager
def capturer(settings: NewCoreSettings) -> Iterator[WithOps]:
    """`chat-capturer`: the capture worker on a Kafka group, reading the monolith's MariaDB
    (MIG_MARIADB_*, MIG_DB_*) through a pool as large as the reads it runs at once."""
    s, t = settings.capturer, settings.topics
    log = configure_logging("capturer")
    engine = make_engine(read(LegacyDatabaseSettings), pool_size=s.db_pool_size)
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
    missing tables before its first event)."""
    s, t = settings.updater, settings.topics
    log = configure_logging("updater")
    subscription = KafkaSubscription(
        settings.kafka, t.events, t.partitions, s.group, s, creates=(t.dead_letters,), log=log
    )
    worker = UpdateWorker(
        subscription,
        HBaseReadStore(settings.hbase),
        KafkaEventLog(settings.kafka, t.dead_letters, t.partitions, append_timeout_ms=10_000),
        partial(ensure_tables, settings.hbase),
        t,
        s,
        log,
    )
    return WithOps(worker, s.ops_host, s.ops_port)


@contextmanager
def read_api(settings: NewCoreSettings, database: LegacyDatabaseSettings) -> Iterator[Reads]:
    """`chat-read-api`'s use cases: the HBase read model and the account directory on the
    monolith's MariaDB (a pool of MIG_READ_API_DB_POOL_SIZE). Both connect on first use, so the
    API starts while HBase or MariaDB is down (its /healthz says so); closed on exit."""
    engine = make_engine(database, pool_size=settings.read_api.db_pool_size)
    store = HBaseReadStore(settings.hbase)
    try:
        yield Reads(store, MariaDbAccountDirectory(engine), settle_s=settings.read_api.settle_s)
    finally:
        store.close()
        engine.dispose()
