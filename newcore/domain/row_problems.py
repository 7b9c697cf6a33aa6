"""What capturing from the monolith can report besides state."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A monolith row that could not be read faithfully, and why (for the dead-letter place).
    The row still migrates as the monolith shows it: parity holds and nothing is fixed silently."""

    table: str
    room_id: int
    key: int  # the message id (the account id for cursors)
    reason: str
