"""Dead letters: input the pipeline could not use, kept with the reason, never dropped silently.

A dead letter names where the input came from (log, partition, position) or which monolith row
it is about, so an operator can find it, fix the cause and replay it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

# The most of a raw record a dead letter keeps: a dead letter must itself fit in Kafka (1 MB by
# default), and a poison record near that size, base64-encoded, would not; failing to send the
# dead letter would stall the partition it was meant to unblock.
KEPT_RECORD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: str  # "hints", "events", "capture" (too large to send) or "monolith:<table>"
    room_id: int  # 0 when the record was unreadable
    reason: str
    partition: int = -1
    position: int = -1
    key: int = 0  # the monolith row's key (message or account id), for row problems
    record: bytes = b""  # the raw input, when there was one

    def encode(self) -> bytes:
        return json.dumps(
            {
                "source": self.source,
                "room_id": str(self.room_id),
                "reason": self.reason,
                "partition": self.partition,
                "position": self.position,
                "key": str(self.key),
                "record_b64": base64.b64encode(self.record[:KEPT_RECORD_BYTES]).decode("ascii"),
                "record_bytes": len(self.record),  # more than kept: the record was cut
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
