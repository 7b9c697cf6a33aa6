"""The migrator's composition root: the only place that wires real adapters into the jobs of
`chat-migrate`. Nothing connects here: a job connects when it runs (and a service that is down
is an `Unavailable` the CLI reports with what to do).

`Parts` holds what every command shares (the control store, the monolith's engine); each job
has its own function below that builds its service from them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from gateway.adapters.mariadb.control_schema import control_engine, ensure_schema
from gateway.adapters.mariadb.job_board import MariaDbJobBoard
from gateway.adapters.mariadb.phase_store import MariaDbPhaseStore
from gateway.adapters.mariadb.room_catalog import MariaDbRoomCatalog
from gateway.adapters.spool import HintSpool
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.adapters.mariadb.monolith_reader import MariaDbMonolithReader
from migrator.adapters.gateway_spool import GatewayAdmin, SpoolLostRooms
from migrator.adapters.mariadb.history import MariaDbRoomHistory
from migrator.ports import Pipeline, RoomCursors
from migrator.settings import MigratorSettings
from newcore.adapters.hbase.read_store import HBaseReadStore
from newcore.adapters.kafka.event_log import KafkaEventLog
from newcore.ports import EventLog, MonolithReader, ReadStore


@dataclass
class Parts:
    """What every command of `chat-migrate` shares: built once per command, closed at its end."""

    settings: MigratorSettings
    monolith: Engine  # the monolith's database (read-only use)
    control: Engine  # the control store's database
    phases: MariaDbPhaseStore
    catalog: MariaDbRoomCatalog


@contextmanager
def parts(settings: MigratorSettings) -> Iterator[Parts]:
    """The shared parts; the control store's schema is ensured on first use (idempotent)."""
    monolith = make_engine(settings.database, pool_size=4)
    control = control_engine(settings.database, settings.control.db_name, pool_size=2)
    try:
        ensure_schema(control)
        yield Parts(
            settings, monolith, control, MariaDbPhaseStore(control), MariaDbRoomCatalog(monolith)
        )
    finally:
        monolith.dispose()
        control.dispose()


# -- the new core, as the jobs see it: the one place that picks its engine ------------------


def hints_log(settings: MigratorSettings) -> EventLog:
    """The hints topic, where backfill and repair append (the same pipe as live writes)."""
    t = settings.topics
    return KafkaEventLog(settings.kafka, t.hints, t.partitions, append_timeout_ms=30_000)


def read_store(settings: MigratorSettings) -> ReadStore:
    """The read model, read-only use (parity, the backfill's "visible" check)."""
    return HBaseReadStore(settings.hbase)


def monolith_reader(shared: Parts) -> MonolithReader:
    """The monolith's rows translated exactly as the capturer translates them."""
    return MariaDbMonolithReader(shared.monolith)


# -- the job board: operator controls of running jobs (`chat-migrate job`, JobControls) ------


def job_board(shared: Parts) -> MariaDbJobBoard:
    """The jobs' controls and heartbeats, in the control store on its engine (disposed of with
    `shared`): what `chat-migrate job ...` and the admin API write, and a running job reads
    through `migrator.service.control.JobControls`."""
    return MariaDbJobBoard(shared.control)


# -- repair: the monolith's history, the gateway spool's lost rooms --------------------------


def room_history(shared: Parts) -> MariaDbRoomHistory:
    """The monolith's message history, read-only (the repair's and the backfill's chunks)."""
    return MariaDbRoomHistory(shared.monolith)


def lost_rooms(settings: MigratorSettings) -> SpoolLostRooms:
    """The lost-rooms list of the gateway spool at MIG_SPOOL_DIR; forgotten in the spool when
    no gateway holds it, else through the admin API of the gateway at MIG_GATEWAY_ADMIN_HOST
    and PORT when MIG_GATEWAY_ADMIN_TOKEN is set (migrator/adapters/gateway_spool.py)."""
    spool, proxy = settings.spool, settings.gateway
    admin = (
        None
        if proxy.admin_token is None
        else GatewayAdmin(
            f"http://{proxy.admin_host}:{proxy.admin_port}", proxy.admin_token.get_secret_value()
        )
    )

    def open_spool() -> HintSpool:
        return HintSpool(spool.dir, spool.max_bytes, fsync_interval_s=spool.fsync_interval_s)

    return SpoolLostRooms(spool.dir, open_spool, admin)


# -- parity: where the pipeline is, the monolith's cursors ------------------------------------


def pipeline(settings: MigratorSettings) -> Pipeline:
    """Where the capture pipeline is (read-only, no group joined): the monolith's binlog
    position, the binlog source's checkpoint, the capturer's and updater's offsets on Kafka."""
    from migrator.adapters.kafka.pipeline import KafkaPipeline

    return KafkaPipeline(
        settings.kafka, settings.topics, settings.binlog, settings.database,
        settings.capturer.group, settings.updater.group,
    )  # fmt: skip


def room_cursors(shared: Parts) -> RoomCursors:
    """The monolith's read cursors of a room, in pages (read-only)."""
    from migrator.adapters.mariadb.cursors import MariaDbRoomCursors

    return MariaDbRoomCursors(shared.monolith)
