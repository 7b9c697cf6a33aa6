"""The migrator's composition root: the only place that wires real adapters into the jobs of
`chat-migrate`. Nothing connects here: a job connects when it runs (and a service that is down
is an `Unavailable` the CLI reports with what to do).

`Parts` holds what every command shares (the control store, the monolith's engine); each job
has its own function below that builds its service from them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

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
from migrator.ports import CheckpointStore, Pipeline, RoomCursors
from migrator.service.repair import ParityRound
from migrator.settings import MigratorSettings
from newcore import bootstrap as newcore_bootstrap
from newcore.ports import EventLog, MonolithReader, ReadStore

if TYPE_CHECKING:
    from migrator.service.backfill import Backfill, BackfillMetrics, ProgressView
    from migrator.service.parity import ParityJob, ParityMetrics
    from migrator.service.parity import ProgressView as ParityProgress
    from migrator.settings import BackfillSettings, ParitySettings


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
    """The hints topic, where backfill and repair append (the same pipe as live writes): on
    Kafka, or the embedded topics (MIG_ENGINE), as newcore's composition root picks it."""
    return newcore_bootstrap.hints_log(
        settings.engine, settings.kafka, settings.topics, append_timeout_ms=30_000
    )


def read_store(settings: MigratorSettings) -> ReadStore:
    """The read model, read-only use (parity, the backfill's "visible" check): HBase, or the
    embedded SQLite file (MIG_ENGINE)."""
    return newcore_bootstrap.read_store(settings.engine, settings.hbase)


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
    position, the binlog source's checkpoint, the capturer's and updater's offsets on Kafka,
    or in the embedded files (MIG_ENGINE=embedded)."""
    if settings.engine.embedded:
        from migrator.adapters.embedded.file_pipeline import FilePipeline

        return FilePipeline(
            newcore_bootstrap.embedded_topics(settings.engine, settings.topics), settings.topics,
            settings.binlog, settings.database, settings.capturer.group, settings.updater.group,
        )  # fmt: skip
    from migrator.adapters.kafka.pipeline import KafkaPipeline

    return KafkaPipeline(
        settings.kafka, settings.topics, settings.binlog, settings.database,
        settings.capturer.group, settings.updater.group,
    )  # fmt: skip


def room_cursors(shared: Parts) -> RoomCursors:
    """The monolith's read cursors of a room, in pages (read-only)."""
    from migrator.adapters.mariadb.cursors import MariaDbRoomCursors

    return MariaDbRoomCursors(shared.monolith)


# -- backfill: the job with every real part ---------------------------------------------------


@asynccontextmanager
async def backfill_job(
    settings: MigratorSettings,
    backfill: BackfillSettings,
    who: str,
    *,
    metrics: BackfillMetrics,
    progress: ProgressView,
    log: logging.Logger,
) -> AsyncIterator[Backfill]:
    """`chat-migrate backfill`'s job (migrator/service/backfill.py) on its real parts: the
    monolith's history, read cursors and health on its MariaDB; hints to the hints topic, the read
    model and the capture lag on the new core's engine (MIG_ENGINE: Kafka and HBase, or the
    embedded files); checkpoints, job lock, marks and the operator's controls in the control
    store (`migrator_checkpoints` made here if missing). `backfill`: the job's settings with
    the command's options applied. Everything is closed on exit."""
    from migrator.adapters.mariadb.checkpoints import MariaDbCheckpointStore, ensure_checkpoints
    from migrator.adapters.mariadb.health import MariaDbMonolithHealth
    from migrator.service.backfill import Backfill
    from migrator.service.control import JobControls

    with parts(settings) as shared:
        ensure_checkpoints(shared.control)
        checkpoints = MariaDbCheckpointStore(shared.control)
        board = job_board(shared)
        hints, store, where = hints_log(settings), read_store(settings), pipeline(settings)

        def controls(job: str) -> JobControls:
            return JobControls(board, job, "backfill", who, log=log)

        t = settings.topics
        try:
            yield Backfill(
                history=room_history(shared), cursors=room_cursors(shared),
                health=MariaDbMonolithHealth(shared.monolith),
                pipeline=where, hints=hints, read_store=store, phases=shared.phases,
                catalog=shared.catalog, checkpoints=checkpoints, locks=checkpoints,
                controls=controls, settings=backfill, range_page=settings.capturer.range_page,
                target=f"{t.hints}/{t.partitions}", metrics=metrics, progress=progress, log=log,
            )  # fmt: skip
        finally:
            await hints.close()
            await where.close()
            store.close()


# -- status and reconcile: the jobs' checkpoints, parity rounds -------------------------------


def checkpoint_store(shared: Parts) -> CheckpointStore:
    """The jobs' checkpoints in the control store (`migrator_checkpoints`, made if missing):
    what `chat-migrate status` summarises."""
    from migrator.adapters.mariadb.checkpoints import MariaDbCheckpointStore, ensure_checkpoints

    ensure_checkpoints(shared.control)
    return MariaDbCheckpointStore(shared.control)


def parity_rounds(
    settings: MigratorSettings, shared: Parts, who: str
) -> AbstractAsyncContextManager[ParityRound]:
    """`chat-migrate reconcile`'s parity: each round a whole parity run over the rooms still
    not clean (migrator/service/parity.py on the real stack), its result written under
    MIG_PARITY_REPORTS_DIR/<run>/parity.json, clean rooms marked. The read model and the
    pipeline's clients are closed on exit."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def rounds() -> AsyncIterator[ParityRound]:
        from migrator.adapters.report.json_report import JsonResultFile
        from migrator.domain.parity import Header, Verdict
        from migrator.service.parity import ParityCheck, ParityRequest

        store, where = read_store(settings), pipeline(settings)
        check = ParityCheck(
            monolith_reader(shared), store, room_cursors(shared), where, shared.phases,
            settings.parity, history=room_history(shared),
        )  # fmt: skip

        async def parity_round(
            rooms: list[int],
        ) -> tuple[dict[int, Verdict], Callable[[], AbstractContextManager[TextIO]]]:
            files: list[JsonResultFile] = []
            verdicts: dict[int, Verdict] = {}

            def open_sink(header: Header) -> JsonResultFile:
                files.append(JsonResultFile(settings.parity.reports_dir / header.run, header))
                return files[-1]

            request = ParityRequest(rooms, f"reconcile of {len(rooms)} room(s)", who)
            try:
                outcome = await check.run(
                    request, open_sink, lambda r: verdicts.__setitem__(r.room_id, r.verdict)
                )
            except BaseException:
                for file in files:
                    file.abandon()
                raise
            path = files[0].close(outcome.summary)
            return verdicts, lambda: path.open(encoding="utf-8")

        try:
            yield parity_round
        finally:
            await where.close()
            store.close()

    return rounds()


# -- parity: the job with every real part -----------------------------------------------------


@asynccontextmanager
async def parity_job(
    settings: MigratorSettings,
    parity: ParitySettings,
    *,
    metrics: ParityMetrics,
    progress: ParityProgress,
    log: logging.Logger,
) -> AsyncIterator[ParityJob]:
    """`chat-migrate parity`'s job (migrator/service/parity.py) on the real stack: the
    monolith's rows, cursors and history on its MariaDB (read only), the read model on HBase
    (read only), where the pipeline is from Kafka (no group joined), clean marks in the control
    store. `parity`: the job's settings with the command's options applied. Closed on exit."""
    import functools

    from migrator.service.parity import ParityCheck, ParityJob, ScanPool

    with parts(settings) as shared:
        store, where = read_store(settings), pipeline(settings)
        pool = (
            ScanPool(functools.partial(parity_sides, settings), parity.workers)
            if parity.workers > 1
            else None
        )
        try:
            yield ParityJob(
                ParityCheck(
                    monolith_reader(shared), store, room_cursors(shared), where, shared.phases,
                    parity, history=room_history(shared), metrics=metrics, progress=progress,
                    log=log, scan_pool=pool,
                ),
                shared.catalog,
            )  # fmt: skip
        finally:
            if pool is not None:
                pool.close()
            await where.close()
            store.close()


def parity_sides(settings: MigratorSettings) -> tuple[MonolithReader, ReadStore, RoomCursors]:
    """What a parity scanning process reads with (built in that process): the monolith's rows
    and cursors on its MariaDB, the read model. Its connections end with the process."""
    from migrator.adapters.mariadb.cursors import MariaDbRoomCursors

    monolith = make_engine(settings.database, pool_size=2)
    return (MariaDbMonolithReader(monolith), read_store(settings), MariaDbRoomCursors(monolith))
