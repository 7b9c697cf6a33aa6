"""The new core's composition root: the only place that wires real adapters into the
processes. Entry points parse their input, call one of these, and run what it returns; tests
and the bench build the same workers here, or wire embedded adapters themselves.

Nothing connects here: the workers connect when they run (and wait for what is down).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from legacy_adapters.settings import LegacyDatabaseSettings
from newcore.adapters.hbase.read_store import HBaseReadStore, ensure_tables
from newcore.adapters.kafka.capture_worker import CaptureWorker
from newcore.adapters.kafka.update_worker import Updater
from newcore.settings import NewCoreSettings, read


@contextmanager
def capturer(settings: NewCoreSettings) -> Iterator[CaptureWorker]:
    """The capture worker, reading the monolith's MariaDB (MIG_MARIADB_*, MIG_DB_*) through a
    pool as large as the reads it runs at once; the pool is closed when the worker is done."""
    engine = make_engine(read(LegacyDatabaseSettings), pool_size=settings.capturer.db_pool_size)
    try:
        yield CaptureWorker(settings, MariaDbMonolithReader(engine))
    finally:
        engine.dispose()


def updater(settings: NewCoreSettings) -> Updater:
    """The read-model updater on HBase; it creates missing tables before its first event."""
    return Updater(settings, HBaseReadStore(settings.hbase), partial(ensure_tables, settings.hbase))
