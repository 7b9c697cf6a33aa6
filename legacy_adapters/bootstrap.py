"""The legacy side's composition root: the only place that wires its real adapters into the
processes (`chat-binlog-source`, `chat-seed`). Nothing connects here: what it builds connects
when it runs."""

from __future__ import annotations

from sqlalchemy import Engine

from legacy_adapters.adapters.mariadb.binlog_reader import MariaDbBinlog
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.service.binlog_source import BinlogSource
from legacy_adapters.settings import LegacyDatabaseSettings, LegacySettings
from newcore.adapters.kafka.checkpoints import KafkaCheckpointedLog
from newcore.adapters.ops import WithOps, configure_logging
from newcore.ports import CheckpointedLog


def binlog_source(settings: LegacySettings) -> tuple[WithOps, BinlogSource]:
    """The binlog source (MariaDB's binlog as a replica; hints and checkpoints to Kafka, or to
    the embedded topics with `MIG_ENGINE=embedded`, its identity the transactional id) with
    its ops endpoint; the source itself for its exit code."""
    s = settings.binlog
    output: CheckpointedLog
    if settings.engine.embedded:
        # Imported here: the default engine's process does not load the new core's wiring.
        from newcore.adapters.embedded.file_checkpointed_log import FileCheckpointedLog
        from newcore.bootstrap import embedded_topics

        output = FileCheckpointedLog(
            embedded_topics(settings.engine, settings.topics), s.transactional_id
        )
    else:
        output = KafkaCheckpointedLog(
            settings.kafka, settings.topics, s.checkpoint_topic, s.transactional_id,
            s.transaction_timeout_ms,
        )  # fmt: skip
    source = BinlogSource(
        MariaDbBinlog(settings.database, s.server_id), output, settings.topics, s,
        configure_logging("binlog-source"),
    )  # fmt: skip
    return WithOps(source, s.ops_host, s.ops_port), source


def seed_engine(database: LegacyDatabaseSettings) -> Engine:
    """The engine the seeder writes through (lazy: it connects on first use)."""
    return make_engine(database)
