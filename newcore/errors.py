"""The new core's error taxonomy: what a caller may do about a failure, per port.

Every adapter turns its driver's exceptions (aiokafka's, happybase's and thriftpy2's,
SQLAlchemy's, OS errors) into one of these at its boundary, so that the policy (retry, pause
the partition, dead-letter the record, exit) is decided in one place per process, on our words
and never on a driver's. Three kinds, after what can be done:

- `Unavailable`: the dependency cannot be reached or failed the call; the same call may be
  retried as is, later (back off).
- `Misconfigured`: the dependency answers but is set up against our settings; retrying cannot
  help, an operator must act (exit with a message that says what to fix).
- `Fenced`: another owner has taken over what this process was writing; it must stop writing
  there, and never fence the new owner back.

And one for input: `InvalidRecord`, a record (hint, event, checkpoint) that is not what its
format says, with a `reason` for the dead letter.
"""

from __future__ import annotations


class Unavailable(Exception):
    """A dependency cannot be reached or failed the call; retry the same call later."""


class Misconfigured(Exception):
    """A dependency is set up against our settings; retrying cannot help, an operator must act."""


class Fenced(Exception):
    """Another owner took over; stop writing there (never fence it back)."""


class InvalidRecord(ValueError):
    """A record that is not what its format says; `reason` says why, for the dead letter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- per port ------------------------------------------------------------------------------


class EventLogUnavailable(Unavailable):
    """The event log cannot be reached or refused the call (ports.EventLog)."""


class EventLogMisconfigured(Misconfigured):
    """A topic with another partition count than our settings: rooms would change partition."""


class EventLogFenced(Fenced):
    """Another producer with our transactional identity took over a partition or a source."""


class ReadStoreUnavailable(Unavailable):
    """The read store cannot be reached or answered with an error (ports.ReadStore)."""


class ReadStoreMisconfigured(Misconfigured):
    """HBase answers, but our tables cannot be made or are not laid out as ours: the creation
    tool cannot run, or a table lacks the salt boundaries (made by hand, or by a version before
    the packed cell). Retrying cannot help; an operator must act."""


class UnreadableCell(ReadStoreUnavailable):
    """A message row whose cell is not exactly a known version of the packed cell (a newer
    writer's version, a row of another layout, damage). The read fails rather than answer
    without the message; `reason` says why."""

    def __init__(self, room_id: int, message_id: int, reason: str) -> None:
        super().__init__(
            f"unreadable read-model cell, room {room_id} message {message_id}: {reason}"
        )
        self.room_id, self.message_id, self.reason = room_id, message_id, reason


class MonolithUnavailable(Unavailable):
    """The monolith's database cannot be reached or failed the read (ports.MonolithReader,
    ports.AccountDirectory)."""


class InvalidEvent(InvalidRecord):
    """A record of the events topic that is not an event of a known version."""


class InvalidHint(InvalidRecord):
    """A record of the hints topic that is not a hint of a known version."""
