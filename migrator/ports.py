"""The migrator's ports: what its jobs need that the new core's and the gateway's ports do not
already say. Every adapter of a port passes the port's contract suite in tests/contracts/.

Also used, from the packages below (DESIGN.md, "Layout": migrator -> gateway domain and ports
-> newcore, legacy_adapters):
- `gateway.ports.PhaseStore` (moves, marks), `RoomCatalog` (the monolith's rooms),
  `JobBoard` (operator controls and heartbeats of jobs);
- `newcore.ports.EventLog` (the hints topic: backfill and repair append hints there, the same
  pipe as live writes), `ReadStore` (the read model), `MonolithReader` (the monolith's rows,
  translated exactly as the capturer translates them).

Errors: `newcore.errors.Unavailable` subclasses when a service cannot be reached (a job stops,
its checkpoint kept), `Misconfigured` when a store holds what this version cannot read.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from newcore.domain.model import ReadCursor


@dataclass(frozen=True, slots=True)
class RoomBounds:
    """A room's history as the backfill finds it at its start: the lowest and highest message
    id and the number of rows between them (soft-deleted rows included: their deletion is
    history too). Rows above `high` are written after the start and reach the read model
    through live capture (the binlog source), not the backfill."""

    room_id: int
    low: int
    high: int
    rows: int


@dataclass(frozen=True, slots=True)
class HealthSample:
    """The monolith's health as an operator reads it (migrator/README.md, "Throttling")."""

    probe_ms: float  # the latency of a probe query shaped like the monolith's own hot read
    threads_running: int  # MariaDB's Threads_running


class RoomHistory(Protocol):
    """The monolith's message history, read-only, in pages (never one long transaction)."""

    def fingerprint(self) -> str:
        """What identifies the data set (the server's uuid and the schema name): a checkpoint
        made against another one is refused."""
        ...

    def bounds(self, room_id: int) -> RoomBounds | None:
        """The room's history now; None when the room has no message row."""
        ...

    def chunk_ends(self, room_id: int, after: int, high: int, rows: int, count: int) -> list[int]:
        """The ends of the next `count` chunks of at most `rows` rows each of the room's ids in
        (after, high], ascending: chunk i is (previous end, end_i]. Fewer (or none) when the
        range runs out; the last one ends at the highest id <= high present. Read from the
        (room_id, message_id) index only."""
        ...

    def activity(self, room_ids: Sequence[int], since_unix: int) -> dict[int, int]:
        """Messages sent in each room since `since_unix` (rooms without any are absent): how
        hot a room is, for the backfill's default order."""
        ...


class MonolithHealth(Protocol):
    def sample(self) -> HealthSample:
        """One measurement now. Raises MonolithUnavailable when the server cannot be reached."""
        ...


class RoomCursors(Protocol):
    """The monolith's read cursors of a room, in pages (parity compares them one by one)."""

    def cursors(self, room_id: int, after_account: int, limit: int) -> list[ReadCursor]:
        """Up to `limit` cursors of the room with account ids above `after_account`, by
        account id."""
        ...


@dataclass(frozen=True, slots=True)
class Frontier:
    """What the monolith had committed at one moment: its binlog position then (`binlog`,
    "file:pos"), and when (`at_unix`). Once the pipeline has carried every change up to it into
    the read model (`Pipeline.reached`), a row that still differs is a difference; a row that
    changed after it is not (DESIGN.md, "Lag is not a difference")."""

    binlog: str
    at_unix: float


class Pipeline(Protocol):
    """Where the capture pipeline is (binlog source -> hints -> capturer -> events -> updater),
    read without joining any group and without writing anything."""

    async def mark(self) -> Frontier:
        """The monolith's binlog position now."""
        ...

    async def reached(self, frontier: Frontier) -> bool:
        """Whether every change the monolith had committed at `frontier` is applied in the read
        model: the binlog source's checkpoint is at or past it, then the capturer has consumed
        every hint appended until then, then the updater every event appended until the
        capturer got there. One look (the caller polls); remembers what it saw per frontier, so
        a later look only checks what was left."""
        ...

    async def source_checkpoint(self) -> str | None:
        """The binlog source's last checkpoint ("file:pos"), None when it never checkpointed.
        A source that has a checkpoint captures every commit after it, whenever it runs; one
        that never ran starts, the first time, at the binlog's end then, and what was committed
        before that is nobody's but the backfill's (legacy_adapters' binlog source)."""
        ...

    async def capture_lag(self) -> int:
        """Hints appended and not yet consumed by the capturer, over every partition: how far
        the capture path is behind (a backfill that floods it delays live hints)."""
        ...

    async def close(self) -> None: ...


class CheckpointStore(Protocol):
    """Durable checkpoints of jobs, by job name: each job's own JSON text (its domain says the
    shape and the version). Durable when `save` returns; the last save wins."""

    def load(self, job: str) -> tuple[str, str] | None:
        """(kind, state) of the job's checkpoint, or None when there is none."""
        ...

    def save(self, job: str, kind: str, state: str) -> None: ...

    def delete(self, job: str) -> None:
        """Forgets the job's checkpoint (a restart from nothing); no error if there is none."""
        ...

    def jobs(self) -> list[tuple[str, str, str]]:
        """(job, kind, state) of every checkpoint, by job name."""
        ...


class JobLease(Protocol):
    def check(self) -> None:
        """Raises Unavailable when the hold was lost meanwhile (the store's connection
        dropped): another run may hold the job now, so this one must stop."""
        ...


class JobLocks(Protocol):
    """One run of a job at a time, across processes and hosts: a second run of the same job
    would interleave with the first (two appenders of one room's chunks, two writers of one
    checkpoint)."""

    def hold(self, job: str) -> AbstractContextManager[JobLease]:
        """Holds the job while the context is open; JobRunning at once (nothing held, nothing
        changed) when another holder has it. Released when the context exits, and by the store
        when the holder's process dies (kill -9 included): a dead run never keeps a job."""
        ...


@dataclass(frozen=True, slots=True)
class LostRoom:
    """A room a gateway's hint spool lost hints of (past its bound, or a disk error): how many,
    and when the first and the last were lost (unix seconds, the gateway's clock). The repair
    sends range hints over the room (migrator/README.md, "Repair")."""

    room_id: int
    count: int
    first_lost_at: float
    last_lost_at: float


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What `LostRooms.forget` did: the rooms taken off the list, those kept (they lost hints
    again since they were read), and how (in words, for the operator)."""

    forgotten: list[int]
    kept: list[int]
    how: str


class LostRooms(Protocol):
    """The rooms a gateway's hint spool lost hints of (its lost-rooms list), for the repair.
    Raises Misconfigured when the spool holds what this version cannot read, Unavailable when
    it cannot be reached."""

    def read(self) -> list[LostRoom]:
        """The rooms listed now, by room id; [] when none. Never changes the list."""
        ...

    def forget(self, seen: Sequence[LostRoom], who: str, why: str) -> Forgotten:
        """Takes the rooms of `seen` (as `read` gave them, before their hints were sent) off
        the list, except those that lost hints again since (a higher count or a later last
        loss: kept, to be repaired again). A room no longer listed is neither forgotten nor
        kept. Durable when it returns."""
        ...
