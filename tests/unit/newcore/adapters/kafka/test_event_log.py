"""Record keys on the Kafka topics: what a key that no producer of ours wrote reads as."""

from __future__ import annotations

import pytest

from newcore.adapters.kafka.event_log import room_of_key
from newcore.domain.partitioning import partition_for


def test_an_8_byte_key_is_the_room() -> None:
    assert room_of_key((2**64 - 1).to_bytes(8, "big")) == 2**64 - 1
    assert room_of_key((77).to_bytes(8, "big")) == 77


@pytest.mark.parametrize("key", [None, b"", b"\x01", b"k" * 7, b"k" * 9, b"k" * 12])
def test_a_foreign_key_is_no_room_and_can_still_be_dead_lettered(key: bytes | None) -> None:
    room = room_of_key(key)
    assert room == 0
    # What a dead letter of the record needs of its room: a partition and an 8-byte key.
    assert 0 <= partition_for(room, 16) < 16
    assert room.to_bytes(8, "big") == bytes(8)
