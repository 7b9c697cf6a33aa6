"""`chat-migrate parity ROOMS` (migrator/README.md, "Parity"; the job is
`migrator/service/parity.py`, the rules `migrator/domain/parity.py`).

Thin: ROOMS, --out and --who are checked before anything is opened (a nonsense argument exits
2 having read and changed nothing); the rooms are resolved against the monolith's room list
(unknown rooms: exit 2, nothing compared, nothing marked); then the check runs with the metrics
served (MIG_MIGRATOR_METRICS_PORT; a busy port: no endpoint, the check runs), a progress bar
over monolith rows on a terminal (JSON log lines on stderr either way), the JSON result written
as it goes, then the HTML report made from it and a summary printed with where both are.

Exit codes: 0 every room clean; 1 differences found (`chat-migrate repair REPORT.json` sends
the hints that fix them); 4 no difference found but some room is late (the pipeline did not
reach a frontier in time, or rows kept changing: run again), or a service is down; 2 refused,
nothing changed; 3 a store this version cannot read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from tqdm import tqdm

from gateway.domain.phases import check_who
from migrator.adapters.report.html import write_html
from migrator.adapters.report.json_report import JsonResultFile, read_result
from migrator.adapters.report.terminal import summary_lines
from migrator.domain.parity import Header, Kind, Summary, Verdict
from migrator.domain.selection import Selection, parse_rooms, resolve
from migrator.entrypoints.failures import EXIT_UNAVAILABLE
from migrator.entrypoints.logs import beside_progress, job_logging
from migrator.errors import OperatorError
from migrator.service.parity import ParityJob, ParityMetrics, ParityRequest, ProgressView
from migrator.settings import MigratorSettings, ParitySettings

ROOMS_HELP = "Rooms: ids (12,34), @file (one id per line), a sticky percentage (10%) or all."
EXIT_DIFFERENT = 1


class Wiring(Protocol):
    """Where the command gets its settings and its job (the real stack by default)."""

    def settings(self) -> MigratorSettings: ...

    def job(
        self,
        settings: MigratorSettings,
        parity: ParitySettings,
        metrics: ParityMetrics,
        progress: ProgressView,
        log: logging.Logger,
    ) -> AbstractAsyncContextManager[ParityJob]: ...


class RealWiring:
    def settings(self) -> MigratorSettings:
        return MigratorSettings.from_env()

    def job(
        self,
        settings: MigratorSettings,
        parity: ParitySettings,
        metrics: ParityMetrics,
        progress: ProgressView,
        log: logging.Logger,
    ) -> AbstractAsyncContextManager[ParityJob]:
        from migrator import bootstrap

        return bootstrap.parity_job(settings, parity, metrics=metrics, progress=progress, log=log)


class TqdmProgress:
    """The progress bar over monolith rows compared: rate and ETA (tqdm's), shown on a
    terminal only (`disable=None`); logs pass above it."""

    def __init__(self) -> None:
        self._bar: tqdm[Any] | None = None

    def start(self, total: int | None) -> None:
        self._bar = tqdm(
            total=total, unit="msg", unit_scale=True, desc="parity", disable=None,
            dynamic_ncols=True, mininterval=0.5, smoothing=0.05,
        )  # fmt: skip

    def total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def advance(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def note(self, fields: dict[str, str]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(fields, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass(frozen=True, slots=True)
class Done:
    """What a run left: where its reports are, its summary, how it ends."""

    run: str
    result: Path
    html: Path
    summary: Summary
    lines: list[str]

    @property
    def exit_code(self) -> int:
        return exit_code(self.summary)


def exit_code(summary: Summary) -> int:
    """0 clean; 1 a blocking difference; 4 nothing different but a room late."""
    blocking = sum(
        n for kind, n in summary.differences.items() if kind is not Kind.UNREADABLE_LEGACY
    )
    if summary.rooms.get(Verdict.DIFFERENT, 0) or blocking:
        return EXIT_DIFFERENT
    if summary.rooms.get(Verdict.LATE, 0):
        return EXIT_UNAVAILABLE
    return 0


def register(app: typer.Typer, wiring: Wiring | None = None) -> None:
    """Adds `parity` to `app`; `wiring` gives its parts (the real stack by default)."""
    wired = wiring or RealWiring()

    @app.command(
        "parity",
        epilog=(
            "Exit: 0 every room clean (each marked so in the control store, unless --no-mark); "
            "1 differences found (fix them: chat-migrate repair REPORT.json); 4 no difference "
            "but a room is late (the pipeline did not reach a frontier in time, or rows kept "
            "changing: run again) or a service is down; 2 refused, nothing changed."
        ),
    )
    def parity(
        rooms: Annotated[str, typer.Argument(metavar="ROOMS", help=ROOMS_HELP)],
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                help="Where the reports go: DIR/RUN/parity.json and parity.html (RUN: the "
                "run's id; default MIG_PARITY_REPORTS_DIR).",
            ),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the outcome as JSON instead of a summary.")
        ] = False,
        no_mark: Annotated[
            bool,
            typer.Option("--no-mark", help="Do not mark clean rooms in the control store."),
        ] = False,
        who: Annotated[
            str | None,
            typer.Option("--who", help="Who runs it (recorded); default MIG_MIGRATOR_WHO."),
        ] = None,
    ) -> None:
        """Compare the monolith with the read model for ROOMS, message by message and cursor
        by cursor, once the read model has reached the monolith's binlog position (rows
        written meanwhile are re-checked, never reported). Reads only, on both sides. Writes a
        JSON result and an HTML report, prints a summary and where they are; marks each clean
        room in the control store."""
        selection = parse_rooms(rooms)
        if out is not None and out.exists() and not out.is_dir():
            raise OperatorError(f"--out {out} is not a directory: give a directory for the reports")
        settings = wired.settings()
        runner = check_who(settings.ops.who if who is None else who)
        parity_settings = settings.parity
        if out is not None:
            parity_settings = parity_settings.model_copy(update={"reports_dir": out})
        log = job_logging(settings.ops)
        with beside_progress(settings.ops):
            done = asyncio.run(
                _run(wired, settings, parity_settings, selection, runner, not no_mark, log)
            )
        if as_json:
            typer.echo(json.dumps(outcome_json(done), ensure_ascii=False, indent=2))
        else:
            typer.echo("\n".join(done.lines))
        raise typer.Exit(done.exit_code)


async def _run(
    wiring: Wiring,
    settings: MigratorSettings,
    parity_settings: ParitySettings,
    selection: Selection,
    who: str,
    mark: bool,
    log: logging.Logger,
) -> Done:
    from migrator.service.backfill import metrics_endpoint

    metrics = ParityMetrics()
    ops = settings.ops
    with metrics_endpoint(metrics.registry, ops.metrics_host, ops.metrics_port, log):
        async with wiring.job(settings, parity_settings, metrics, TqdmProgress(), log) as job:
            chosen = await asyncio.to_thread(resolve, selection, job.catalog)
            request = ParityRequest(chosen, selection.describe(), who, mark)
            sinks: list[JsonResultFile] = []

            def open_sink(header: Header) -> JsonResultFile:
                sinks.append(JsonResultFile(parity_settings.reports_dir / header.run, header))
                return sinks[0]

            try:
                outcome = await job.check.run(request, open_sink)
            except BaseException:
                for sink in sinks:
                    partial = sink.abandon()
                    log.error(f"parity stopped; its partial result is {partial}")
                raise
            result = sinks[0].close(outcome.summary)
    html = await asyncio.to_thread(write_html, read_result(result), result.parent, result.name)
    lines = await asyncio.to_thread(summary_lines, read_result(result), result, html)
    return Done(outcome.run, result, html, outcome.summary, lines)


def outcome_json(done: Done) -> dict[str, Any]:
    s = done.summary
    return {
        "run": done.run,
        "result": str(done.result),
        "html": str(done.html),
        "exit_code": done.exit_code,
        "rooms": {v.value: s.rooms.get(v, 0) for v in Verdict},
        "differences": {k.value: s.differences.get(k, 0) for k in Kind},
        "legacy_rows": s.legacy_rows,
        "marked_clean": s.marked_clean,
        "seconds": round(s.seconds, 3),
    }
