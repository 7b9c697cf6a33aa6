"""The wire form of events: compact JSON, versioned, decoded strictly.

Ids travel as digit strings (as in the public contract: 18-digit ids do not survive a double
in other languages' JSON parsers). Decoding accepts exactly one schema version and rejects any
record that is not exactly what `encode` writes, with a reason that a dead-letter record can
carry: an event log is an external input like any other.
"""

from __future__ import annotations

import json
from typing import Any

from newcore.domain.events import (
    SCHEMA_VERSION,
    CursorMoved,
    Event,
    MessageDeleted,
    MessageUpserted,
)
from newcore.domain.model import MAX_ID, Message, ReadCursor

MAX_RECORD_BYTES = 16 * 1024 * 1024


class InvalidEvent(ValueError):
    """A record that is not an event of a known version; `reason` says why, for the dead letter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(event: Event) -> bytes:
    base: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "position": event.position,
        "captured_at_ms": event.captured_at_ms,
    }
    if isinstance(event, MessageUpserted):
        m = event.message
        base |= {
            "type": "message_upserted",
            "room_id": str(m.room_id),
            "message_id": str(m.message_id),
            "account_id": str(m.account_id),
            "body": m.body,
            "send_time": m.send_time,
            "update_time": m.update_time,
        }
    elif isinstance(event, MessageDeleted):
        base |= {
            "type": "message_deleted",
            "room_id": str(event.room_id),
            "message_id": str(event.message_id),
        }
    else:
        c = event.cursor
        base |= {
            "type": "cursor_moved",
            "room_id": str(c.room_id),
            "account_id": str(c.account_id),
            "last_read_message_id": str(c.last_read_message_id),
            "last_fetched_message_id": str(c.last_fetched_message_id),
        }
    return json.dumps(base, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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
    or InvalidEvent with the reason it is not one. Shared by every record kind we decode."""
    if len(record) > max_bytes:
        raise InvalidEvent(f"{what} of {len(record)} bytes exceeds {max_bytes}")
    try:
        data = json.loads(record)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent("not a JSON object")
    found = data.get("v")
    if found != version or isinstance(found, bool):
        raise InvalidEvent(f"unknown {what} version {found!r} (this reader knows {version})")
    kind = data.get("type")
    if kind not in fields:
        raise InvalidEvent(f"unknown {what} type {kind!r}")
    expected = {"v", "type"} | fields[kind]
    if set(data) != expected:
        missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
        raise InvalidEvent(f"{kind}: missing fields {missing}, unexpected fields {extra}")
    return kind, data


def decode(record: bytes) -> Event:
    """The event in `record`, or InvalidEvent with the reason it is not one."""
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
    value = data[name]
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 20:
        raise InvalidEvent(f"{name}: {value!r} is not an id (a string of digits)")
    number = int(value)
    if (number == 0 and not zero_ok) or number > MAX_ID or (len(value) > 1 and value[0] == "0"):
        raise InvalidEvent(f"{name}: {value!r} is not an id in 1..2^64-1")
    return number


def _count(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise InvalidEvent(f"{name}: {value!r} is not a whole number in 0..2^63-1")
    return value
