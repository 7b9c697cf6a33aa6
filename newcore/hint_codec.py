"""The wire form of hints: compact JSON, versioned, decoded strictly (like codec.py for events).

Hints come from several producers (the gateway, the binlog reader, jobs), so the capturer
treats them as external input: anything but an exact hint of a known version is refused with a
reason, for the dead-letter topic.
"""

from __future__ import annotations

import json
from typing import Any

from newcore.codec import InvalidEvent, id_field
from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint

HINT_SCHEMA_VERSION = 1
MAX_HINT_BYTES = 4096
_FIELDS = {
    "message": {"room_id", "message_id"},
    "range": {"room_id", "first_message_id", "last_message_id"},
    "cursor": {"room_id", "account_id"},
}


class InvalidHint(InvalidEvent):
    """A record that is not a hint of a known version; `reason` says why."""


def encode_hint(hint: Hint) -> bytes:
    data: dict[str, Any] = {"v": HINT_SCHEMA_VERSION, "room_id": str(hint.room_id)}
    if isinstance(hint, MessageHint):
        data |= {"type": "message", "message_id": str(hint.message_id)}
    elif isinstance(hint, RangeHint):
        data |= {
            "type": "range",
            "first_message_id": str(hint.first_message_id),
            "last_message_id": str(hint.last_message_id),
        }
    else:
        data |= {"type": "cursor", "account_id": str(hint.account_id)}
    return json.dumps(data, separators=(",", ":")).encode("ascii")


def decode_hint(record: bytes) -> Hint:
    if len(record) > MAX_HINT_BYTES:
        raise InvalidHint(f"hint of {len(record)} bytes exceeds {MAX_HINT_BYTES}")
    try:
        data = json.loads(record)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidHint(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidHint("not a JSON object")
    version = data.get("v")
    if version != HINT_SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidHint(
            f"unknown hint version {version!r} (this reader knows {HINT_SCHEMA_VERSION})"
        )
    kind = data.get("type")
    if kind not in _FIELDS:
        raise InvalidHint(f"unknown hint type {kind!r}")
    expected = {"v", "type"} | _FIELDS[kind]
    if set(data) != expected:
        missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
        raise InvalidHint(f"{kind} hint: missing fields {missing}, unexpected fields {extra}")
    try:
        room = id_field(data, "room_id")
        if kind == "message":
            return MessageHint(room, id_field(data, "message_id"))
        if kind == "cursor":
            return CursorHint(room, id_field(data, "account_id"))
        return RangeHint(
            room, id_field(data, "first_message_id"), id_field(data, "last_message_id")
        )
    except InvalidEvent as exc:
        raise InvalidHint(exc.reason) from None
    except ValueError as exc:
        raise InvalidHint(str(exc)) from None
