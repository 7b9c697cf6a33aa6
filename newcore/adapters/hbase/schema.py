"""The read model's layout in HBase, written down once (see newcore/README.md).

Row keys are fixed width and big-endian, so that HBase's byte order is numeric order:

    messages:  salt (1 byte) | room_id (8 bytes) | message_id (8 bytes)     family m
    cursors:   salt (1 byte) | room_id (8 bytes) | account_id (8 bytes)     family c

The salt is derived from the room id alone (CRC-32 of its 8 bytes, modulo SALT_BUCKETS): rooms
spread over SALT_BUCKETS key ranges, hence over regions as the table splits, while all of one
room's messages stay contiguous and ordered by id, so "the latest 100" and "after id X" are
one short scan.

Each family keeps one version (VERSIONS => 1): the read model holds the latest state, and the
capture position is written as the cells' timestamp, so HBase itself keeps the state with the
highest position whatever order puts arrive in (an older put is stored behind and never seen).
All columns of a message live in one family because they are always read together.
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

# Columns. Numbers are 8-byte big-endian unsigned; the body is UTF-8.
ACCOUNT = b"m:a"
BODY = b"m:b"
SEND_TIME = b"m:s"
UPDATE_TIME = b"m:u"
DELETED = b"m:d"  # b"\x01" for a deletion (a tombstone), b"\x00" for a live message
LAST_READ = b"c:r"
LAST_FETCHED = b"c:f"

_U64 = struct.Struct(">Q")


def salt(room_id: int) -> int:
    return zlib.crc32(_U64.pack(room_id)) % SALT_BUCKETS


def room_prefix(room_id: int) -> bytes:
    return bytes((salt(room_id),)) + _U64.pack(room_id)


def message_key(room_id: int, message_id: int) -> bytes:
    return room_prefix(room_id) + _U64.pack(message_id)


def cursor_key(room_id: int, account_id: int) -> bytes:
    return room_prefix(room_id) + _U64.pack(account_id)


def u64(value: int) -> bytes:
    return _U64.pack(value)


def from_u64(data: bytes) -> int:
    value: int = _U64.unpack(data)[0]
    return value


def id_of_key(key: bytes) -> int:
    """The message or account id at the end of a row key."""
    return from_u64(key[9:17])
