"""The read model's layout in HBase, written down once (see newcore/README.md).

Row keys are fixed width and big-endian, so that HBase's byte order is numeric order:

    messages:  salt (1 byte) | room_id (8 bytes) | message_id (8 bytes)     family m, cell m:p
    cursors:   salt (1 byte) | room_id (8 bytes) | account_id (8 bytes)     family c, cells c:r c:f
               salt (1 byte) | room_id (8 bytes)                            family c, cell c:p

The salt is derived from the room id alone (CRC-32 of its 8 bytes, modulo SALT_BUCKETS): rooms
spread over SALT_BUCKETS key ranges, while all of one room's messages stay contiguous and
ordered by id, so "the latest 100" and "after id X" are one short scan. Both tables are created
pre-split at the salt boundaries (SPLIT_KEYS), one region per salt, so the load is spread from
the first put instead of after HBase has split a hot region.

A message is one packed cell (`cell.py`: account, body, send and update time, deleted), so a put
is one KeyValue instead of five. Each family keeps one version (VERSIONS => 1): the read model
holds the latest state, and the capture position is written as the cell's timestamp, so HBase
itself keeps the state with the highest position whatever order puts arrive in (an older put
is stored behind and never seen).

The room's applied position (`ReadStore.room_position`) is one more cell in the cursors table, on
a row of its own per room: the room's prefix alone, 9 bytes, which no cursor row (17 bytes) can
equal, under its own qualifier `c:p`. It is written with the position as its timestamp too, so
"the highest position wins" (it never goes down) needs no read before the write either.
"""

from __future__ import annotations

import struct
import zlib

SALT_BUCKETS = 16
MESSAGES = "messages"
CURSORS = "cursors"
FAMILIES: dict[str, dict[str, dict[str, int]]] = {
    MESSAGES: {"m": {"max_versions": 1}},
    CURSORS: {"c": {"max_versions": 1}},
}

# Where each table's regions start besides the first: one region per salt.
SPLIT_KEYS: tuple[bytes, ...] = tuple(bytes((s,)) for s in range(1, SALT_BUCKETS))

# Columns. A message's state is one packed cell (cell.py); a cursor's numbers are 8-byte
# big-endian unsigned.
PACKED = b"m:p"
LAST_READ = b"c:r"
LAST_FETCHED = b"c:f"
ROOM_POSITION = b"c:p"

_U64 = struct.Struct(">Q")


def salt(room_id: int) -> int:
    return zlib.crc32(_U64.pack(room_id)) % SALT_BUCKETS


def room_prefix(room_id: int) -> bytes:
    return bytes((salt(room_id),)) + _U64.pack(room_id)


def message_key(room_id: int, message_id: int) -> bytes:
    return room_prefix(room_id) + _U64.pack(message_id)


def cursor_key(room_id: int, account_id: int) -> bytes:
    return room_prefix(room_id) + _U64.pack(account_id)


def room_position_key(room_id: int) -> bytes:
    """The row of the room's applied position in the cursors table: the room's prefix alone,
    shorter than every cursor row, so it can never be an account's."""
    return room_prefix(room_id)


def u64(value: int) -> bytes:
    return _U64.pack(value)


def from_u64(data: bytes) -> int:
    value: int = _U64.unpack(data)[0]
    return value


def id_of_key(key: bytes) -> int:
    """The message or account id at the end of a row key."""
    return from_u64(key[9:17])
