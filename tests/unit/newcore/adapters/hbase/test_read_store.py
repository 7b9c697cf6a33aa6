"""How the HBase read store groups a call's events into puts: few batches, never a room's
events out of order (pure logic; tests/integration checks the store itself on real HBase)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from newcore.adapters.hbase import schema
from newcore.adapters.hbase.read_store import _message, _row, batches
from newcore.domain.events import CursorMoved, Event, MessageDeleted, MessageUpserted
from newcore.domain.model import Message, ReadCursor


def upsert(room: int, message: int, position: int) -> MessageUpserted:
    return MessageUpserted(Message(room, message, 1, f"m{message}", 10, 0), position, 0)


def test_a_rooms_later_position_is_not_merged_into_an_earlier_batch() -> None:
    """The bench's case: one poll of two partitions. Partition 10's batch at position 2149
    comes first; partition 0 then has positions 2138 and 2149. Merging equal positions put
    room 1's 2149 messages before its 2138 ones."""
    events = [upsert(2, 8558, 2149), upsert(1, 8481, 2138), upsert(1, 8557, 2149)]
    sent = batches(events)
    order = [(b.position, key) for b in sent for key in b.rows]
    room1 = [key for _, key in order if key[1:9] == schema.u64(1)]
    assert room1 == [schema.message_key(1, 8481), schema.message_key(1, 8557)]
    assert [b.position for b in sent] == [2149, 2138, 2149]


def test_equal_positions_of_one_partition_share_one_batch() -> None:
    events = [upsert(room, m, 7) for room in (1, 2, 3) for m in (10, 11)]
    assert len(batches(events)) == 1


events = st.lists(
    st.one_of(
        st.builds(upsert, st.integers(1, 3), st.integers(1, 6), st.integers(0, 4)),
        st.builds(MessageDeleted, st.integers(1, 3), st.integers(1, 6), st.integers(0, 4),
                  st.just(0)),
        st.builds(CursorMoved, st.builds(ReadCursor, st.integers(1, 3), st.integers(1, 2),
                                         st.integers(0, 6), st.integers(0, 6)),
                  st.integers(0, 4), st.just(0)),
    ),
    max_size=30,
)  # fmt: skip


Put = tuple[str, bytes, int, dict[bytes, bytes]]  # table, row key, timestamp, cells


def visible(puts: list[Put], room: int) -> dict[tuple[str, bytes], object]:
    """What reads of `room` return after `puts`, by HBase's rule with one version (per cell,
    the highest timestamp wins, on equal ones the later put) and the store's (a message row is
    its packed cell, decoded; a tombstone reads as None)."""
    cells: dict[tuple[str, bytes], dict[bytes, tuple[int, bytes]]] = {}
    for table, key, position, row in puts:
        if key[1:9] != schema.u64(room):
            continue
        held = cells.setdefault((table, key), {})
        for column, value in row.items():
            if column not in held or position >= held[column][0]:
                held[column] = (position, value)
    shown: dict[tuple[str, bytes], object] = {}
    for (table, key), held in cells.items():
        values = {column: value for column, (_, value) in held.items()}
        shown[(table, key)] = values if table == schema.CURSORS else _message(key, values)
    return shown


@given(events)
def test_while_batches_are_sent_each_room_shows_a_prefix_of_its_events(
    sequence: list[Event],
) -> None:
    """After any number of the batches, each room reads as after some prefix of its events
    applied one by one; after all of them, as after all its events."""
    one_by_one = [(*_row(e)[:2], e.position, _row(e)[2]) for e in sequence]
    sent = batches(sequence)
    assert all(batch.rows for batch in sent)
    puts: list[Put] = [(b.table, key, b.position, row) for b in sent for key, row in b.rows.items()]
    ends = [sum(len(b.rows) for b in sent[: k + 1]) for k in range(len(sent))]
    for room in {event.room_id for event in sequence}:
        mine = [put for put in one_by_one if put[1][1:9] == schema.u64(room)]
        prefixes = [visible(mine[:n], room) for n in range(len(mine) + 1)]
        last = 0
        for end in ends:
            state = visible(puts[:end], room)
            assert state in prefixes[last:], "a room showed its events out of order"
            last = prefixes.index(state, last)
        assert visible(puts, room) == prefixes[-1]
