"""The wire form of events: compact JSON, versioned, decoded strictly.

Ids travel as digit strings (as in the public contract: 18-digit ids do not survive a double
in other languages' JSON parsers). Decoding accepts exactly one schema version and rejects any
record that is not exactly what `encode` writes, with a reason that a dead-letter record can
carry: an event log is an external input like any other.

Every event passes through here twice (the capturer encodes, the updater decodes), so the
wire structs below are encoded and validated by msgspec in C: the stdlib's json plus checks in
Python cost 9 µs to encode and 15 µs to decode an event, msgspec 2 and 7.5 µs, the domain
objects included (a backfill of a billion messages spends hours on this). A record msgspec
refuses is parsed again the slow way (`parse_envelope`) only to word the reason; the fast path
decides, and it is the stricter of the two (tests/unit/newcore/test_codec.py holds them to
that): it also refuses lone UTF-16 surrogates, which the stdlib lets through and which no store
can write as UTF-8.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec

from newcore.domain.events import (
    SCHEMA_VERSION,
    CursorMoved,
    Event,
    MessageDeleted,
    MessageUpserted,
)
from newcore.domain.model import MAX_ID, Message, ReadCursor
from newcore.errors import InvalidEvent, InvalidRecord

MAX_RECORD_BYTES = 16 * 1024 * 1024


_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _Wire(msgspec.Struct, forbid_unknown_fields=True, tag_field="type"):
    """Fields every event has. Ids are `str` here and checked by `id_value` (msgspec cannot
    say "digits, no leading zero, at most 2^64-1")."""

    v: int
    position: _Count
    captured_at_ms: _Count


class _Upserted(_Wire, tag="message_upserted"):
    room_id: str
    message_id: str
    account_id: str
    body: str
    send_time: _Count
    update_time: _Count


class _Deleted(_Wire, tag="message_deleted"):
    room_id: str
    message_id: str


class _Moved(_Wire, tag="cursor_moved"):
    room_id: str
    account_id: str
    last_read_message_id: str
    last_fetched_message_id: str


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_Upserted | _Deleted | _Moved)


def encode(event: Event) -> bytes:
    wire: _Wire
    if isinstance(event, MessageUpserted):
        m = event.message
        wire = _Upserted(
            SCHEMA_VERSION, event.position, event.captured_at_ms, str(m.room_id),
            str(m.message_id), str(m.account_id), m.body, m.send_time, m.update_time,
        )  # fmt: skip
    elif isinstance(event, MessageDeleted):
        wire = _Deleted(
            SCHEMA_VERSION, event.position, event.captured_at_ms, str(event.room_id),
            str(event.message_id),
        )  # fmt: skip
    else:
        c = event.cursor
        wire = _Moved(
            SCHEMA_VERSION, event.position, event.captured_at_ms, str(c.room_id),
            str(c.account_id), str(c.last_read_message_id), str(c.last_fetched_message_id),
        )  # fmt: skip
    return _ENCODER.encode(wire)


_COMMON = {"position", "captured_at_ms"}
_FIELDS = {
    "message_upserted": _COMMON
    | {"room_id", "message_id", "account_id", "body", "send_time", "update_time"},
    "message_deleted": _COMMON | {"room_id", "message_id"},
    "cursor_moved": _COMMON
    | {"room_id", "account_id", "last_read_message_id", "last_fetched_message_id"},
}


def parse_envelope(
    record: bytes, *, max_bytes: int, version: int, fields: dict[str, set[str]], what: str
) -> tuple[str, dict[str, Any]]:
    """The (type, fields) of a versioned JSON record holding exactly the fields of its type,
    or InvalidRecord with the reason it is not one. Shared by every record kind we decode."""
    if len(record) > max_bytes:
        raise InvalidRecord(f"{what} of {len(record)} bytes exceeds {max_bytes}")
    try:
        data = json.loads(record)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRecord(f"not UTF-8 JSON: {exc}") from None
    except RecursionError:  # a deeply nested array or object: still a record, not a crash
        raise InvalidRecord("not UTF-8 JSON we read: nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRecord("not a JSON object")
    found = data.get("v")
    if found != version or isinstance(found, bool):
        raise InvalidRecord(f"unknown {what} version {found!r} (this reader knows {version})")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in fields:
        raise InvalidRecord(f"unknown {what} type {kind!r}")
    expected = {"v", "type"} | fields[kind]
    if set(data) != expected:
        missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
        raise InvalidRecord(f"{kind}: missing fields {missing}, unexpected fields {extra}")
    return kind, data


def decode(record: bytes) -> Event:
    """The event in `record`, or InvalidEvent with the reason it is not one."""
    try:
        return _decode(record)
    except InvalidEvent:
        raise
    except InvalidRecord as exc:
        raise InvalidEvent(exc.reason) from None


def _decode(record: bytes) -> Event:
    if len(record) > MAX_RECORD_BYTES:
        raise InvalidEvent(f"event of {len(record)} bytes exceeds {MAX_RECORD_BYTES}")
    try:
        wire = _DECODER.decode(record)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        raise InvalidEvent(_why_not(record, exc)) from None
    if wire.v != SCHEMA_VERSION:
        raise InvalidEvent(f"unknown event version {wire.v!r} (this reader knows {SCHEMA_VERSION})")
    if isinstance(wire, _Upserted):
        message = Message(
            id_value(wire.room_id, "room_id"), id_value(wire.message_id, "message_id"),
            id_value(wire.account_id, "account_id"), wire.body, wire.send_time, wire.update_time,
        )  # fmt: skip
        return MessageUpserted(message, wire.position, wire.captured_at_ms)
    if isinstance(wire, _Deleted):
        return MessageDeleted(
            id_value(wire.room_id, "room_id"), id_value(wire.message_id, "message_id"),
            wire.position, wire.captured_at_ms,
        )  # fmt: skip
    cursor = ReadCursor(
        id_value(wire.room_id, "room_id"), id_value(wire.account_id, "account_id"),
        id_value(wire.last_read_message_id, "last_read_message_id", zero_ok=True),
        id_value(wire.last_fetched_message_id, "last_fetched_message_id", zero_ok=True),
    )  # fmt: skip
    return CursorMoved(cursor, wire.position, wire.captured_at_ms)


def _why_not(record: bytes, refusal: Exception) -> str:
    """Why the fast decoder refused `record`, in the words of the slow one when it has them."""
    try:
        _decode_slowly(record)
    except InvalidRecord as exc:
        return exc.reason
    return f"refused: {refusal}"


def _decode_slowly(record: bytes) -> Event:
    """The stdlib's reading of `record`: only for wording reasons (and for the tests that
    hold the fast path to being at least as strict)."""
    kind, data = parse_envelope(
        record, max_bytes=MAX_RECORD_BYTES, version=SCHEMA_VERSION, fields=_FIELDS, what="event"
    )
    position = _count(data, "position")
    captured = _count(data, "captured_at_ms")
    if kind == "message_upserted":
        body = data["body"]
        if not isinstance(body, str):
            raise InvalidEvent("body: not a string")
        message = Message(
            room_id=id_field(data, "room_id"),
            message_id=id_field(data, "message_id"),
            account_id=id_field(data, "account_id"),
            body=body,
            send_time=_count(data, "send_time"),
            update_time=_count(data, "update_time"),
        )
        return MessageUpserted(message, position, captured)
    if kind == "message_deleted":
        return MessageDeleted(
            id_field(data, "room_id"), id_field(data, "message_id"), position, captured
        )
    cursor = ReadCursor(
        room_id=id_field(data, "room_id"),
        account_id=id_field(data, "account_id"),
        last_read_message_id=id_field(data, "last_read_message_id", zero_ok=True),
        last_fetched_message_id=id_field(data, "last_fetched_message_id", zero_ok=True),
    )
    return CursorMoved(cursor, position, captured)


def id_field(data: dict[str, Any], name: str, *, zero_ok: bool = False) -> int:
    """The id in data[name]: a digit string of 1..2^64-1 (0 only with zero_ok), no leading zeros."""
    return id_value(data[name], name, zero_ok=zero_ok)


def id_value(value: object, name: str, *, zero_ok: bool = False) -> int:
    """`value` as an id (see id_field); `name` words the reason."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 20:
        raise InvalidRecord(f"{name}: {value!r} is not an id (a string of digits)")
    number = int(value)
    if (number == 0 and not zero_ok) or number > MAX_ID or (len(value) > 1 and value[0] == "0"):
        raise InvalidRecord(f"{name}: {value!r} is not an id in 1..2^64-1")
    return number


def _count(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise InvalidRecord(f"{name}: {value!r} is not a whole number in 0..2^63-1")
    return value
