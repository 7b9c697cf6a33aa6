"""`chat-migrate repair REPORT.json | --lost-rooms` and `chat-migrate reconcile ROOMS`
(migrator/README.md, "Repair"; the use cases: `migrator/service/repair.py`).

Thin: the arguments are checked before anything is opened (a missing or unreadable report, a
report that is not a whole parity result of this version: exit 2, nothing sent); then the
parts are opened (`RepairParts`, from `migrator/bootstrap.py` unless a test gives others), one
use case runs, and a summary or `--json` is printed. `--dry-run` lists every hint it would
send and sends nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from gateway.ports import RoomCatalog
from migrator.domain.repair import PlannedHint, describe_lost
from migrator.domain.selection import parse_rooms, resolve
from migrator.errors import OperatorError
from migrator.ports import LostRooms, RoomHistory
from migrator.service.repair import (
    ParityRound,
    ReconcileOutcome,
    RepairOutcome,
    each_hint,
    reconcile,
    repair_from_report,
    repair_lost_rooms,
)
from newcore.domain.hints import CursorHint, MessageHint
from newcore.ports import EventLog


@dataclass
class RepairParts:
    """What these commands use, opened only when asked: the hints log (not for a dry run),
    the monolith's history and the spool's lost rooms (only for --lost-rooms), the parity
    check (only for reconcile; None while not wired)."""

    who: str
    chunk_rows: int
    hints_log: Callable[[], AbstractAsyncContextManager[EventLog]]
    history: Callable[[], RoomHistory]
    lost_rooms: Callable[[], LostRooms]
    catalog: Callable[[], RoomCatalog]
    parity: Callable[[str], AbstractAsyncContextManager[ParityRound]] | None  # who -> rounds


Wiring = Callable[[], AbstractContextManager[RepairParts]]


@contextmanager
def real_parts() -> Iterator[RepairParts]:
    from contextlib import asynccontextmanager

    from migrator import bootstrap
    from migrator.settings import MigratorSettings

    settings = MigratorSettings.from_env()

    @asynccontextmanager
    async def hints() -> AsyncIterator[EventLog]:
        log = bootstrap.hints_log(settings)
        try:
            yield log
        finally:
            await log.close()

    with bootstrap.parts(settings) as shared:
        yield RepairParts(
            who=settings.ops.who,
            chunk_rows=settings.backfill.chunk_rows,
            hints_log=hints,
            history=lambda: bootstrap.room_history(shared),
            lost_rooms=lambda: bootstrap.lost_rooms(settings),
            catalog=lambda: shared.catalog,
            parity=lambda who: bootstrap.parity_rounds(settings, shared, who),
        )


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a summary.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="List the hints it would send; send nothing.")
]
WhoOption = Annotated[
    str | None, typer.Option("--who", help="Who asks (recorded); default MIG_MIGRATOR_WHO.")
]


def register(app: typer.Typer, wiring: Wiring = real_parts) -> None:
    """Adds repair and reconcile to `app`; `wiring` opens their parts."""

    @app.command("repair")
    def repair(
        report: Annotated[
            Path | None,
            typer.Argument(
                metavar="REPORT.json", help="A parity result (chat-migrate parity's JSON)."
            ),
        ] = None,
        lost_rooms: Annotated[
            bool,
            typer.Option(
                "--lost-rooms",
                help="Repair the rooms the gateway's spool lost hints of (MIG_SPOOL_DIR).",
            ),
        ] = False,
        dry_run: DryRunOption = False,
        as_json: JsonOption = False,
        who: WhoOption = None,
        why: Annotated[
            str, typer.Option("--why", help="Why (recorded where the lost rooms are forgotten).")
        ] = "chat-migrate repair --lost-rooms",
    ) -> None:
        """Send the hints that make the read model converge: one per message or cursor a
        parity result found different, or range hints over every room the gateway's spool
        lost hints of. Hints only, never data: the capturer reads the current rows, so a
        repair never writes an older state and a row gone becomes a delete. Idempotent."""
        if (report is None) == (not lost_rooms):
            raise OperatorError("give one of a parity result (REPORT.json) and --lost-rooms")
        listed: list[dict[str, Any]] = []
        on_hint = _lister(listed, as_json) if dry_run else None
        if report is not None:
            opener = _report_opener(report)
            with wiring() as parts:
                outcome = asyncio.run(_from_report(parts, opener, dry_run, on_hint))
        else:
            with wiring() as parts:
                outcome = asyncio.run(_lost_rooms(parts, who or parts.who, why, dry_run, on_hint))
        if as_json:
            typer.echo(json.dumps(outcome_json(outcome, listed), ensure_ascii=False, indent=2))
        else:
            typer.echo(render_repair(outcome))

    @app.command("reconcile")
    def reconcile_command(
        rooms: Annotated[str, typer.Argument(metavar="ROOMS", help="Rooms: ids, @file, 10%, all.")],
        max_rounds: Annotated[
            int, typer.Option("--max-rounds", help="Parity runs at most (1..20).")
        ] = 3,
        as_json: JsonOption = False,
        who: WhoOption = None,
    ) -> None:
        """Per room: parity, repair what it found, parity again; until every room is clean
        or --max-rounds parity runs are done (each run's result under MIG_PARITY_REPORTS_DIR,
        clean rooms marked). Exit 0 when every room ends clean, 2 when not."""
        if not 1 <= max_rounds <= 20:
            raise OperatorError(f"--max-rounds is in 1..20, got {max_rounds}")
        selection = parse_rooms(rooms)
        with wiring() as parts:
            if parts.parity is None:
                raise OperatorError(
                    "reconcile needs the parity check, which this version does not wire yet: "
                    "run `chat-migrate parity ROOMS`, then `chat-migrate repair REPORT.json`"
                )
            chosen = resolve(selection, parts.catalog())
            outcome = asyncio.run(_reconcile(parts, chosen, max_rounds, who or parts.who))
        if as_json:
            typer.echo(json.dumps(reconcile_json(outcome), ensure_ascii=False, indent=2))
        else:
            typer.echo(render_reconcile(outcome))
        if outcome.not_clean:
            raise typer.Exit(2)


def _report_opener(path: Path) -> Callable[[], AbstractContextManager[TextIO]]:
    """Opens the report as text; a file that cannot be opened is the operator's to fix."""
    try:
        with path.open("rb") as first:
            first.read(1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OperatorError(
            f"cannot read the parity result {path}: {reason}; give the JSON file a "
            "`chat-migrate parity` run wrote"
        ) from None

    def opener() -> AbstractContextManager[TextIO]:
        return path.open(encoding="utf-8", errors="strict")

    return opener


async def _from_report(
    parts: RepairParts,
    opener: Callable[[], AbstractContextManager[TextIO]],
    dry_run: bool,
    on_hint: Callable[[PlannedHint], None] | None,
) -> RepairOutcome:
    try:
        if dry_run:
            return await repair_from_report(opener, None, dry_run=True, on_hint=on_hint)
        async with parts.hints_log() as log:
            return await repair_from_report(opener, log, dry_run=False, on_hint=on_hint)
    except UnicodeDecodeError as exc:
        raise OperatorError(
            f"the parity result is not UTF-8 text ({exc.reason}): not a parity result; give "
            "the JSON file a `chat-migrate parity` run wrote"
        ) from None


async def _lost_rooms(
    parts: RepairParts,
    who: str,
    why: str,
    dry_run: bool,
    on_hint: Callable[[PlannedHint], None] | None,
) -> RepairOutcome:
    source, history = parts.lost_rooms(), parts.history()
    if dry_run:
        return await repair_lost_rooms(
            source, history, None, chunk_rows=parts.chunk_rows, who=who, why=why, dry_run=True,
            on_hint=on_hint,
        )  # fmt: skip
    async with parts.hints_log() as log:
        return await repair_lost_rooms(
            source, history, log, chunk_rows=parts.chunk_rows, who=who, why=why, dry_run=False,
            on_hint=on_hint,
        )  # fmt: skip


async def _reconcile(
    parts: RepairParts, rooms: list[int], max_rounds: int, who: str
) -> ReconcileOutcome:
    assert parts.parity is not None
    async with parts.hints_log() as log, parts.parity(who) as parity:
        return await reconcile(rooms, parity, log, max_rounds=max_rounds)


# -- rendering -----------------------------------------------------------------------------


def hint_json(planned: PlannedHint) -> dict[str, Any]:
    h = planned.hint
    if isinstance(h, MessageHint):
        what: dict[str, Any] = {"kind": "message", "message_id": str(h.message_id)}
    elif isinstance(h, CursorHint):
        what = {"kind": "cursor", "account_id": h.account_id}
    else:
        what = {"kind": "range", "first_message_id": str(h.first_message_id),
                "last_message_id": str(h.last_message_id)}  # fmt: skip
    return {"room_id": h.room_id, **what, "why": planned.why}


def _lister(listed: list[dict[str, Any]], as_json: bool) -> Callable[[PlannedHint], None]:
    """In a dry run: each hint printed as it is planned (a summary), or kept for the JSON."""

    def on_hint(planned: PlannedHint) -> None:
        if as_json:
            listed.append(hint_json(planned))
        else:
            typer.echo(f"would send: {planned.describe()}")

    return on_hint


def outcome_json(outcome: RepairOutcome, listed: list[dict[str, Any]]) -> dict[str, Any]:
    forgotten = outcome.forgotten
    return {
        "source": outcome.source,
        "dry_run": outcome.dry_run,
        "hints": outcome.tally.hints,
        "appended": outcome.appended,
        "rooms": [
            {
                "room_id": r.room_id,
                "message_hints": r.messages,
                "cursor_hints": r.cursors,
                "range_hints": r.ranges,
                "unreadable": r.unreadable,
                "note": r.note,
            }
            for r in outcome.tally.rooms.values()
        ],
        "parity_rooms": outcome.verdicts,
        "late_rooms": outcome.late_rooms,
        "lost_rooms": [
            {
                "room_id": r.room_id,
                "count": r.count,
                "first_lost_at": r.first_lost_at,
                "last_lost_at": r.last_lost_at,
            }
            for r in outcome.lost
        ],
        "forgotten": None
        if forgotten is None
        else {"forgotten": forgotten.forgotten, "kept": forgotten.kept, "how": forgotten.how},
        "would_send": listed if outcome.dry_run else None,
    }


def render_repair(outcome: RepairOutcome) -> str:
    verb = "would send" if outcome.dry_run else "sent"
    lines = [
        f"repair from {outcome.source}: {verb} {outcome.tally.hints} hint(s) over "
        f"{len(outcome.tally.rooms)} room(s)"
        + (" (dry run: nothing sent, nothing changed)" if outcome.dry_run else "")
    ]
    if outcome.verdicts:
        lines.append(
            "  the parity result's rooms: "
            + ", ".join(f"{n} {v}" for v, n in sorted(outcome.verdicts.items()))
        )
    if outcome.lost:
        lines.append(f"  lost rooms read: {len(outcome.lost)}")
        for room in outcome.lost[:50]:
            lines.append(f"    room {room.room_id}: {describe_lost(room)}")
    lines.extend(f"  {line}" for line in each_hint(outcome))
    if outcome.forgotten is not None:
        f = outcome.forgotten
        lines.append(
            f"  lost rooms forgotten {len(f.forgotten)}, kept {len(f.kept)} (lost hints again "
            f"since they were read: run again): {f.how}"
        )
    if not outcome.dry_run and outcome.tally.hints:
        lines.append(
            "  the capturer reads the current rows for each hint; `chat-migrate parity` on "
            "these rooms tells when the read model has them"
        )
    return "\n".join(lines)


def reconcile_json(outcome: ReconcileOutcome) -> dict[str, Any]:
    return {
        "rounds": [
            {
                "round": r.number,
                "verdicts": {str(k): v.value for k, v in r.verdicts.items()},
                "hints": None if r.repaired is None else r.repaired.tally.hints,
            }
            for r in outcome.rounds
        ],
        "clean": outcome.clean,
        "not_clean": {str(k): v.value for k, v in outcome.not_clean.items()},
    }


def render_reconcile(outcome: ReconcileOutcome) -> str:
    lines = []
    for r in outcome.rounds:
        counts: dict[str, int] = {}
        for verdict in r.verdicts.values():
            counts[verdict.value] = counts.get(verdict.value, 0) + 1
        said = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        sent = "" if r.repaired is None else f"; repair sent {r.repaired.tally.hints} hint(s)"
        lines.append(f"round {r.number}: parity {said}{sent}")
    lines.append(f"clean: {len(outcome.clean)} room(s)")
    if outcome.not_clean:
        shown = ", ".join(f"{room} ({v.value})" for room, v in outcome.not_clean.items())
        lines.append(f"not clean after {len(outcome.rounds)} round(s): {shown}")
    return "\n".join(lines)
