"""When a room that lost hints may leave a spool's lost-rooms list (gateway/adapters/spool.py).

A repair reads the list, sends range hints over each room, then asks for the rooms to be
forgotten. A hint lost *after* the list was read may be for a write committed after the
repair's hints were appended: that room must stay listed (the next repair mends it). The list
says, per room, how many hints it lost and when the last was lost; the spool's file writes the
times to the millisecond. So a room may be forgotten when, compared with what the repair read,
its count has not grown and its last loss is not later (beyond the file's rounding).

Pure (standard library only).
"""

from __future__ import annotations

ROUNDING_S = 0.001  # the lost-rooms file writes unix seconds with three decimals


def may_forget(seen_count: int, seen_last_at: float, now_count: int, now_last_at: float) -> bool:
    """Whether a room read as (seen_count, seen_last_at) and listed now as (now_count,
    now_last_at) lost no hint since it was read."""
    return now_count <= seen_count and now_last_at <= seen_last_at + ROUNDING_S
