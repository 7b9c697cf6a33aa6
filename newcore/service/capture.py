"""Capture: a batch of hints in, the monolith's current state out, as full-state events.

Why this converges (DESIGN.md, promise 4): hints of one room are in one partition and are
captured in order by one capturer. Every state read for a batch is read after every hint of the
batch was written, so stamping it with the highest position among the hints that asked for it
(the "capture position") guarantees: a state stamped higher was read later, hence is at least
as new. The read store keeps the highest position, so the read model ends at the monolith's
latest state whatever the order, duplication or redelivery of hints and events.

One query serves many hints: all message hints of a batch are read together, all cursor
hints together, one range page per range hint. A range with more rows than `range_page` is
captured one page at a time: the rest goes back to the hints log as a follow-up range hint, so
a batch stays bounded and the follow-up keeps the room's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from newcore.domain.dead_letters import DeadLetter
from newcore.domain.events import CursorMoved, Event, MessageDeleted, MessageUpserted
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.domain.partitioning import partition_for
from newcore.errors import InvalidHint
from newcore.ports import LogRecord, MonolithReader
from newcore.wire.events import encode
from newcore.wire.hints import decode_hint, encode_hint


@dataclass
class CaptureOutcome:
    events: list[Event] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    follow_ups: list[RangeHint] = field(default_factory=list)
    # (room_id, encoded event) of each of `events`, in order: Capturer.capture encodes each
    # event once, to check its size, and keeps the bytes for sending.
    records: list[tuple[int, bytes]] = field(default_factory=list)

    def event_records(self) -> list[tuple[int, bytes]]:
        return self.records

    def follow_up_records(self) -> list[tuple[int, bytes]]:
        return [(hint.room_id, encode_hint(hint)) for hint in self.follow_ups]

    def dead_letter_records(self) -> list[tuple[int, bytes]]:
        return [(letter.room_id, letter.encode()) for letter in self.dead_letters]


def split_by_ranges(records: Sequence[LogRecord], max_ranges: int) -> list[list[LogRecord]]:
    """Consecutive pieces of a batch, each with at most `max_ranges` range hints, so that one
    capture (and one transaction) reads a bounded number of rows: a message or cursor hint
    costs a row, a range hint up to a page. Unreadable records count as cheap ones (they only
    become dead letters)."""
    if max_ranges < 1:
        raise ValueError("max_ranges must be at least 1")
    pieces: list[list[LogRecord]] = [[]]
    ranges = 0
    for record in records:
        try:
            is_range = isinstance(decode_hint(record.value), RangeHint)
        except InvalidHint:
            is_range = False
        if is_range:
            if ranges == max_ranges:
                pieces.append([])
                ranges = 0
            ranges += 1
        pieces[-1].append(record)
    return [piece for piece in pieces if piece]


class Capturer:
    """`max_event_bytes`: the largest event the event log carries (Kafka refuses a larger
    record on every retry, which would stall the partition's hints for good). A larger event
    (a message with a huge body) becomes a dead letter naming the message, and the rest of the
    batch goes on: the read model lacks that state until the limit is raised and the room
    repaired, and the dead letter says so."""

    def __init__(
        self,
        reader: MonolithReader,
        *,
        partitions: int,
        range_page: int = 1000,
        max_event_bytes: int = 1_000_000,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if range_page < 1:
            raise ValueError("range_page must be at least 1")
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be at least 1")
        self._reader = reader
        self._partitions = partitions
        self._range_page = range_page
        self._max_event_bytes = max_event_bytes

    def capture(self, records: Sequence[LogRecord], captured_at_ms: int) -> CaptureOutcome:
        """Full-state events for a batch of hint records of one partition, in log order."""
        outcome = CaptureOutcome()
        hints: list[tuple[LogRecord, Hint]] = []
        for record in records:
            try:
                hints.append((record, decode_hint(record.value)))
            except InvalidHint as exc:
                outcome.dead_letters.append(
                    DeadLetter(
                        "hints",
                        record.room_id,
                        exc.reason,
                        record.partition,
                        record.position,
                        record=record.value,
                    )
                )
        if not records:
            return outcome
        position = max(record.position for record in records)
        rooms = self._reader.existing_rooms(sorted({hint.room_id for _, hint in hints}))
        messages: dict[tuple[int, int], None] = {}
        cursors: dict[tuple[int, int], None] = {}
        ranges: list[RangeHint] = []
        for record, hint in hints:
            home = partition_for(hint.room_id, self._partitions)
            if home != record.partition:
                outcome.dead_letters.append(
                    DeadLetter("hints", hint.room_id, f"room {hint.room_id} belongs to partition "
                               f"{home}, this hint came on {record.partition}: its position cannot "
                               "be ordered with the room's other captures (a producer that does "
                               "not key by room?)", record.partition, record.position,
                               record=record.value)
                )  # fmt: skip
            elif hint.room_id not in rooms:
                outcome.dead_letters.append(
                    DeadLetter("hints", hint.room_id, f"room {hint.room_id} does not exist in the monolith",
                               record.partition, record.position, record=record.value)
                )  # fmt: skip
            elif isinstance(hint, MessageHint):
                messages[(hint.room_id, hint.message_id)] = None
            elif isinstance(hint, CursorHint):
                cursors[(hint.room_id, hint.account_id)] = None
            else:
                ranges.append(hint)
        # Reads happen in the order their events are appended: see the module docstring.
        self._capture_messages(list(messages), position, captured_at_ms, outcome)
        self._capture_cursors(list(cursors), position, captured_at_ms, outcome)
        for hint in ranges:
            self._capture_range(hint, position, captured_at_ms, outcome)
        self._encode(outcome)
        return outcome

    def _encode(self, outcome: CaptureOutcome) -> None:
        kept: list[Event] = []
        for event in _last_per_key(outcome.events):
            record = encode(event)
            if len(record) <= self._max_event_bytes:
                kept.append(event)
                outcome.records.append((event.room_id, record))
                continue
            key = event.message.message_id if isinstance(event, MessageUpserted) else 0
            reason = (
                f"event of {len(record)} bytes exceeds the event log's limit of "
                f"{self._max_event_bytes}: this state is not in the read model; raise the limit "
                "(MIG_CAPTURER_MAX_EVENT_BYTES, the topic's max.message.bytes) and repair the room"
            )
            outcome.dead_letters.append(DeadLetter("capture", event.room_id, reason, key=key))
        outcome.events = kept

    def _capture_messages(
        self, keys: list[tuple[int, int]], position: int, now: int, outcome: CaptureOutcome
    ) -> None:
        if not keys:
            return
        read = self._reader.read_messages(keys)
        for message in read.live.values():
            outcome.events.append(MessageUpserted(message, position, now))
        for room_id, message_id in sorted(read.gone):
            outcome.events.append(MessageDeleted(room_id, message_id, position, now))
        outcome.dead_letters += [
            DeadLetter(f"monolith:{p.table}", p.room_id, p.reason, key=p.key) for p in read.problems
        ]

    def _capture_cursors(
        self, keys: list[tuple[int, int]], position: int, now: int, outcome: CaptureOutcome
    ) -> None:
        if not keys:
            return
        for cursor in self._reader.read_cursors(keys).values():
            outcome.events.append(CursorMoved(cursor, position, now))

    def _capture_range(
        self, hint: RangeHint, position: int, now: int, outcome: CaptureOutcome
    ) -> None:
        page = self._reader.read_range(
            hint.room_id, hint.first_message_id, hint.last_message_id, self._range_page
        )
        outcome.events += [MessageUpserted(message, position, now) for message in page.live]
        outcome.events += [MessageDeleted(hint.room_id, mid, position, now) for mid in page.deleted]
        outcome.dead_letters += [
            DeadLetter(f"monolith:{p.table}", p.room_id, p.reason, key=p.key) for p in page.problems
        ]
        seen = len(page.live) + len(page.deleted)
        if (
            page.last_seen is not None
            and seen >= self._range_page
            and page.last_seen < hint.last_message_id
        ):
            outcome.follow_ups.append(
                RangeHint(hint.room_id, page.last_seen + 1, hint.last_message_id)
            )


def _last_per_key(events: list[Event]) -> list[Event]:
    """The last event of each message and each cursor, in the order of those last events.

    One batch can read a message twice (a message hint and a range hint naming it) and, with an
    edit in between, see two states that carry the same capture position. The read store
    cannot order equal positions, so a late write of the first state (a redelivery, or an
    updater that lost its partition mid-call) could hide the second for good. Only the last
    read leaves the batch."""
    last: dict[tuple[str, int, int], int] = {}
    for index, event in enumerate(events):
        last[_key(event)] = index
    if len(last) == len(events):
        return events
    return [events[index] for index in sorted(last.values())]


def _key(event: Event) -> tuple[str, int, int]:
    if isinstance(event, MessageUpserted):
        return "message", event.message.room_id, event.message.message_id
    if isinstance(event, MessageDeleted):
        return "message", event.room_id, event.message_id
    return "cursor", event.cursor.room_id, event.cursor.account_id
