"""Repair: the hints that make the read model converge (migrator/README.md, "Repair").

A repair sends hints, never data. A hint only says "look here"; the capturer reads the
monolith's current rows and emits full-state events (DESIGN.md, "A design that keeps the
promises"), so a repair:

- can never write an older state: whatever the report saw, the capturer reads the row as it
  is when the hint is captured (a row edited since is captured edited);
- honours deletes: a message hint for a row gone from the monolith becomes a delete event
  (`MonolithReader.read_messages` puts every key in `live` or `gone`), a soft-deleted row a
  tombstone;
- is idempotent: a hint sent twice is one more read of the same state; a second repair from
  the same report changes nothing in the read model.

What each input becomes:

| input | hint |
|---|---|
| parity difference `missing_in_new`, `extra_in_new`, `stale`, `field_differs` | one `MessageHint(room, message)` per message (its fields merged) |
| parity difference `cursor_missing`, `cursor_differs` | one `CursorHint(room, account)` per cursor |
| parity difference `unreadable_legacy` | none: the row migrates as the monolith shows it, no read can do better (reported, counted) |
| a room in the gateway spool's lost-rooms file | `RangeHint`s over the room's ids `[1, highest]`, cut at the backfill's chunk ends (`RoomHistory.chunk_ends`), so each is captured in one page |

What a range cannot mend: a message hard-deleted (purged) while its hint was lost has no row
left for a range to find, so its read-model copy stays; parity finds it (`extra_in_new`) and a
repair from that result sends its message hint (`chat-migrate reconcile` does both).

Pure: the standard library, the new core's hints and the parity domain.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.domain.lost_rooms import may_forget
from migrator.domain.backfill import chunk_ranges
from migrator.domain.parity import CURSOR_KINDS, Difference, Kind
from migrator.ports import LostRoom
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint

# Distinct keys remembered per room to drop a duplicate hint: beyond this many in one room, a
# duplicate may be sent again (harmless: one more read), and memory stays bounded.
REMEMBERED_PER_ROOM = 100_000


@dataclass(frozen=True, slots=True)
class PlannedHint:
    """A hint and why it is sent (for the operator: `--dry-run` lists these)."""

    hint: Hint
    why: str

    def describe(self) -> str:
        h = self.hint
        if isinstance(h, MessageHint):
            what = f"message {h.message_id}"
        elif isinstance(h, CursorHint):
            what = f"cursor of account {h.account_id}"
        else:
            what = f"range {h.first_message_id}..{h.last_message_id}"
        return f"room {h.room_id}: {what} ({self.why})"


def hint_for(difference: Difference) -> MessageHint | CursorHint | None:
    """The hint that makes the read model read this difference's row again; None for a
    difference no read can mend (`unreadable_legacy`)."""
    if difference.kind == Kind.UNREADABLE_LEGACY:
        return None
    if difference.kind in CURSOR_KINDS:
        if difference.account_id is None:
            raise ValueError(f"a {difference.kind} difference without an account id")
        return CursorHint(difference.room_id, difference.account_id)
    if difference.message_id is None:
        raise ValueError(f"a {difference.kind} difference without a message id")
    return MessageHint(difference.room_id, difference.message_id)


@dataclass(slots=True)
class RoomRepair:
    """What a repair did (or, dry, would do) for one room."""

    room_id: int
    messages: int = 0  # message hints
    cursors: int = 0  # cursor hints
    ranges: int = 0  # range hints
    unreadable: int = 0  # unreadable_legacy differences: no hint
    note: str | None = None  # e.g. the room was late in the parity run, or has no rows

    @property
    def hints(self) -> int:
        return self.messages + self.cursors + self.ranges


@dataclass(slots=True)
class RepairTally:
    """Counts of a repair, room by room, in the order met."""

    rooms: dict[int, RoomRepair] = field(default_factory=dict)

    def room(self, room_id: int) -> RoomRepair:
        found = self.rooms.get(room_id)
        if found is None:
            found = self.rooms[room_id] = RoomRepair(room_id)
        return found

    def count(self, planned: PlannedHint) -> None:
        room = self.room(planned.hint.room_id)
        if isinstance(planned.hint, MessageHint):
            room.messages += 1
        elif isinstance(planned.hint, CursorHint):
            room.cursors += 1
        else:
            room.ranges += 1

    @property
    def hints(self) -> int:
        return sum(room.hints for room in self.rooms.values())


class HintsFromDifferences:
    """Turns a parity result's differences (in the document's order) into hints, one per
    message or cursor: differences of one row in a row are merged into one hint whose `why`
    names their kinds and fields; a row met again later in its room is dropped while the room's
    keys fit in REMEMBERED_PER_ROOM. Feed `add`, then `finish`."""

    def __init__(self, tally: RepairTally, remembered: int = REMEMBERED_PER_ROOM) -> None:
        self._tally = tally
        self._remembered = remembered
        self._room: int | None = None
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._current: tuple[Hint, list[str]] | None = None

    def add(self, difference: Difference) -> Iterator[PlannedHint]:
        if difference.room_id != self._room:
            yield from self._flush()
            self._room, self._seen = difference.room_id, OrderedDict()
        hint = hint_for(difference)
        if hint is None:
            self._tally.room(difference.room_id).unreadable += 1
            return
        said = f"{difference.kind.value}: {difference.field}"
        if self._current is not None and self._current[0] == hint:
            if said not in self._current[1]:
                self._current[1].append(said)
            return
        yield from self._flush()
        key = difference.key
        if key in self._seen:
            return
        self._seen[key] = None
        if len(self._seen) > self._remembered:
            self._seen.popitem(last=False)
        self._current = (hint, [said])

    def finish(self) -> Iterator[PlannedHint]:
        yield from self._flush()

    def _flush(self) -> Iterator[PlannedHint]:
        if self._current is not None:
            hint, said = self._current
            self._current = None
            planned = PlannedHint(hint, ", ".join(said))
            self._tally.count(planned)
            yield planned


def describe_lost(room: LostRoom) -> str:
    def at(unix: float) -> str:
        return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    return f"{room.count} hint(s) lost between {at(room.first_lost_at)} and {at(room.last_lost_at)}"


def range_hints(room: LostRoom, after: int, ends: Sequence[int]) -> list[PlannedHint]:
    """The range hints of the room's chunks ending at `ends` (ascending, from
    `RoomHistory.chunk_ends`), the first starting after `after` (0: from the room's first id)."""
    why = f"lost hints: {describe_lost(room)}"
    return [
        PlannedHint(RangeHint(room.room_id, first, last), why)
        for first, last in chunk_ranges(after, ends)
    ]


def lost_rooms_to_forget(
    seen: Iterable[LostRoom], now: Iterable[LostRoom]
) -> tuple[list[int], list[int]]:
    """Which of the rooms repaired (`seen`: as read before their hints were sent) the spool may
    forget now (`now`: its list at the moment of forgetting): (forget, keep), by the gateway's
    rule (`gateway.domain.lost_rooms.may_forget`: a room that lost hints again since it was
    read is kept). A room already gone from the list is neither."""
    current = {room.room_id: room for room in now}
    forget: list[int] = []
    keep: list[int] = []
    for room in seen:
        found = current.get(room.room_id)
        if found is None:
            continue
        if may_forget(room.count, room.last_lost_at, found.count, found.last_lost_at):
            forget.append(room.room_id)
        else:
            keep.append(room.room_id)
    return forget, keep
