"""The migrator's error taxonomy (after newcore/errors.py and gateway/errors.py). The CLI turns
each into a message that says what is wrong and what to do, and an exit code:

- `OperatorError` (exit 2): the command asked for something that cannot be done as asked
  (unknown rooms, an impossible transition, a parity result of another schema version, a
  checkpoint made against another data set, a nonsense argument). Nothing was changed.
- `Unavailable` (exit 4, from newcore): a service is down; run the command again later (a job
  resumes from its checkpoint).
- `Misconfigured` (exit 3, from newcore): a store holds what this version cannot read.
- `PanicStop` (exit 5): an operator pressed panic; the job stopped with its checkpoint kept.
"""

from __future__ import annotations

from newcore.errors import Misconfigured, Unavailable

__all__ = [
    "CheckpointMismatch",
    "JobRunning",
    "Misconfigured",
    "NotVisible",
    "OperatorError",
    "PanicStop",
    "SourceNeverRan",
    "Unavailable",
    "UnknownRooms",
    "UnreadableCheckpoint",
    "WrongReportVersion",
]


class OperatorError(Exception):
    """What the operator asked cannot be done as asked; nothing was changed. The message says
    what is wrong and what to do instead."""


class UnknownRooms(OperatorError):
    def __init__(self, room_ids: list[int]) -> None:
        self.room_ids = room_ids
        shown = ", ".join(str(r) for r in room_ids[:20])
        more = f" and {len(room_ids) - 20} more" if len(room_ids) > 20 else ""
        super().__init__(
            f"unknown room(s) {shown}{more}: not rooms of the monolith; check the ids "
            "(`chat-migrate status` lists the recorded rooms)"
        )


class CheckpointMismatch(OperatorError):
    """A job's checkpoint was made against another data set or another selection."""


class WrongReportVersion(OperatorError):
    """A parity result written by another schema version (or not a parity result at all)."""


class PanicStop(Exception):
    """An operator set the job's control to panic: the job stopped at once, checkpoint kept."""


class JobRunning(OperatorError):
    """Another run of the same job holds it (a second run would interleave with the first)."""


class UnreadableCheckpoint(Misconfigured):
    """A job's checkpoint that this version cannot read (another version's, or damaged)."""


class SourceNeverRan(Unavailable):
    """The binlog source has no checkpoint: a backfill started now could be marked done over
    writes nothing captures. Start the pipeline, then the job (exit 4)."""


class NotVisible(Unavailable):
    """Hints were appended but the read model did not apply them in time (the capturer or the
    updater is stopped or far behind, or the state is a dead letter): run again later, the job
    waits again from its checkpoint."""
