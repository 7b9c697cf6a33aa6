"""The legacy side's composition root: the only place that wires its real adapters into the
processes (`chat-binlog-source`, `chat-seed`). Nothing connects here: what it builds connects
when it runs."""

from __future__ import annotations

from sqlalchemy import Engine

from legacy_adapters.adapters.mariadb.binlog_source import BinlogSource
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.settings import LegacyDatabaseSettings, LegacySettings


def binlog_source(settings: LegacySettings) -> BinlogSource:
    """The binlog source: MariaDB's binlog as a replica, hints and checkpoints to Kafka."""
    return BinlogSource(settings)


def seed_engine(database: LegacyDatabaseSettings) -> Engine:
    """The engine the seeder writes through (lazy: it connects on first use)."""
    return make_engine(database)
