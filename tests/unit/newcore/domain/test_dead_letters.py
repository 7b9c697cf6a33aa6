"""A dead letter keeps what an operator needs, and always fits where it is sent."""

from __future__ import annotations

import base64
import json

from newcore.domain.dead_letters import KEPT_RECORD_BYTES, DeadLetter


def test_a_dead_letter_names_its_source_and_keeps_a_small_record_whole() -> None:
    letter = json.loads(DeadLetter("events", 7, "why", 3, 42, key=9, record=b"\xffraw").encode())
    assert letter == {
        "source": "events", "room_id": "7", "reason": "why", "partition": 3, "position": 42,
        "key": "9", "record_b64": base64.b64encode(b"\xffraw").decode(), "record_bytes": 4,
    }  # fmt: skip


def test_a_huge_record_is_cut_so_the_dead_letter_fits_in_kafka() -> None:
    record = b"x" * 2_000_000  # a poison record from a producer with larger limits
    encoded = DeadLetter("events", 7, "not an event", record=record).encode()
    assert len(encoded) < 1_000_000
    letter = json.loads(encoded)
    assert base64.b64decode(letter["record_b64"]) == record[:KEPT_RECORD_BYTES]
    assert letter["record_bytes"] == 2_000_000
