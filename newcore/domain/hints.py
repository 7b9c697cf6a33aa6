"""Hints: what might have changed in the monolith, never the change itself.

The gateway, the backfill, the binlog reader and the repair loop all say only "look here";
the capturer then reads the monolith's current rows and emits full-state events (DESIGN.md, "A
design that keeps the promises"). Because a hint carries no data, a late, duplicated or
reordered hint is harmless: it only causes one more read of the latest state.
"""

from __future__ import annotations

from dataclasses import dataclass

from newcore.domain.model import MAX_ID


@dataclass(frozen=True, slots=True)
class MessageHint:
    """Room R: message M may have changed (posted, edited, deleted or purged)."""

    room_id: int
    message_id: int


@dataclass(frozen=True, slots=True)
class RangeHint:
    """Room R: messages with ids in [first, last] may have changed (backfill, repair)."""

    room_id: int
    first_message_id: int
    last_message_id: int

    def __post_init__(self) -> None:
        if not 0 < self.first_message_id <= self.last_message_id <= MAX_ID:
            raise ValueError(
                f"a range needs 0 < first <= last <= 2^64-1, got [{self.first_message_id}, {self.last_message_id}]"
            )


@dataclass(frozen=True, slots=True)
class CursorHint:
    """Room R, account A: the read or fetch cursor may have moved."""

    room_id: int
    account_id: int


Hint = MessageHint | RangeHint | CursorHint
