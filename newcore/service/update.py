"""Update: event records in, the read model brought up to them.

Records that are not events of a known version become dead letters with the reason; the rest
are applied in log order (the read store's rule makes that idempotent and order-proof).
"""

from __future__ import annotations

from collections.abc import Sequence

from newcore.domain.dead_letters import DeadLetter
from newcore.domain.events import Event
from newcore.errors import InvalidEvent
from newcore.ports import LogRecord, ReadStore
from newcore.wire.events import decode


def apply_records(records: Sequence[LogRecord], store: ReadStore) -> list[DeadLetter]:
    """Applies the events among `records` to the store; returns the records it could not use."""
    events: list[Event] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            events.append(decode(record.value))
        except InvalidEvent as exc:
            dead.append(
                DeadLetter(
                    "events",
                    record.room_id,
                    exc.reason,
                    record.partition,
                    record.position,
                    record=record.value,
                )
            )
    store.apply(events)
    return dead
