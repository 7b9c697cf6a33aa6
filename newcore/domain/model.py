"""What the read model holds: messages and read cursors, in the migration's own words.

Ids are integers here and digit strings at every boundary (JSON, HTTP): a message id is a
64-bit number that only increases within a room, never a dense counter.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ID = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Message:
    """One message at one state, as the monolith had it when it was captured.

    Account names and avatars are not here on purpose: they live in the monolith's account
    table, which does not migrate, and a copy would go stale on a rename (DESIGN.md, "Parity
    noise"). The read side asks the account directory for them.
    """

    room_id: int
    message_id: int
    account_id: int
    body: str
    send_time: int  # unix seconds
    update_time: int  # unix seconds, 0 if never edited


@dataclass(frozen=True, slots=True)
class ReadCursor:
    """How far one account has read and fetched (force=0) in one room."""

    room_id: int
    account_id: int
    last_read_message_id: int
    last_fetched_message_id: int
