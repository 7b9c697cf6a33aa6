"""The gateway's ports. Every adapter of a port passes that port's contract suite in
tests/contracts/, the embedded one included: an embedded adapter that disagrees with the real
one is a bug in the embedded one.

The control store's ports are synchronous (a database driver underneath); the gateway's event
loop calls them through `asyncio.to_thread`, never on the request path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from gateway.domain.jobs import JobControl, JobReport, JobState
from gateway.domain.phases import (
    PARITY_MAX_AGE_S,
    ControlSnapshot,
    Direction,
    KillSwitch,
    MoveReport,
    Phase,
    RoomMark,
    RoomRecord,
    Transition,
)
from gateway.domain.shadow_record import ShadowCounts, ShadowTally

# Each port's errors (gateway/errors.py, newcore/errors.py), named here beside the port.
from gateway.errors import ControlStoreMisconfigured, ControlStoreUnavailable
from newcore.errors import MonolithUnavailable

__all__ = [
    "ControlStoreMisconfigured",
    "ControlStoreUnavailable",
    "JobBoard",
    "MonolithUnavailable",
    "PhaseStore",
    "RoomCatalog",
]


class PhaseStore(Protocol):
    """The control store: each room's phase, its history, and the kill switch, shared by every
    gateway instance and by the migrator's cutover.

    Phases change only through `move`, which judges each room with `phases.guard`. Every change
    (a move, a mark, the kill switch) bumps one revision, so a gateway learns that something
    changed by reading one row (`revision`) and reloads `snapshot` only then.

    Every method raises ControlStoreUnavailable when the store cannot be reached (nothing was
    changed for sure only if it was a read; a failed `move` may have committed: read the
    timeline before asking again) and ControlStoreMisconfigured when the store holds what this
    version cannot read (no schema or another version's, an unknown phase in a row): the
    message names the table, the row and the reason. Bad input (a room id outside 1..2^32-1,
    an empty or overlong who or why, a limit out of range) raises ValueError before anything
    is read or changed.
    """

    def revision(self) -> int:
        """The store's revision: a number that changes on every change and only then.

        Cheap (one row): the gateways poll it. Compare with `!=`, never `<`: a store created
        anew starts from another number (it starts from the clock, so in practice above any
        earlier store's, but a poller must not rely on that)."""
        ...

    def snapshot(self) -> ControlSnapshot:
        """The kill switch and every room out of legacy, read consistently at one revision
        (the snapshot's `revision`, which is the one to remember for the next poll)."""
        ...

    def room(self, room_id: int) -> RoomRecord:
        """The room's record; `RoomRecord.absent(room_id)` (legacy) if the store has none.
        The recorded phase, whatever the kill switch says."""
        ...

    def rooms(self, phase: Phase | None = None) -> list[RoomRecord]:
        """The recorded rooms in `phase` (every recorded room for None), by room id. A room
        never recorded is legacy but not listed: the monolith's rooms are `RoomCatalog`'s."""
        ...

    def move(
        self,
        room_ids: Iterable[int],
        to: Phase,
        who: str,
        why: str,
        *,
        dry_run: bool = False,
        direction: Direction | None = None,
        parity_max_age_s: float = PARITY_MAX_AGE_S,
    ) -> MoveReport:
        """Moves each room to `to` where its guard allows (`phases.guard`, judged on the room's
        record as it is when the move holds its lock, with its shadow record
        (`shadow_records`) for new_primary, `direction` (None: either way) and the parity's
        maximum age `parity_max_age_s`, at the store's time).

        All the allowed moves, their transitions (who, why, one time for all) and one revision
        bump are committed in one transaction, or nothing is. Concurrent movers never lose an
        update: a room's record is locked from its read to the commit, so a second mover judges
        it on the first one's result. Rooms already in `to` are `unchanged`; when nothing moves
        the store (and its revision) is not changed. Duplicated ids count once. `dry_run`
        judges the same way and changes nothing: its `moved` is what would be recorded.
        Moves are recorded while the kill switch is on too (they take effect when it is off).
        """
        ...

    def kill_switch(self) -> KillSwitch:
        """The kill switch as last set (off, with who, why and at None, if never set)."""
        ...

    def set_kill_switch(self, on: bool, who: str, why: str) -> KillSwitch:
        """Sets the kill switch; returns its state. On: every room is treated as legacy
        (`ControlSnapshot.phase_of`), the recorded phases stay. A change is recorded in the
        switch's own history (`switch_history`), not in the rooms' timelines, and bumps the
        revision; setting it to the state it is in changes nothing and returns that state (who
        set it, when and why)."""
        ...

    def switch_history(self, limit: int) -> list[KillSwitch]:
        """The last `limit` changes of the kill switch, newest first."""
        ...

    def timeline(self, room_id: int, limit: int) -> list[Transition]:
        """The last `limit` phase changes of the room, newest first; [] if none."""
        ...

    def recent_transitions(self, limit: int) -> list[Transition]:
        """The last `limit` phase changes of any room, newest first (the operators' last
        actions, `chat-migrate status`); [] if none. The transitions of one move share its
        time; among them, the room recorded last comes first."""
        ...

    def record_shadow(self, counts: Mapping[int, ShadowCounts]) -> None:
        """Adds a batch of shadow comparisons, by room, to the rooms' shadow records
        (`gateway/domain/shadow_record.py`), stamping each outcome counted with the store's
        time now. One transaction for the batch. Unlike every other change it does not bump
        the revision (the gateways poll the revision to reload their routing; a record routes
        nothing). A room needs no phase row to have a record. An empty batch, or counts of
        zero, change nothing. ValueError for a bad room id, before anything is changed."""
        ...

    def shadow_records(self, room_ids: Iterable[int]) -> dict[int, ShadowTally]:
        """The shadow records of the rooms among `room_ids` that have one (a room never
        recorded is absent: `ShadowTally.absent`)."""
        ...

    def marks(self, room_id: int, limit: int) -> list[RoomMark]:
        """The last `limit` facts reported about the room (`mark_backfilled`,
        `mark_parity_clean`), newest first; [] if none."""
        ...

    def mark_backfilled(self, room_id: int, who: str) -> RoomRecord:
        """Records that the room's backfill is done (now): the guard of shadow_read reads it.
        Recorded in `marks`; bumps the revision; a room not yet recorded is recorded in legacy.
        Returns the room's record."""
        ...

    def mark_parity_clean(self, room_id: int, positions: str, who: str) -> RoomRecord:
        """Records a clean parity check of the room (now) at `positions` (the parity job's
        own description of what it compared, issue 13): the guard of new_primary reads it.
        Recorded in `marks`; bumps the revision. Returns the room's record."""
        ...

    def close(self) -> None:
        """Releases connections; the store is not used afterwards."""
        ...


class RoomCatalog(Protocol):
    """The monolith's rooms, read-only: the universe a percentage selects from. Raises
    MonolithUnavailable when the monolith's database cannot be read."""

    def room_ids(self) -> Iterator[int]:
        """Every room id of the monolith, ascending, read in pages (never one long
        transaction): a room created meanwhile may or may not be listed."""
        ...

    def exists(self, room_ids: Sequence[int]) -> set[int]:
        """The ids among `room_ids` that are rooms of the monolith. ValueError for an id that
        cannot be a room id (outside 1..2^32-1)."""
        ...


class JobBoard(Protocol):
    """Operator controls of the migrator's long jobs and their heartbeats, in the control store
    (`gateway/domain/jobs.py`): the CLI and the admin API write controls, a running job reads
    its control about once a second and writes its report.

    Errors as `PhaseStore`'s: ControlStoreUnavailable, ControlStoreMisconfigured; bad input (a
    job name, a rate, who, why) raises ValueError before anything is read or changed.
    """

    def control(self, job: str) -> JobControl:
        """The job's control as last set; `JobControl.default(job)` if never set."""
        ...

    def set_control(
        self,
        job: str,
        who: str,
        why: str,
        *,
        state: JobState | None = None,
        rate: float | None = None,
        clear_rate: bool = False,
    ) -> JobControl:
        """Changes the job's state and/or rate (None: unchanged; `clear_rate`: back to the job's
        own rate), recording who, why and when (the server's clock); returns the control as it
        is now. A job need not exist or run to be controlled (pause before start is allowed).

        One atomic change of one row: concurrent writers never lose each other's part (one
        pauses while another sets the rate: the job ends paused at that rate). Setting what is
        already set records the new who, why and time. ValueError, nothing changed, when
        nothing is asked (no state, no rate, no clear_rate) or a rate comes with clear_rate."""
        ...

    def controls(self) -> list[JobControl]:
        """Every job ever controlled, by name."""
        ...

    def report(self, job: str, kind: str, detail: str) -> None:
        """The job's heartbeat: `detail` (its own JSON text, at most 60 000 characters) replaces
        the previous one, stamped now (the server's clock). `kind` says what the job is
        (`check_job_kind`: `backfill`, `repair`). A report never changes the job's control."""
        ...

    def reports(self) -> list[JobReport]:
        """Every job's last heartbeat, by name."""
        ...
