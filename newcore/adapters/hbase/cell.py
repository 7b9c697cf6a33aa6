"""The packed cell: a message's whole state in one HBase cell (newcore/README.md, "HBase layout").

    byte 0       version, 1
    byte 1       state: 0 live, 1 deleted (a tombstone: the cell ends here, 2 bytes)
    bytes 2-9    account id      u64, big-endian   } live only
    bytes 10-17  send time       u64, big-endian   }
    bytes 18-25  update time     u64, big-endian   }
    bytes 26-    body, UTF-8, to the end of the cell (its length is the cell's)

Room and message ids are in the row key, the capture position is the cell's timestamp.

Fixed-width fields behind a version byte rather than msgpack: every byte has one meaning, so a
decoder in any language (a JVM job reading the table or its snapshots, a debugging session in
the HBase shell) is a few lines with no library, and strictness costs nothing: a cell is
either exactly a known version's layout or refused with the reason. It costs 5 to 14 bytes per
live message more than msgpack's variable-width integers would (its overhead is 12 to 21 bytes
for our messages, against 26 here), against the four KeyValues (about 40 bytes of key, family,
qualifier and timestamp each) that packing removes.

`decode` refuses anything that is not exactly version 1 (`CellRefused`, with the reason); the
read store turns a refusal into `UnreadableCell`, a ReadStoreUnavailable: a read never answers
without a message it could not read (a `force=0` read would move the cursor past it for good).
A new version is read by every reader before any writer writes it.
"""

from __future__ import annotations

import struct

from newcore.domain.model import Message

VERSION = 1
LIVE, DELETED = 0, 1
_HEAD = struct.Struct(">BBQQQ")  # version, state, account id, send time, update time
HEAD_BYTES = _HEAD.size  # 26
TOMBSTONE = bytes((VERSION, DELETED))


class CellRefused(ValueError):
    """A cell that is not exactly a known version's layout; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(message: Message) -> bytes:
    """The cell of a live message. Raises ValueError for a number outside u64 or a body that
    UTF-8 cannot hold (a lone surrogate); the event codec lets neither through."""
    m = message
    try:
        head = _HEAD.pack(VERSION, LIVE, m.account_id, m.send_time, m.update_time)
    except struct.error as exc:
        raise ValueError(f"message {m.message_id}: a number outside u64 ({exc})") from exc
    return head + m.body.encode("utf-8")


def decode(room_id: int, message_id: int, cell: bytes) -> Message | None:
    """The message a cell holds, None for a tombstone; raises CellRefused."""
    if not cell:
        raise CellRefused("empty cell")
    if cell[0] != VERSION:
        raise CellRefused(f"unknown version {cell[0]} (this reader knows {VERSION})")
    if len(cell) < 2:
        raise CellRefused("1 byte: no state")
    state = cell[1]
    if state == DELETED:
        if len(cell) != len(TOMBSTONE):
            raise CellRefused(f"a tombstone of {len(cell)} bytes (it has {len(TOMBSTONE)})")
        return None
    if state != LIVE:
        raise CellRefused(f"unknown state {state}")
    if len(cell) < HEAD_BYTES:
        raise CellRefused(f"a live cell of {len(cell)} bytes (at least {HEAD_BYTES})")
    _, _, account_id, send_time, update_time = _HEAD.unpack_from(cell)
    try:
        body = cell[HEAD_BYTES:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CellRefused(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    return Message(room_id, message_id, account_id, body, send_time, update_time)
