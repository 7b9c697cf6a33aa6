"""The new core's ports. Every adapter of a port passes that port's contract suite in
tests/contracts/, the embedded one included: an embedded adapter that disagrees with the real
one is a bug in the embedded one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from newcore.domain.events import Event
from newcore.domain.model import Message, ReadCursor
from newcore.domain.row_problems import RowProblem

# Each port's errors (newcore/errors.py), named here beside the port that raises them.
from newcore.errors import (
    EventLogFenced,
    EventLogMisconfigured,
    EventLogUnavailable,
    MonolithUnavailable,
    ReadStoreUnavailable,
)

__all__ = [
    "EventLogFenced",
    "EventLogMisconfigured",
    "EventLogUnavailable",
    "MonolithUnavailable",
    "ReadStoreUnavailable",
]


class ReadStore(Protocol):
    """The read model: messages and cursors at the monolith's latest captured state."""

    def apply(self, events: Sequence[Event]) -> None:
        """Applies events idempotently and in any order.

        For each message and each cursor, the state with the highest capture position wins;
        on equal positions the state applied last wins (within one call: the later in the
        sequence); an event at a lower position than what is held changes nothing; the same
        event applied twice changes nothing the second time. A deletion at position p hides the message from
        every read until an upsert at a position >= p. While a call is under way, reads of a
        room show the effect of a prefix of that room's events in the sequence, never a later
        one without the earlier ones (a reader polling `after` its last id would skip a
        message for good). Durable when it returns. An empty
        sequence is a no-op. Raises ReadStoreUnavailable (nothing or part applied: applying the
        same events again is always safe).
        """
        ...

    def message(self, room_id: int, message_id: int) -> Message | None:
        """The message, or None if it was never applied or its latest state is deleted."""
        ...

    def latest(self, room_id: int, limit: int) -> list[Message]:
        """The `limit` live messages of the room with the highest ids, oldest first; [] if none."""
        ...

    def after(self, room_id: int, after_message_id: int, limit: int) -> list[Message]:
        """Up to `limit` live messages with ids above `after_message_id`, oldest first."""
        ...

    def cursor(self, room_id: int, account_id: int) -> ReadCursor | None:
        """The account's cursor in the room, or None if none was applied."""
        ...

    def room_position(self, room_id: int) -> int | None:
        """The highest capture position of any event of the room applied so far; None if none.

        Events of one room are captured in position order, so every hint of the room at or
        below this position has had its effect on the read model: a reader that knows the
        position of the room's last hint before some moment (a shadow read's frontier) knows
        the read model has caught up with that moment once this reaches it. Written by `apply`
        after the events it covers are visible, never before; it never goes down.
        """
        ...

    def close(self) -> None:
        """Releases connections; the store is not used afterwards."""
        ...


@dataclass(frozen=True, slots=True)
class LogRecord:
    partition: int
    position: int  # the record's offset in its partition
    room_id: int
    value: bytes


class EventLog(Protocol):
    """An append-only log keyed by room (hints, events): a room's records stay in one partition,
    in the order they were appended; consumers read a partition from a position and commit the
    next position to read per consumer group."""

    @property
    def partitions(self) -> int:
        """How many partitions the log has; fixed for its lifetime."""
        ...

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        """Appends (room_id, value) records. Each goes to partition_for(room_id); records of one
        room keep their order in the sequence. Durable when it returns. Returns each record's
        position in its partition, in the order of `records` (the gateway's shadow reads wait
        until a room's read model has applied the position of the room's last hint). Empty: a
        no-op, []. Raises EventLogUnavailable (some records may be appended: appenders must
        tolerate duplicates)."""
        ...

    async def read(
        self, partition: int, from_position: int, max_records: int, timeout_ms: int
    ) -> list[LogRecord]:
        """Up to max_records records of the partition at positions >= from_position, in order.
        Waits up to timeout_ms for the first one; [] when none came in that time."""
        ...

    async def committed(self, group: str, partition: int) -> int:
        """The next position the group has to read in the partition; 0 if it never committed."""
        ...

    async def commit(self, group: str, positions: Mapping[int, int]) -> None:
        """Records, per partition, the next position the group has to read. Durable when it
        returns."""
        ...

    async def close(self) -> None:
        """Releases connections and files; the log is not used afterwards."""
        ...


@dataclass(frozen=True, slots=True)
class Batch:
    """Records of one partition at consecutive positions, in log order."""

    partition: int
    records: list[LogRecord]


@dataclass(frozen=True, slots=True)
class Append:
    """A record a worker appends to a topic, keyed by room (its partition is the room's)."""

    topic: str
    room_id: int
    value: bytes


class Subscription(Protocol):
    """A member of a consumer group on one log: the workers' view of their input.

    The group shares the log's partitions among its members; each partition is read by one
    member at a time, from the group's committed position on. A worker polls, does the effect
    of a batch, then commits the next position (or, transactionally, both at once:
    `TransactionalSubscription`). Whatever was not committed is read again by the next owner:
    effects must be safe to repeat."""

    async def start(self) -> None:
        """Joins the group (creating the topics it reads and writes if missing). Raises
        EventLogUnavailable (try again later) or EventLogMisconfigured (a topic with another
        partition count: an operator must act)."""
        ...

    def poll(self, max_records: int, timeout_ms: int) -> AbstractAsyncContextManager[list[Batch]]:
        """The next records, at most `max_records`, of the partitions this member owns and has
        not put back: each partition's batch starts where its previous batch ended (at the
        committed position after it was assigned, at the position given to `put_back`).
        Waits up to `timeout_ms` for the first record; [] when none came. While the context is
        open, no partition is taken from this member (a rebalance waits), so the effect and
        the commit of a batch are done by one owner."""
        ...

    def put_back(self, partition: int, position: int) -> int:
        """Nothing of the partition from `position` on is committed (a dependency failed): it is
        read again from `position` after a backoff that doubles up to a bound (returned, in
        ms), while the other partitions go on. A partition no longer owned is left alone (0)."""
        ...

    def succeeded(self, partition: int, next_position: int) -> None:
        """The partition's batch up to `next_position` is done: its next failure backs off
        from the start again, and its next batch starts at `next_position`."""
        ...

    async def commit(self, positions: Mapping[int, int]) -> None:
        """Records, per partition, the next position the group has to read. Durable when it
        returns. Raises EventLogUnavailable (nothing committed for sure: the batch may come
        again)."""
        ...

    async def lag(self) -> dict[int, int]:
        """Per owned partition, how many committed records are not yet polled."""
        ...

    def health(self) -> dict[str, Any]:
        """Whether the log is reachable (`"ok"`), what the member owns and what is paused."""
        ...

    async def close(self) -> None:
        """Leaves the group; nothing uncommitted is committed."""
        ...


class TransactionalSubscription(Subscription, Protocol):
    """A subscription whose member writes its outputs and its consumed position in one
    transaction: exactly-once consume -> produce."""

    async def transact(self, partition: int, appends: Sequence[Append], next_position: int) -> None:
        """Appends `appends` (each to its room's partition of its topic, in order per room)
        and commits `next_position` for `partition`, atomically: a reader of committed data
        sees all of it and the group's position moved, or none of it and the position where it
        was. Raises EventLogFenced: another member owns the partition now (this one has
        stopped reading it until the group assigns it again, and never fences the new owner
        back); EventLogUnavailable: none of it is visible (put the batch back)."""
        ...


class CheckpointedLog(Protocol):
    """A source's output (the binlog source's hints): its appends and its checkpoint (where it
    resumes) in one transaction, so that after any crash the last committed checkpoint and the
    appends visible to readers of committed data agree: nothing lost, nothing twice. The
    source's identity is exclusive: starting a second copy fences the first."""

    async def start(self) -> bytes | None:
        """Takes the identity (fencing any other writer of it; its open transaction is
        aborted), then returns the last committed checkpoint, or None when none was ever
        written. Raises EventLogUnavailable (try again later), EventLogMisconfigured."""
        ...

    async def append(self, appends: Sequence[Append], checkpoint: bytes) -> None:
        """Appends `appends` (each to its room's partition of its topic, in order per room)
        and makes `checkpoint` the last one, atomically. Raises EventLogFenced (another copy
        took the identity: stop), EventLogUnavailable (none of it is visible; `start` again
        before the next append)."""
        ...

    async def close(self) -> None:
        """Releases the identity's connections; an open transaction is left to be aborted."""
        ...


@dataclass(frozen=True, slots=True)
class MessageRead:
    """The monolith's current state of the messages a read asked about."""

    live: dict[tuple[int, int], Message]  # (room_id, message_id) -> the message as shown
    gone: set[tuple[int, int]]  # asked about, and soft-deleted, purged or not in that room
    problems: list[RowProblem]


@dataclass(frozen=True, slots=True)
class RangeRead:
    """One page of a room's id range, in id order."""

    live: list[Message]
    deleted: list[int]  # soft-deleted ids in the page (purged ids cannot be seen in a range)
    problems: list[RowProblem]
    last_seen: int | None  # the highest id in the page (live or deleted); None: the range is done


class MonolithReader(Protocol):
    """Reads the monolith's current rows for the capturer, translated to domain state.

    Every call reads in a fresh transaction at READ COMMITTED: it sees every commit that
    happened before it started (DESIGN.md, "Stale snapshots")."""

    def read_messages(self, keys: Sequence[tuple[int, int]]) -> MessageRead:
        """The state of each (room_id, message_id): in `live` or in `gone`, never both, every
        key in one of them. Empty keys: an empty read."""
        ...

    def read_range(self, room_id: int, first: int, last: int, limit: int) -> RangeRead:
        """Up to `limit` rows of the room with ids in [first, last], in id order. The next page
        starts at last_seen + 1; last_seen is None when no row is left in the range."""
        ...

    def read_cursors(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], ReadCursor]:
        """The cursors of the (room_id, account_id) pairs that have one."""
        ...

    def existing_rooms(self, room_ids: Sequence[int]) -> set[int]:
        """Which of the rooms exist in the monolith."""
        ...


DEFAULT_AVATAR = "https://appdata.chatwork.com/avatar/ico_default_blue.png"


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """How the monolith shows an account in a message object."""

    account_id: int
    name: str
    avatar_image_url: str


class AccountDirectory(Protocol):
    """Accounts, tokens and memberships stay in the monolith (they do not migrate): the new
    core asks here, so names and avatars are never copied and never go stale."""

    def account_for_token(self, token: str) -> int | None:
        """The account an API token belongs to; None for an unknown or malformed token."""
        ...

    def access(self, room_id: int, account_id: int) -> str:
        """ "no_room" if the room does not exist, "not_member" if the account is not in it,
        else its role there: "admin", "member" or "readonly"."""
        ...

    def profiles(self, account_ids: Sequence[int]) -> dict[int, AccountProfile]:
        """A profile for every id asked, as the monolith renders it: an account that no longer
        exists shows name "" and the default avatar; a missing avatar shows the default."""
        ...
