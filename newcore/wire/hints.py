"""The wire form of hints: compact JSON, versioned, decoded strictly (like `events.py`).

Hints come from several producers (the gateway, the binlog reader, jobs), so the capturer
treats them as external input: anything but an exact hint of a known version is refused with a
reason, for the dead-letter topic.
"""

from __future__ import annotations

import json
from typing import Any

from newcore.domain.hints import CursorHint, Hint, MessageHint, RangeHint
from newcore.errors import InvalidHint, InvalidRecord
from newcore.wire.events import id_field, parse_envelope

HINT_SCHEMA_VERSION = 1
# One encoder for every hint: `json.dumps` with `separators` builds a new one per call, which
# was half of a hint's encoding time (the gateway encodes one per captured write).
_COMPACT = json.JSONEncoder(separators=(",", ":"))
MAX_HINT_BYTES = 4096
_FIELDS = {
    "message": {"room_id", "message_id"},
    "range": {"room_id", "first_message_id", "last_message_id"},
    "cursor": {"room_id", "account_id"},
}


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
    return _COMPACT.encode(data).encode("ascii")


def decode_hint(record: bytes) -> Hint:
    """The hint in `record`, or InvalidHint with the reason it is not one."""
    try:
        kind, data = parse_envelope(
            record,
            max_bytes=MAX_HINT_BYTES,
            version=HINT_SCHEMA_VERSION,
            fields=_FIELDS,
            what="hint",
        )
    except InvalidRecord as exc:
        raise InvalidHint(exc.reason) from None
    try:
        room = id_field(data, "room_id")
        if kind == "message":
            return MessageHint(room, id_field(data, "message_id"))
        if kind == "cursor":
            return CursorHint(room, id_field(data, "account_id"))
        return RangeHint(
            room, id_field(data, "first_message_id"), id_field(data, "last_message_id")
        )
    except InvalidRecord as exc:
        raise InvalidHint(exc.reason) from None
    except ValueError as exc:
        raise InvalidHint(str(exc)) from None
