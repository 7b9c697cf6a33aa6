"""Events survive the wire exactly, and anything else is rejected with a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newcore.domain.events import CursorMoved, Event, MessageDeleted, MessageUpserted
from newcore.domain.model import MAX_ID, Message, ReadCursor
from newcore.errors import InvalidEvent
from newcore.wire.events import _decode_slowly, decode, encode

ids = st.integers(min_value=1, max_value=MAX_ID)
counts = st.integers(min_value=0, max_value=2**63 - 1)
messages = st.builds(Message, ids, ids, ids, st.text(), counts, counts)
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(MessageUpserted, messages, counts, counts),
    st.builds(MessageDeleted, ids, ids, counts, counts),
    st.builds(
        CursorMoved,
        st.builds(ReadCursor, ids, ids, st.integers(0, MAX_ID), st.integers(0, MAX_ID)),
        counts,
        counts,
    ),
)


@given(events)
def test_every_event_round_trips(event: Event) -> None:
    assert decode(encode(event)) == event


def test_ids_travel_as_strings_and_text_as_utf8() -> None:
    event = MessageUpserted(Message(5, 123456789012345678, 9, "こんにちは😀", 10, 0), 3, 4)
    wire = encode(event)
    assert b'"message_id":"123456789012345678"' in wire
    assert "こんにちは😀".encode() in wire


GOOD = json.loads(encode(MessageUpserted(Message(5, 6, 7, "b", 10, 0), 3, 4)))


def mutated(**changes: object) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"[" * 5000, "nested too deeply"),  # msgspec and the stdlib both give up on depth
        (
            mutated(colour=0).replace(b'"colour": 0', b'"colour": ' + b"[" * 3000 + b"]" * 3000),
            "nested too deeply",
        ),  # hidden in a field the reader does not know
        (mutated(v=2), "unknown event version 2 (this reader knows 1)"),
        (mutated(v=...), "unknown event version None"),
        (mutated(v=True), "unknown event version True"),
        (mutated(type="message_exploded"), "unknown event type 'message_exploded'"),
        (mutated(type=["message_upserted"]), "unknown event type ['message_upserted']"),
        (mutated(body=...), "message_upserted: missing fields ['body']"),
        (mutated(colour="blue"), "unexpected fields ['colour']"),
        (mutated(message_id=6), "message_id: 6 is not an id"),
        (mutated(message_id="0"), "message_id: '0' is not an id in 1..2^64-1"),
        (mutated(message_id="007"), "message_id: '007' is not an id in 1..2^64-1"),
        (mutated(message_id=str(2**64)), "is not an id in 1..2^64-1"),
        (mutated(message_id="１２"), "message_id: '１２' is not an id"),
        (mutated(room_id="-5"), "room_id: '-5' is not an id"),
        (mutated(body=5), "body: not a string"),
        (mutated(send_time=-1), "send_time: -1 is not a whole number"),
        (mutated(send_time=1.5), "send_time: 1.5 is not a whole number"),
        (mutated(position="3"), "position: '3' is not a whole number"),
        (mutated(position=False), "position: False is not a whole number"),
    ],
)
def test_malformed_records_are_rejected_with_a_reason(record: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode(record)
    assert reason in raised.value.reason


def test_an_oversized_record_is_rejected_before_parsing() -> None:
    with pytest.raises(InvalidEvent, match="exceeds"):
        decode(b" " * (16 * 1024 * 1024 + 1))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats(allow_nan=False)
    | st.text() | st.from_regex(r"\A0?[0-9]{1,21}\Z") | st.sampled_from(["1", "\ud800", "1.0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=5,
)  # fmt: skip


@st.composite
def near_events(draw: st.DrawFn) -> bytes:
    """Records that are events, or almost: a field dropped, added, or given another value."""
    record = json.loads(encode(draw(events)))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*record, "v", "type", "extra"]))
        if draw(st.booleans()) and key in record:
            del record[key]
        else:
            record[key] = draw(json_values)
    return json.dumps(record).encode()


@given(near_events())
def test_the_fast_decoder_is_at_least_as_strict_as_the_slow_one(record: bytes) -> None:
    """`decode` (msgspec) decides; `_decode_slowly` (stdlib) only words reasons. Whatever the
    fast one accepts, the slow one accepts as the same event, and every refusal is an
    InvalidEvent with a reason."""
    try:
        event = decode(record)
    except InvalidEvent as refusal:
        assert refusal.reason
        return
    assert _decode_slowly(record) == event


def test_a_lone_surrogate_is_refused_although_the_stdlib_reads_it() -> None:
    record = mutated(body="\ud800")
    assert _decode_slowly(record).message.body == "\ud800"  # type: ignore[union-attr]
    with pytest.raises(InvalidEvent, match="refused"):
        decode(record)
