"""What one capture batch lets out: hints on the wrong partition are refused, and a message
read twice in one batch leaves it once, at its last read."""

from __future__ import annotations

from collections.abc import Sequence

from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from legacy_adapters.domain.translation import LegacyMessageRow
from newcore.domain.events import MessageUpserted
from newcore.domain.hints import Hint, MessageHint, RangeHint
from newcore.domain.partitioning import partition_for
from newcore.ports import LogRecord, MessageRead
from newcore.service.capture import Capturer
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
