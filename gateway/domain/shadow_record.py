"""A room's shadow record: how its shadow comparisons came out, kept in the control store.

The gateway judges every shadow read same, different or late (`gateway/domain/shadow.py`) and
keeps the verdicts in its own memory (`gateway/service/shadow.py`, `ShadowLedger`); memory dies
with the process and is one gateway's view only. The guard of the phases after shadow_read
needs the record of every gateway and of every restart (issue 13: "the later phases only on a
clean, recent parity and a clean shadow record"), so each gateway adds its counts to the room's
row in the control store, in batches (`gateway/service/shadow_record.py`), and the store stamps
the times.

What "clean" means (`why_not_clean`): since the room last entered shadow_read, at least one
comparison came out same, and none came out different. Late comparisons neither help nor hurt:
lag is not a difference (DESIGN.md), and not evidence of sameness either.

Times are the control store's clock when a batch was recorded (a verdict is in it at most the
gateway's recording interval after it was judged), so a difference is never recorded earlier
than it happened: a room judged clean had no difference before the time it entered
shadow_read as that same clock says.

Pure (standard library only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

OUTCOMES = ("same", "different", "late")
MAX_COUNT = 2**63 - 1  # the store's columns are BIGINT UNSIGNED; a batch never comes near


@dataclass(frozen=True, slots=True)
class ShadowCounts:
    """Comparisons of one room judged since a gateway's last recording, by outcome."""

    same: int = 0
    different: int = 0
    late: int = 0

    def __post_init__(self) -> None:
        for name in OUTCOMES:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"a shadow count ({name}) is an integer, got {value!r}")
            if not 0 <= value <= MAX_COUNT:
                raise ValueError(f"a shadow count ({name}) is in 0..{MAX_COUNT}, got {value}")

    def __add__(self, other: ShadowCounts) -> ShadowCounts:
        return ShadowCounts(
            self.same + other.same, self.different + other.different, self.late + other.late
        )

    @property
    def total(self) -> int:
        return self.same + self.different + self.late

    @classmethod
    def of(cls, outcome: str) -> ShadowCounts:
        """One comparison with `outcome` (same, different or late); ValueError otherwise."""
        if outcome not in OUTCOMES:
            raise ValueError(f"a shadow outcome is one of {', '.join(OUTCOMES)}, got {outcome!r}")
        return cls(**{outcome: 1})


@dataclass(frozen=True, slots=True)
class ShadowTally:
    """A room's shadow record in the control store: comparisons by outcome since the record
    began (every gateway, every restart), and when each outcome was last recorded (None:
    never). `updated_at`: the last recording of any outcome."""

    room_id: int
    same: int = 0
    different: int = 0
    late: int = 0
    last_same_at: datetime | None = None
    last_different_at: datetime | None = None
    last_late_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def absent(cls, room_id: int) -> ShadowTally:
        """The record of a room no comparison was ever recorded for."""
        return cls(room_id)

    def added(self, counts: ShadowCounts, at: datetime) -> ShadowTally:
        """The record after one recording of `counts` at `at` (what both adapters do)."""
        return ShadowTally(
            self.room_id,
            self.same + counts.same,
            self.different + counts.different,
            self.late + counts.late,
            at if counts.same else self.last_same_at,
            at if counts.different else self.last_different_at,
            at if counts.late else self.last_late_at,
            at if counts.total else self.updated_at,
        )


def why_not_clean(tally: ShadowTally | None, entered_shadow_read_at: datetime | None) -> str | None:
    """Why the room's shadow record is not clean, or None when it is: a comparison came out
    same since the room entered shadow_read, and none came out different since. An unknown
    entry time (None) counts every comparison ever recorded."""
    since = (
        "since the room entered shadow_read"
        if entered_shadow_read_at is None
        else f"since the room entered shadow_read at {entered_shadow_read_at.isoformat()}"
    )

    def after(at: datetime | None) -> bool:
        return at is not None and (entered_shadow_read_at is None or at >= entered_shadow_read_at)

    if tally is not None and after(tally.last_different_at):
        assert tally.last_different_at is not None
        return (
            f"a clean shadow record: a shadow read came out different at "
            f"{tally.last_different_at.isoformat()}, {since}"
        )
    if tally is None or not after(tally.last_same_at):
        return f"a clean shadow record: no shadow read came out same {since}"
    return None
