"""`chat-migrate backfill ROOMS` (migrator/README.md, "Backfill"; the job is
`migrator/service/backfill.py`).

Thin: every argument is parsed and checked before anything is opened (ROOMS, --order, --rate,
--rooms-in-parallel, --chunk-rows against the capturer's range page, --job, --who), so a
nonsense argument exits 2 having read and changed nothing. Then it opens the job's parts
(`migrator/bootstrap.py` unless a test gives others), serves the metrics while it runs
(MIG_MIGRATOR_METRICS_PORT; a busy port: no endpoint, the job runs), shows a progress bar over
messages with rate and ETA on a terminal (JSON log lines on stderr either way) and prints a
summary.

Exit codes (`entrypoints/failures.py`): 0 done; 2 refused, nothing changed (unknown rooms, a
bad argument, a checkpoint of another data set or selection, the job already running); 3 a
store this version cannot read (a checkpoint of another version: --restart); 4 a service is
down or the read model did not catch up (run again: it resumes); 5 panic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Protocol

import typer
from tqdm import tqdm

from gateway.domain.jobs import check_job_name, check_rate
from gateway.domain.phases import check_who
from migrator.domain.backfill import check_chunk_rows, parse_order
from migrator.domain.selection import parse_rooms
from migrator.entrypoints.logs import beside_progress, job_logging
from migrator.errors import OperatorError
from migrator.service.backfill import (
    Backfill,
    BackfillMetrics,
    BackfillOutcome,
    BackfillRequest,
    ProgressView,
    metrics_endpoint,
)
from migrator.settings import BackfillSettings, MigratorSettings

ROOMS_HELP = "Rooms: ids (12,34), @file (one id per line), a sticky percentage (10%) or all."


class Wiring(Protocol):
    """Where the command gets its settings and its job (the real stack by default)."""

    def settings(self) -> MigratorSettings: ...

    def job(
        self,
        settings: MigratorSettings,
        backfill: BackfillSettings,
        who: str,
        metrics: BackfillMetrics,
        progress: ProgressView,
        log: logging.Logger,
    ) -> AbstractAsyncContextManager[Backfill]: ...


class RealWiring:
    def settings(self) -> MigratorSettings:
        return MigratorSettings.from_env()

    def job(
        self,
        settings: MigratorSettings,
        backfill: BackfillSettings,
        who: str,
        metrics: BackfillMetrics,
        progress: ProgressView,
        log: logging.Logger,
    ) -> AbstractAsyncContextManager[Backfill]:
        from migrator import bootstrap

        return bootstrap.backfill_job(
            settings, backfill, who, metrics=metrics, progress=progress, log=log
        )


class TqdmProgress:
    """The progress bar over messages: rate and ETA (tqdm's), rooms done, the throttle. Shown
    on a terminal only (tqdm's `disable=None`); logs pass above it."""

    def __init__(self, job: str) -> None:
        self._job = job
        self._bar: tqdm[Any] | None = None

    def start(self, total: int, done: int) -> None:
        self._bar = tqdm(
            total=total, initial=done, unit="msg", unit_scale=True, desc=f"backfill {self._job}",
            disable=None, dynamic_ncols=True, mininterval=0.5, smoothing=0.05,
        )  # fmt: skip

    def advance(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def note(self, fields: Mapping[str, str]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(fields, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def register(app: typer.Typer, wiring: Wiring | None = None) -> None:
    """Adds `backfill` to `app`; `wiring` gives its parts (the real stack by default)."""
    wired = wiring or RealWiring()

    @app.command("backfill")
    def backfill(
        rooms: Annotated[str, typer.Argument(metavar="ROOMS", help=ROOMS_HELP)],
        order: Annotated[
            str | None,
            typer.Option(
                "--order",
                help="hot (default for a new job: most messages in the last "
                "MIG_BACKFILL_HOT_DAYS first), size (smallest first) or id. Resuming keeps the "
                "checkpoint's order.",
            ),
        ] = None,
        rate: Annotated[
            float | None,
            typer.Option("--rate", help="Messages per second (default MIG_BACKFILL_RATE)."),
        ] = None,
        rooms_in_parallel: Annotated[
            int | None,
            typer.Option(
                "--rooms-in-parallel",
                min=1,
                max=1024,
                help="Rooms worked on at once (default MIG_BACKFILL_ROOMS_IN_PARALLEL).",
            ),
        ] = None,
        chunk_rows: Annotated[
            int | None,
            typer.Option(
                "--chunk-rows",
                min=1,
                help="Messages per range hint, at most the capturer's range page "
                "(MIG_CAPTURER_RANGE_PAGE); default MIG_BACKFILL_CHUNK_ROWS.",
            ),
        ] = None,
        job: Annotated[
            str, typer.Option("--job", help="The job's name: its checkpoint and controls.")
        ] = "backfill",
        restart: Annotated[
            bool,
            typer.Option("--restart", help="Forget the job's checkpoint and start over."),
        ] = False,
        who: Annotated[
            str | None,
            typer.Option("--who", help="Who runs it (recorded); default MIG_MIGRATOR_WHO."),
        ] = None,
    ) -> None:
        """Replay the history of ROOMS into the new core while live traffic flows: range hints
        on the hints topic, the same pipe as live writes. Resumes from its checkpoint after
        any stop; throttles itself on the monolith's health; obeys `chat-migrate job
        pause|resume|panic|rate JOB`. Marks each room backfilled once its history is visible
        in the read model."""
        selection = parse_rooms(rooms)
        chosen_order = None if order is None else parse_order(order)
        job = check_job_name(job)
        rate = check_rate(rate)
        settings = wired.settings()
        asked: dict[str, Any] = {
            "rate": rate, "rooms_in_parallel": rooms_in_parallel, "chunk_rows": chunk_rows,
        }  # fmt: skip
        merged = settings.backfill.model_dump() | {k: v for k, v in asked.items() if v is not None}
        try:
            job_settings = BackfillSettings(**merged)
        except ValueError as exc:
            raise OperatorError(f"bad option: {exc}") from None
        check_chunk_rows(job_settings.chunk_rows, settings.capturer.range_page)
        runner = check_who(settings.ops.who if who is None else who)
        request = BackfillRequest(job, selection, runner, order=chosen_order, restart=restart)
        log = job_logging(settings.ops)
        with beside_progress(settings.ops):
            outcome = asyncio.run(_run(wired, settings, job_settings, request, log))
        typer.echo(summary(outcome))


async def _run(
    wiring: Wiring,
    settings: MigratorSettings,
    job_settings: BackfillSettings,
    request: BackfillRequest,
    log: logging.Logger,
) -> BackfillOutcome:
    metrics = BackfillMetrics(request.job)
    ops = settings.ops
    with metrics_endpoint(metrics.registry, ops.metrics_host, ops.metrics_port, log):
        opened = wiring.job(
            settings, job_settings, request.who, metrics, TqdmProgress(request.job), log
        )
        async with opened as backfill:
            return await backfill.run(request)


def summary(outcome: BackfillOutcome) -> str:
    how = "resumed" if outcome.resumed else "started"
    return (
        f"backfill {outcome.job}: done ({how}): {outcome.rooms} rooms, {outcome.messages} "
        f"messages planned; this run marked {outcome.marked} rooms backfilled and sent "
        f"{outcome.sent} messages in {outcome.appends} appends in {outcome.elapsed_s:.1f} s"
    )
