"""Cutover and rollback of rooms, and the kill switch: one command each (migrator/README.md,
"Cutover").

Every move goes through `PhaseStore.move`, the same guarded transitions as the gateway's admin
API (`gateway/domain/phases.py`), with a direction: `cutover` only forward, `rollback` only
back. The direction is judged by the store with the room's record locked, not here from an
earlier read, so a room another operator moved meanwhile is refused, never taken the wrong
way. A percentage is the gateway's sticky bucket (`gateway.domain.phases.bucket`): 1 %, then
10 %, then 100 % are one command each, and every room of the smaller step is in the larger.

What is promised: bad input (unknown rooms, who or why missing or too long) is refused before
anything is read from or changed in the control store; a dry run judges exactly as the move
would and changes nothing; a move records all its allowed rooms in one transaction, or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.domain.phases import (
    PARITY_MAX_AGE_S,
    Direction,
    KillSwitch,
    MoveReport,
    Phase,
    check_who,
    check_why,
)
from gateway.ports import PhaseStore, RoomCatalog
from migrator.domain.selection import Selection, resolve
from migrator.errors import OperatorError

COMMANDS = {Direction.FORWARD: "cutover", Direction.BACK: "rollback"}


@dataclass(frozen=True, slots=True)
class MoveOutcome:
    """What one `cutover` or `rollback` did (or, dry, would do)."""

    direction: Direction
    to: Phase
    selection: str  # as the operator wrote it, described
    rooms: list[int]  # the rooms selected, in the order moved
    dry_run: bool
    report: MoveReport

    @property
    def command(self) -> str:
        return COMMANDS[self.direction]

    @property
    def refused_all(self) -> bool:
        """Every selected room was refused: the command changed nothing and did nothing of what
        was asked (the CLI exits 2)."""
        return bool(self.report.refused) and not self.report.moved and not self.report.unchanged

    def as_json(self) -> dict[str, Any]:
        r = self.report
        return {
            "command": self.command,
            "to": self.to.value,
            "selection": self.selection,
            "selected": len(self.rooms),
            "dry_run": self.dry_run,
            "moved": [
                {"room_id": t.room_id, "from": t.from_phase.value, "to": t.to_phase.value}
                for t in r.moved
            ],
            "at": r.moved[0].at.isoformat() if r.moved else None,
            "unchanged": list(r.unchanged),
            "refused": [{"room_id": room, "reason": why} for room, why in r.refused.items()],
        }


def move_rooms(
    store: PhaseStore,
    catalog: RoomCatalog,
    selection: Selection,
    to: Phase,
    direction: Direction,
    *,
    who: str,
    why: str,
    dry_run: bool = False,
    parity_max_age_s: float = PARITY_MAX_AGE_S,
) -> MoveOutcome:
    """Resolves the selection against the monolith's rooms (UnknownRooms before anything is
    changed) and moves them to `to` in `direction` through the store's guards."""
    who, why = check_who(who), check_why(why)
    rooms = resolve(selection, catalog)
    if not rooms:
        raise OperatorError(
            f"{selection.describe()} selects no room of the monolith: nothing to move; choose a "
            "larger percentage or name the rooms"
        )
    report = store.move(
        rooms,
        to,
        who,
        why,
        dry_run=dry_run,
        direction=direction,
        parity_max_age_s=parity_max_age_s,
    )
    return MoveOutcome(direction, to, selection.describe(), rooms, dry_run, report)


def set_kill_switch(store: PhaseStore, on: bool, *, who: str, why: str) -> tuple[bool, KillSwitch]:
    """Sets the kill switch; (changed, the switch as it is now). Setting the state it is in
    changes nothing and answers who set it, when and why."""
    who, why = check_who(who), check_why(why)
    before = store.kill_switch()
    after = store.set_kill_switch(on, who, why)
    return before.on != after.on, after


def kill_switch_json(switch: KillSwitch) -> dict[str, Any]:
    return {
        "on": switch.on,
        "who": switch.who,
        "why": switch.why,
        "at": None if switch.at is None else switch.at.isoformat(),
    }
