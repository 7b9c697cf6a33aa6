"""Parity result documents for repair tests, written by the parity domain's own encoder."""

from __future__ import annotations

from collections.abc import Sequence

from migrator.domain.parity import (
    Difference,
    Header,
    Kind,
    ParityResult,
    RoomReport,
    RoomResult,
    Tally,
    Verdict,
    encode,
)
from migrator.ports import Frontier

FRONTIER = Frontier("binlog.000003:1200", 1_714_550_400.0)


def message(room: int, message_id: int, kind: Kind, field: str = "body") -> Difference:
    return Difference(room, kind, message_id, None, field, "monolith", "read model")


def cursor(room: int, account: int, kind: Kind = Kind.CURSOR_DIFFERS) -> Difference:
    return Difference(room, kind, None, account, "last_read_message_id", "12", "10")


def document(rooms: Sequence[tuple[int, Verdict, Sequence[Difference]]]) -> str:
    """A whole parity result of these rooms (verdict and differences each)."""
    tally = Tally()
    reports = []
    for room_id, verdict, differences in rooms:
        result = RoomResult(
            room_id, verdict, reason="frontier not reached" if verdict == Verdict.LATE else None,
            compared_at=FRONTIER, legacy_rows=10,
        )  # fmt: skip
        for d in differences:
            result.counts[d.kind] += 1
        tally.add(result)
        reports.append(RoomReport(result, list(differences)))
    header = Header("run-1", FRONTIER.at_unix, "12,34", "ops:test", FRONTIER)
    return encode(ParityResult(header, reports, tally.summary(FRONTIER.at_unix + 5, 5.0)))
