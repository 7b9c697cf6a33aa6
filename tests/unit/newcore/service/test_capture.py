"""What one capture batch lets out: hints on the wrong partition are refused, and a message
read twice in one batch leaves it once, at its last read."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from legacy_adapters.domain.translation import LegacyMessageRow
from newcore.domain.events import MessageUpserted
from newcore.domain.hints import Hint, MessageHint, RangeHint
from newcore.domain.partitioning import partition_for
from newcore.ports import LogRecord, MessageRead
from newcore.service.capture import Capturer, split_by_ranges
from newcore.wire.hints import encode_hint

PARTITIONS = 4
ROOM = 7


def row(message_id: int, body: str) -> LegacyMessageRow:
    return LegacyMessageRow(message_id, ROOM, 3, body, None, None, 1_700_000_000, 0,
                            "2023-11-14 22:13:20", 0)  # fmt: skip


class EditedRightAfterEachSingleRead(InMemoryMonolith):
    """The monolith as a capture sees it under load: message 5 is edited between the batch's
    read of single messages and its read of a range."""

    def read_messages(self, keys: Sequence[tuple[int, int]]) -> MessageRead:
        read = super().read_messages(keys)
        self.put(row(5, "edited"))
        return read


def records(partition: int, *hints: Hint) -> list[LogRecord]:
    return [LogRecord(partition, n, h.room_id, encode_hint(h)) for n, h in enumerate(hints)]


def test_a_message_read_twice_in_a_batch_leaves_once_at_its_last_read() -> None:
    monolith = EditedRightAfterEachSingleRead()
    monolith.add_room(ROOM)
    for mid in range(1, 11):
        monolith.put(row(mid, "first"))
    capturer = Capturer(monolith, partitions=PARTITIONS)
    home = partition_for(ROOM, PARTITIONS)

    outcome = capturer.capture(records(home, MessageHint(ROOM, 5), RangeHint(ROOM, 1, 10)), 0)

    upserts = [e for e in outcome.events if isinstance(e, MessageUpserted)]
    assert [e.message.message_id for e in upserts] == list(range(1, 11))  # once each, in order
    (fifth,) = (e for e in upserts if e.message.message_id == 5)
    assert fifth.message.body == "edited"
    assert len(outcome.event_records()) == len(outcome.events) == 10


def test_a_hint_on_another_partition_than_its_rooms_is_a_dead_letter() -> None:
    monolith = InMemoryMonolith()
    monolith.add_room(ROOM)
    monolith.put(row(1, "hello"))
    capturer = Capturer(monolith, partitions=PARTITIONS)
    home = partition_for(ROOM, PARTITIONS)
    stray = (home + 1) % PARTITIONS

    refused = capturer.capture(records(stray, MessageHint(ROOM, 1)), 0)
    assert refused.events == []
    (letter,) = refused.dead_letters
    assert letter.source == "hints" and letter.partition == stray
    assert f"room {ROOM} belongs to partition {home}, this hint came on {stray}" in letter.reason

    taken = capturer.capture(records(home, MessageHint(ROOM, 1)), 0)
    assert [e.message.body for e in taken.events if isinstance(e, MessageUpserted)] == ["hello"]
    assert taken.dead_letters == []


# -- pieces: one capture reads a bounded number of rows ----------------------------------


def split_records(*hints: Hint | bytes) -> list[LogRecord]:
    return [
        LogRecord(0, n, 1, h if isinstance(h, bytes) else encode_hint(h))
        for n, h in enumerate(hints)
    ]


def test_pieces_keep_log_order_and_hold_at_most_max_ranges_range_hints() -> None:
    batch = split_records(
        MessageHint(1, 1), RangeHint(1, 1, 9), b"junk", RangeHint(1, 10, 19),
        MessageHint(1, 2), RangeHint(1, 20, 29), MessageHint(1, 3),
    )  # fmt: skip
    pieces = split_by_ranges(batch, 2)
    assert [[r.position for r in piece] for piece in pieces] == [[0, 1, 2, 3, 4], [5, 6]]
    assert [r for piece in pieces for r in piece] == batch


def test_a_batch_without_ranges_stays_whole_and_an_empty_one_has_no_pieces() -> None:
    batch = split_records(*(MessageHint(1, m) for m in range(1, 500)))
    assert split_by_ranges(batch, 1) == [batch]
    assert split_by_ranges([], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        split_by_ranges(batch, 0)
