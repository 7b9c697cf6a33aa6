"""Full-state events: each says what a message or a cursor *is*, never what changed.

The capturer reads the monolith's current rows and emits these. Each carries the capture
position: for one room, a state captured at a higher position was read from the monolith later,
so it is at least as new. Applying "the highest position wins" therefore converges on the
monolith's latest state whatever the order of arrival, redelivery or replay (DESIGN.md,
promise 4). A deletion is a state too: a message that no longer exists, at a position, so that
an older upsert arriving late cannot bring it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from newcore.domain.model import Message, ReadCursor

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class MessageUpserted:
    message: Message
    position: int
    captured_at_ms: int

    @property
    def room_id(self) -> int:
        return self.message.room_id


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    """The message is gone from the monolith (soft-deleted or purged) as of `position`."""

    room_id: int
    message_id: int
    position: int
    captured_at_ms: int


@dataclass(frozen=True, slots=True)
class CursorMoved:
    cursor: ReadCursor
    position: int
    captured_at_ms: int

    @property
    def room_id(self) -> int:
        return self.cursor.room_id


Event = MessageUpserted | MessageDeleted | CursorMoved
