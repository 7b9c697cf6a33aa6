"""Repair: sends the hints that make the read model converge (migrator/README.md, "Repair";
the rules: `migrator/domain/repair.py`).

- `repair_from_report`: from a parity result (`chat-migrate parity`'s JSON). The document is
  read twice, each time as a stream (memory flat whatever its size): first whole, without
  sending anything, so that a document that is not a whole parity result of this version (its
  schema or version, JSON cut short, a run that did not finish) is refused with
  WrongReportVersion before one hint is sent; then again, sending a hint per message or cursor
  that differs.
- `repair_lost_rooms`: from a gateway spool's lost-rooms list (`ports.LostRooms`): range hints
  over each room's ids, cut at the backfill's chunk ends (`RoomHistory.chunk_ends`), then the
  rooms sent are taken off the list (those that lost hints again meanwhile stay).
- `reconcile`: parity -> repair -> parity, per room, until clean or a bound of rounds.

Hints go to the hints log (`EventLog.append`, keyed by room, the same pipe as live writes) in
batches; each batch is durable when `append` returns. Nothing is checkpointed: a repair that
dies midway is run again, and hints sent twice are harmless (a hint carries no data). A dry run
appends nothing and changes nothing: it hands each hint to `on_hint` (the CLI lists them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from migrator.domain.parity import Difference, Header, RoomResult, Summary, Verdict, read_document
from migrator.domain.repair import (
    HintsFromDifferences,
    PlannedHint,
    RepairTally,
    describe_lost,
    range_hints,
)
from migrator.ports import Forgotten, LostRoom, LostRooms, RoomHistory
from newcore.ports import EventLog
from newcore.wire.hints import encode_hint

BATCH = 500  # hints per append
CHUNKS_PER_READ = 100  # chunk ends asked of the monolith at once

OnHint = Callable[[PlannedHint], None]


@dataclass(slots=True)
class RepairOutcome:
    """What a repair did (or, dry, would do)."""

    source: str
    dry_run: bool
    tally: RepairTally = field(default_factory=RepairTally)
    appended: int = 0  # hints appended to the hints log (0 in a dry run)
    # From a parity result: its rooms by verdict, and the late ones (nothing to repair there:
    # the parity did not decide them; run it again).
    verdicts: dict[str, int] = field(default_factory=dict)
    late_rooms: list[int] = field(default_factory=list)
    # From the lost rooms: the rooms read, and what forgetting them did.
    lost: list[LostRoom] = field(default_factory=list)
    forgotten: Forgotten | None = None


class HintSender:
    """Appends planned hints to the hints log in batches (or, dry, appends nothing), and hands
    each one to `on_hint`."""

    def __init__(
        self, log: EventLog | None, dry_run: bool, on_hint: OnHint | None, batch: int = BATCH
    ) -> None:
        if not dry_run and log is None:
            raise ValueError("a repair that sends needs the hints log")
        if batch < 1:
            raise ValueError("a batch holds one hint at least")
        self._log = log
        self._dry_run = dry_run
        self._on_hint = on_hint
        self._batch = batch
        self._pending: list[tuple[int, bytes]] = []
        self.appended = 0

    async def send(self, planned: PlannedHint) -> None:
        if self._on_hint is not None:
            self._on_hint(planned)
        if self._dry_run:
            return
        self._pending.append((planned.hint.room_id, encode_hint(planned.hint)))
        if len(self._pending) >= self._batch:
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        assert self._log is not None
        records, self._pending = self._pending, []
        await self._log.append(records)
        self.appended += len(records)


async def repair_from_report(
    open_report: Callable[[], AbstractContextManager[TextIO]],
    log: EventLog | None,
    *,
    dry_run: bool,
    on_hint: OnHint | None = None,
    batch: int = BATCH,
) -> RepairOutcome:
    """Repairs what a parity result found (module docstring). `open_report` opens the
    document's text each time it is called; WrongReportVersion (nothing sent) when it is not a
    whole parity result of this version; an OSError of reading goes up as it is."""
    outcome = RepairOutcome("a parity result", dry_run)
    with open_report() as report:
        for item in read_document(report.read):  # the whole document checked first
            if isinstance(item, RoomResult):
                verdict = item.verdict.value
                outcome.verdicts[verdict] = outcome.verdicts.get(verdict, 0) + 1
                if item.verdict == Verdict.LATE:
                    outcome.late_rooms.append(item.room_id)
    sender = HintSender(log, dry_run, on_hint, batch)
    hints = HintsFromDifferences(outcome.tally)
    with open_report() as report:
        for item in read_document(report.read):
            if isinstance(item, Difference):
                for planned in hints.add(item):
                    await sender.send(planned)
            elif isinstance(item, RoomResult):
                for planned in hints.finish():
                    await sender.send(planned)
                if item.verdict == Verdict.LATE:
                    room = outcome.tally.room(item.room_id)
                    room.note = (
                        f"late in the parity run ({item.reason or 'not decided'}): its "
                        "differences were not all found; run parity on it again"
                    )
            elif not isinstance(item, Header | Summary):  # pragma: no cover - the stream's kinds
                raise AssertionError(f"unexpected item {item!r}")
    await sender.flush()
    outcome.appended = sender.appended
    return outcome


async def repair_lost_rooms(
    source: LostRooms,
    history: RoomHistory,
    log: EventLog | None,
    *,
    chunk_rows: int,
    who: str,
    why: str,
    dry_run: bool,
    on_hint: OnHint | None = None,
    batch: int = BATCH,
) -> RepairOutcome:
    """Range hints over every room of the lost-rooms list, then the rooms sent forgotten
    (module docstring). A room with no message row now gets no hint (nothing a range can
    find: a purge is repaired from a parity result) and stays listed, with a note saying to
    run parity on it: forgetting it would drop the only sign that its read model may hold
    messages the monolith purged."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows: 1 at least")
    outcome = RepairOutcome("the gateway spool's lost rooms", dry_run)
    outcome.lost = await asyncio.to_thread(source.read)
    sender = HintSender(log, dry_run, on_hint, batch)
    unmended: set[int] = set()
    for room in outcome.lost:
        tally = outcome.tally.room(room.room_id)
        bounds = await asyncio.to_thread(history.bounds, room.room_id)
        if bounds is None:
            tally.note = (
                f"{describe_lost(room)}; no message row in the monolith now: nothing for a "
                "range to read again; kept in the list: run `chat-migrate parity "
                f"{room.room_id}` and repair from its result (a purged message)"
            )
            unmended.add(room.room_id)
            continue
        async for ends in _chunk_ends(history, room.room_id, bounds.high, chunk_rows):
            for planned in range_hints(room, ends.after, ends.ends):
                outcome.tally.count(planned)
                await sender.send(planned)
    await sender.flush()
    outcome.appended = sender.appended
    if not dry_run:
        mended = [room for room in outcome.lost if room.room_id not in unmended]
        outcome.forgotten = await asyncio.to_thread(source.forget, mended, who, why)
    return outcome


@dataclass(frozen=True, slots=True)
class _Ends:
    after: int
    ends: list[int]


async def _chunk_ends(
    history: RoomHistory, room_id: int, high: int, rows: int
) -> AsyncIterator[_Ends]:
    after = 0
    while after < high:
        ends = await asyncio.to_thread(
            history.chunk_ends, room_id, after, high, rows, CHUNKS_PER_READ
        )
        if not ends:
            return
        yield _Ends(after, ends)
        after = ends[-1]


# -- reconcile: parity -> repair -> parity ----------------------------------------------------


class ParityRound(Protocol):
    """One parity run over some rooms, its result written as a document `open_report` opens
    (`migrator/service/parity.py`, wired by the CLI)."""

    def __call__(
        self, rooms: list[int]
    ) -> Awaitable[tuple[dict[int, Verdict], Callable[[], AbstractContextManager[TextIO]]]]: ...


@dataclass(slots=True)
class ReconcileRound:
    number: int
    verdicts: dict[int, Verdict]
    repaired: RepairOutcome | None  # None when nothing was left to repair


@dataclass(slots=True)
class ReconcileOutcome:
    rounds: list[ReconcileRound] = field(default_factory=list)
    clean: list[int] = field(default_factory=list)
    not_clean: dict[int, Verdict] = field(default_factory=dict)  # at the bound


async def reconcile(
    rooms: list[int],
    parity: ParityRound,
    log: EventLog,
    *,
    max_rounds: int,
    wait_applied: Callable[[], Awaitable[None]] | None = None,
    on_hint: OnHint | None = None,
) -> ReconcileOutcome:
    """Parity on `rooms`; each room not clean is repaired from that result, then checked
    again; until every room is clean or `max_rounds` parity runs are done (a room clean in a
    round leaves the loop). `wait_applied` (if given) runs between a repair and the next
    parity, e.g. to let the pipeline carry the hints; a parity run waits for its own frontier
    anyway (hints appended before it are applied before it compares)."""
    if max_rounds < 1:
        raise ValueError(f"--max-rounds is 1 at least, got {max_rounds}")
    outcome = ReconcileOutcome()
    left = list(dict.fromkeys(rooms))
    for number in range(1, max_rounds + 1):
        verdicts, open_report = await parity(left)
        outcome.clean.extend(r for r in left if verdicts.get(r) == Verdict.CLEAN)
        left = [r for r in left if verdicts.get(r) != Verdict.CLEAN]
        if not left or number == max_rounds:
            outcome.rounds.append(ReconcileRound(number, verdicts, None))
            outcome.not_clean = {r: verdicts.get(r, Verdict.LATE) for r in left}
            return outcome
        repaired = await repair_from_report(open_report, log, dry_run=False, on_hint=on_hint)
        outcome.rounds.append(ReconcileRound(number, verdicts, repaired))
        if wait_applied is not None:
            await wait_applied()
    return outcome  # pragma: no cover - the loop returns at its last round


def each_hint(outcome: RepairOutcome) -> Iterator[str]:
    """The per-room lines of an outcome, for a summary."""
    for room in outcome.tally.rooms.values():
        parts = []
        if room.messages:
            parts.append(f"{room.messages} message hint(s)")
        if room.cursors:
            parts.append(f"{room.cursors} cursor hint(s)")
        if room.ranges:
            parts.append(f"{room.ranges} range hint(s)")
        if room.unreadable:
            parts.append(f"{room.unreadable} unreadable row(s) left as the monolith shows them")
        said = ", ".join(parts) or "no hint"
        yield f"room {room.room_id}: {said}" + (f"; {room.note}" if room.note else "")
