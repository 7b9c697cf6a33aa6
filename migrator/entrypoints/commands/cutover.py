"""`chat-migrate cutover`, `rollback`, `kill-switch` and `status` (migrator/README.md,
"Cutover").

Thin: each command parses its arguments (ROOMS, the phase, who and why) before anything is
opened, so a nonsense argument exits 2 having read and changed nothing; then it opens its
parts (`CutoverParts`, from `migrator/bootstrap.py` unless a test gives others), calls one
use case (`migrator/service/cutover.py`, `status.py`) and prints a summary, or `--json`.

Exit codes (`entrypoints/failures.py`): 0 done (rooms refused beside rooms moved or already
there are listed, not an error: a percentage step meets rooms not ready yet); 2 nothing asked
could be done (every selected room refused, unknown rooms, a bad argument), nothing changed;
3 and 4 a store that cannot be read or reached.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from gateway.domain.phases import Direction, KillSwitch, Phase, parse_phase
from gateway.ports import PhaseStore, RoomCatalog
from migrator.domain.selection import parse_rooms
from migrator.errors import OperatorError
from migrator.ports import CheckpointStore
from migrator.service.cutover import (
    MoveOutcome,
    kill_switch_json,
    move_rooms,
    set_kill_switch,
)
from migrator.service.status import ACTIONS, ROOM_LIMIT, Status, status

EXIT_REFUSED = 2


@dataclass
class CutoverParts:
    """What these commands use: the control store, the monolith's rooms, the jobs'
    checkpoints (None while no adapter is wired) and the settings they read."""

    store: PhaseStore
    catalog: RoomCatalog
    checkpoints: CheckpointStore | None
    who: str  # recorded when --who is not given
    parity_max_age_s: float
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # status's now


Wiring = Callable[[], AbstractContextManager[CutoverParts]]


@contextmanager
def real_parts() -> Iterator[CutoverParts]:
    """The real control store and room catalog, from the MIG_* settings."""
    from migrator import bootstrap
    from migrator.settings import MigratorSettings

    settings = MigratorSettings.from_env()
    with bootstrap.parts(settings) as shared:
        yield CutoverParts(
            shared.phases, shared.catalog, bootstrap.checkpoint_store(shared), settings.ops.who,
            settings.parity.max_age_s,
        )  # fmt: skip


ROOMS_HELP = "Rooms: ids (12,34), @file (one id per line), a sticky percentage (10%) or all."
PHASES = ", ".join(Phase)
WhoOption = Annotated[
    str | None, typer.Option("--who", help="Who asks (recorded); default MIG_MIGRATOR_WHO.")
]
WhyOption = Annotated[str, typer.Option("--why", help="Why (recorded with the change).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a summary.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Say what would happen and why; change nothing.")
]


def register(app: typer.Typer, wiring: Wiring = real_parts) -> None:
    """Adds cutover, rollback, kill-switch and status to `app`; `wiring` opens their parts."""

    def move(
        direction: Direction, rooms: str, to: str, why: str, who: str | None, dry_run: bool,
        as_json: bool,
    ) -> None:  # fmt: skip
        selection = parse_rooms(rooms)
        target = _phase(to)
        with wiring() as parts:
            outcome = move_rooms(
                parts.store, parts.catalog, selection, target, direction,
                who=who or parts.who, why=why, dry_run=dry_run,
                parity_max_age_s=parts.parity_max_age_s,
            )  # fmt: skip
        typer.echo(_json(outcome.as_json()) if as_json else render_move(outcome))
        if outcome.refused_all:
            raise typer.Exit(EXIT_REFUSED)

    @app.command("cutover")
    def cutover(
        rooms: Annotated[str, typer.Argument(metavar="ROOMS", help=ROOMS_HELP)],
        to: Annotated[str, typer.Option("--to", help=f"The phase to move to ({PHASES}).")],
        why: WhyOption,
        who: WhoOption = None,
        dry_run: DryRunOption = False,
        as_json: JsonOption = False,
    ) -> None:
        """Move rooms forward to PHASE, one step at a time, through the gateway's guards
        (shadow_read needs the backfill done; the phases after it a recent clean parity and a
        clean shadow record). A room the move would take back is refused: use rollback."""
        move(Direction.FORWARD, rooms, to, why, who, dry_run, as_json)

    @app.command("rollback")
    def rollback(
        rooms: Annotated[str, typer.Argument(metavar="ROOMS", help=ROOMS_HELP)],
        to: Annotated[str, typer.Option("--to", help=f"The phase to go back to ({PHASES}).")],
        why: WhyOption,
        who: WhoOption = None,
        dry_run: DryRunOption = False,
        as_json: JsonOption = False,
    ) -> None:
        """Move rooms back to an earlier PHASE at once (any earlier phase; new_only is final).
        A room the move would take forward is refused: use cutover."""
        move(Direction.BACK, rooms, to, why, who, dry_run, as_json)

    @app.command("kill-switch")
    def kill_switch(
        action: Annotated[str, typer.Argument(metavar="on|off|show")],
        why: Annotated[
            str | None, typer.Option("--why", help="Why (needed for on and off).")
        ] = None,
        who: WhoOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """The global kill switch: on sends every room straight to the monolith (the recorded
        phases stay and come back when it is off); show says how it is set, by whom and why."""
        word = action.strip().lower()
        if word not in ("on", "off", "show"):
            raise OperatorError(f"kill-switch takes on, off or show, got {action!r}")
        if word != "show" and (why is None or not why.strip()):
            raise OperatorError(f"kill-switch {word} needs --why (it is recorded with the change)")
        with wiring() as parts:
            if word == "show":
                changed, switch = False, parts.store.kill_switch()
            else:
                assert why is not None
                changed, switch = set_kill_switch(
                    parts.store, word == "on", who=who or parts.who, why=why
                )
        if as_json:
            typer.echo(_json({"changed": changed, "kill_switch": kill_switch_json(switch)}))
        else:
            prefix = "" if word == "show" else ("set: " if changed else "unchanged, already: ")
            typer.echo(prefix + render_switch(switch))

    @app.command("status")
    def status_command(
        as_json: JsonOption = False,
        rooms: Annotated[
            int, typer.Option("--rooms", help="Rooms shown in detail, furthest along first.")
        ] = ROOM_LIMIT,
        actions: Annotated[
            int, typer.Option("--actions", help="Recent operator actions shown.")
        ] = ACTIONS,
    ) -> None:
        """Rooms per phase, backfill progress, parity and shadow state per room, the kill
        switch and the last operator actions. Reads only."""
        with wiring() as parts:
            found = status(
                parts.store, parts.checkpoints, parity_max_age_s=parts.parity_max_age_s,
                room_limit=rooms, actions=actions, clock=parts.clock,
            )  # fmt: skip
        typer.echo(_json(found.as_json()) if as_json else render_status(found))


def _phase(text: str) -> Phase:
    try:
        return parse_phase(text.strip())
    except ValueError as exc:
        raise OperatorError(f"--to: {exc}") from None


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


# -- rendering for a person ------------------------------------------------------------------


def shown(rooms: Iterable[int], limit: int = 30) -> str:
    """Room ids for a person: the first `limit`, then how many more."""
    listed = list(rooms)
    head = ", ".join(str(r) for r in listed[:limit])
    return head + (f" … and {len(listed) - limit} more" if len(listed) > limit else "")


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


def render_move(outcome: MoveOutcome) -> str:
    r = outcome.report
    would = "would be " if outcome.dry_run else ""
    lines = [
        f"{outcome.command} {outcome.selection} to {outcome.to}: {len(outcome.rooms)} rooms "
        f"selected; {len(r.moved)} {would}moved, {len(r.unchanged)} unchanged, "
        f"{len(r.refused)} refused" + (" (dry run: nothing changed)" if outcome.dry_run else "")
    ]
    by_source: dict[Phase, list[int]] = {}
    for t in r.moved:
        by_source.setdefault(t.from_phase, []).append(t.room_id)
    for source, rooms in by_source.items():
        lines.append(f"  {would}moved {source} -> {outcome.to} ({len(rooms)}): {shown(rooms)}")
    if r.unchanged:
        lines.append(f"  unchanged, already in {outcome.to} ({len(r.unchanged)}): "
                     f"{shown(r.unchanged)}")  # fmt: skip
    by_reason: dict[str, list[int]] = {}
    for room, reason in r.refused.items():
        by_reason.setdefault(reason, []).append(room)
    for reason, rooms in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        lines.append(f"  refused ({len(rooms)}): {shown(rooms)}")
        lines.append(f"    because {reason}")
    return "\n".join(lines)


def render_switch(switch: KillSwitch) -> str:
    state = "ON: every room goes straight to the monolith" if switch.on else "off"
    if switch.at is None:
        return f"kill switch {state} (never set)"
    return f"kill switch {state} (set by {switch.who} at {_when(switch.at)}: {switch.why})"


def render_status(found: Status) -> str:
    lines = [render_switch(found.kill_switch)]
    phases = ", ".join(f"{phase} {n}" for phase, n in found.by_phase.items())
    lines.append(f"recorded rooms {found.recorded}: {phases} (unrecorded rooms are legacy)")
    age = found.parity_max_age_s / 3600
    lines.append(
        f"backfilled {found.backfilled}; clean parity within {age:g} h {found.parity_recent}, "
        f"older {found.parity_stale}; clean shadow record {found.shadow_clean} of "
        f"{found.shadow_rooms} rooms in shadow_read or later"
    )
    if found.rooms:
        lines.append("")
        lines.append(f"rooms ({len(found.rooms)} of {found.recorded}, furthest along first):")
        for room in found.rooms:
            parity = (
                "no clean parity"
                if room.parity_clean_at is None
                else f"parity clean {_when(room.parity_clean_at)} at {room.parity_positions}"
                + ("" if room.parity_recent else " (too old)")
            )
            shadow = room.shadow
            counts = (
                "no shadow comparison recorded"
                if shadow is None
                else f"shadow same {shadow.same}, different {shadow.different}, late "
                f"{shadow.late}, last difference {_when(shadow.last_different_at)}"
            )
            verdict = (
                ""
                if room.phase not in (Phase.SHADOW_READ, Phase.NEW_PRIMARY, Phase.NEW_ONLY)
                else "; shadow record clean"
                if room.shadow_unclean is None
                else f"; not clean: needs {room.shadow_unclean}"
            )
            lines.append(
                f"  {room.room_id}: {room.phase} since {_when(room.changed_at)}; backfilled "
                f"{_when(room.backfilled_at)}; {parity}; {counts}{verdict}"
            )
    lines.append("")
    if found.jobs is None:
        lines.append("backfill progress: no checkpoint store wired in this version")
    elif not found.jobs:
        lines.append("backfill progress: no job checkpoint")
    else:
        lines.append("jobs (from their checkpoints):")
        for job in found.jobs:
            what = job.schema or job.kind
            version = "" if job.version is None else f" v{job.version}"
            if job.unreadable is not None:
                lines.append(f"  {job.job} [{job.kind}]: unreadable: {job.unreadable}")
                continue
            facts = ", ".join(
                f"{k} {v}" if not isinstance(v, dict) else f"{k} " + ", ".join(
                    f"{state} {n}" for state, n in v.items())
                for k, v in job.summary.items()
            )  # fmt: skip
            lines.append(f"  {job.job} [{job.kind}] {what}{version}: {facts or '-'}")
    lines.append("")
    if not found.actions:
        lines.append("last operator actions: none recorded")
    else:
        lines.append("last operator actions (newest first):")
        for action in found.actions:
            if action.room_id is None:
                did = f"kill switch {'on' if action.kill_switch_on else 'off'}"
            else:
                did = f"room {action.room_id} {action.from_phase} -> {action.to_phase}"
            lines.append(f"  {_when(action.at)} {action.who}: {did} ({action.why})")
    return "\n".join(lines)
