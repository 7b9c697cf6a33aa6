"""Hints survive the wire exactly, and anything else is refused with a reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.domain.model import MAX_ID
from newcore.errors import InvalidHint
from newcore.wire.hints import decode_hint, encode_hint

ids = st.integers(min_value=1, max_value=MAX_ID)
ranges = st.tuples(ids, ids, ids).map(lambda t: RangeHint(t[0], min(t[1], t[2]), max(t[1], t[2])))
hints: st.SearchStrategy[Hint] = st.one_of(
    st.builds(MessageHint, ids, ids), ranges, st.builds(CursorHint, ids, ids)
)


@given(hints)
def test_every_hint_round_trips(hint: Hint) -> None:
    assert decode_hint(encode_hint(hint)) == hint


def test_a_range_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="0 < first <= last"):
        RangeHint(1, 10, 9)


GOOD = json.loads(encode_hint(RangeHint(3, 10, 20)))


def mutated(**changes: object) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"", "not UTF-8 JSON"),
        (b'"room 3"', "not a JSON object"),
        (mutated(v=0), "unknown hint version 0"),
        (mutated(type="rumour"), "unknown hint type 'rumour'"),
        (mutated(type={"a": 1}), "unknown hint type {'a': 1}"),
        (mutated(last_message_id=...), "range: missing fields ['last_message_id']"),
        (mutated(extra=1), "unexpected fields ['extra']"),
        (mutated(room_id=3), "room_id: 3 is not an id"),
        (mutated(first_message_id="0"), "first_message_id: '0' is not an id"),
        (mutated(first_message_id="30"), "0 < first <= last"),
        (b" " * 5000, "exceeds 4096"),
        (b"[" * 4000, "nested too deeply"),
    ],
)
def test_malformed_hints_are_refused_with_a_reason(record: bytes, reason: str) -> None:
    with pytest.raises(InvalidHint) as raised:
        decode_hint(record)
    assert reason in raised.value.reason
