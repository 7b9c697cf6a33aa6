"""The backfill's pure rules (migrator/README.md, "Backfill"): the plan and its room order, the
chunks a room's history is cut into, the checkpoint (versioned JSON), the throttle's decision
and the pacing of appends. No I/O here; `migrator/service/backfill.py` runs them.

How a room is backfilled, and why it ends where it does:

- At the job's start each room's history is measured once (`PlannedRoom`: lowest and highest
  id, rows). Ids above `high` are written later and reach the read model through live capture
  (the binlog source captures every committed write, whatever the room's phase), so the
  backfill only covers `[1, high]`.
- That range is cut into chunks of at most `chunk_rows` rows, read from the monolith's
  `(room_id, message_id)` index; each chunk becomes one `RangeHint` on the hints topic, the
  same pipe as live writes, so the capturer reads the current rows (promise 4 unchanged).
  `chunk_rows` is at most the capturer's range page: a hint is captured in one page, and no
  follow-up hint appears whose position the backfill cannot know.
- After its last chunk a room gets one more hint, the *closing hint*: a `MessageHint` for its
  `high`. A range whose rows were all purged since the start (hard deletes) gives the capturer
  nothing to emit, so no event would ever carry its position, and a room whose last range was
  empty would wait for ever. A message hint always gives an event (an upsert if the row is
  there, a delete if it is gone: `MonolithReader.read_messages` puts every key in `live` or
  `gone`), so the closing hint's position always reaches the read model. Events of a room are
  applied in position order, so once `ReadStore.room_position(room)` reaches the closing
  hint's position, every chunk of the room before it has had its effect: then, and only then,
  the room is marked backfilled. (A closing message whose event is larger than the event log
  takes is a dead letter instead: the room is then rightly never marked, and the job says
  which room did not become visible.)
- A room's history includes its read cursors (the monolith's `room_cursors`: last read and
  last fetched message per account): without them a room in shadow_read answers force=0 reads
  from the wrong place. Right before the closing hint, in the same append (same room, same
  partition, in order), the room gets a `CursorHint` per cursor row (`RoomCursors`, paged by
  account), so the closing hint's position covers them too. A room with cursors and no
  message has no closing hint: it waits on its last cursor hint (a cursor hint of an existing
  row always gives an event; the monolith never deletes cursor rows); a room with neither is
  done at once.

The checkpoint is two records in the `CheckpointStore`:

- the *plan* (`<job>/plan`, kind `backfill_plan`), written once at the start: the data set's
  fingerprint, the hints topic and its partition count (positions mean something only there),
  the selection as the operator wrote it, the order, and every room with its bounds, in the
  order they are taken;
- the *progress* (`<job>`, kind `backfill`), written after every append returned: the plan's
  digest, how many rooms of the plan were started (`next`), and each started room that is not
  done yet with the end of its last chunk appended (`sent_to`) and, once its closing hint is
  appended, that hint's position. A room before `next` and not listed is done.

So the progress stays small (a few rooms) however many rooms the plan holds, and a resume
after `kill -9` goes on after the last chunk saved: hints appended after the last save are
sent again (harmless: the read model holds one state per message), no chunk is skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from migrator.domain.selection import Selection
from migrator.errors import CheckpointMismatch, OperatorError, UnreadableCheckpoint

PLAN_SCHEMA = "chat-migration/backfill-plan"
PROGRESS_SCHEMA = "chat-migration/backfill-progress"
CHECKPOINT_VERSION = 1
KIND = "backfill"
PLAN_KIND = "backfill_plan"


JOB_KEY_MAX = 128
KIND_MAX = 32


def check_job_key(job: object) -> str:
    """A checkpoint's job key (`CheckpointStore`): 1..128 printable characters, none of them
    blank at either end. ValueError else. Every adapter checks with it, so they refuse the same
    things."""
    if (
        not isinstance(job, str)
        or not 0 < len(job) <= JOB_KEY_MAX
        or not job.isprintable()
        or job != job.strip()
    ):
        raise ValueError(
            f"a checkpoint's job is 1..{JOB_KEY_MAX} printable characters, not blank at either "
            f"end, got {job!r}"
        )
    return job


def check_kind(kind: object) -> str:
    """A checkpoint's kind: 1..32 printable characters. ValueError else."""
    if not isinstance(kind, str) or not 0 < len(kind) <= KIND_MAX or not kind.isprintable():
        raise ValueError(f"a checkpoint's kind is 1..{KIND_MAX} printable characters, got {kind!r}")
    return kind


def check_state(state: object) -> str:
    """A checkpoint's state: text (the job's own JSON). ValueError else."""
    if not isinstance(state, str):
        raise ValueError(f"a checkpoint's state is text, got {type(state).__name__}")
    return state


def plan_key(job: str) -> str:
    """Where the job's plan is kept: a name no job can have (`/` is not allowed in one)."""
    return f"{job}/plan"


class Order(StrEnum):
    """The order rooms are taken in.

    `hot` (the default): the rooms with the most messages sent in the last `hot_days` first.
    Their users see the most, so they reach `shadow_read` first and the shadow comparisons run
    on the most real reads soonest; a quiet room's history matters to few people and waits.
    Among equally hot rooms the smaller first (they are done sooner). `size`: smallest first,
    so that many rooms are done early. `id`: ascending ids, the plain order.
    """

    HOT = "hot"
    SIZE = "size"
    ID = "id"


def parse_order(text: str) -> Order:
    try:
        return Order(text.strip().lower())
    except ValueError:
        known = ", ".join(o.value for o in Order)
        raise OperatorError(f"--order is one of {known}, got {text!r}") from None


@dataclass(frozen=True, slots=True)
class PlannedRoom:
    """A room as the job found it at its start (`RoomHistory.bounds`); an empty room has
    `rows` 0 and `low`, `high` 0: it has no history to send."""

    room_id: int
    low: int
    high: int
    rows: int


def order_rooms(
    rooms: Sequence[PlannedRoom], order: Order, activity: Mapping[int, int]
) -> list[PlannedRoom]:
    """The rooms in the order they are taken (`Order`); `activity` (messages sent lately, per
    room; absent: 0) matters only to `hot`. Deterministic: ties end on the room id."""
    if order is Order.HOT:
        return sorted(rooms, key=lambda r: (-activity.get(r.room_id, 0), r.rows, r.room_id))
    if order is Order.SIZE:
        return sorted(rooms, key=lambda r: (r.rows, r.room_id))
    return sorted(rooms, key=lambda r: r.room_id)


# -- chunks ----------------------------------------------------------------------------------


def check_chunk_rows(chunk_rows: int, range_page: int) -> int:
    """`chunk_rows` as the backfill may use it: 1..the capturer's range page. A larger chunk
    would be captured in several pages, the rest as a follow-up hint appended by the capturer
    at a position the backfill never learns, so "visible" could be declared too early."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise OperatorError(
            f"--chunk-rows is a whole number of rows, at least 1, got {chunk_rows!r}"
        )
    if chunk_rows > range_page:
        raise OperatorError(
            f"--chunk-rows {chunk_rows} is more than the capturer's range page ({range_page}, "
            "MIG_CAPTURER_RANGE_PAGE): a chunk must be captured in one page, or the backfill "
            f"cannot tell when it is visible. Use --chunk-rows {range_page} or less (or raise "
            "MIG_CAPTURER_RANGE_PAGE for the capturer and here alike)"
        )
    return chunk_rows


def chunk_ranges(after: int, ends: Sequence[int]) -> list[tuple[int, int]]:
    """The id ranges [first, last] of chunks ending at `ends` (ascending, above `after`): chunk
    i covers (previous end, end_i]."""
    ranges: list[tuple[int, int]] = []
    previous = after
    for end in ends:
        if end <= previous:
            raise ValueError(f"chunk ends must ascend above {previous}, got {end}")
        ranges.append((previous + 1, end))
        previous = end
    return ranges


def chunk_rows_counted(room: PlannedRoom, sent_rows: int, chunk_rows: int, last: bool) -> int:
    """How many of the room's messages a chunk is counted for in the progress: a full chunk
    `chunk_rows`; the last one what is left of the rows measured at the start (rows purged
    since make the count a little high, never the coverage short)."""
    if last:
        return max(0, room.rows - sent_rows)
    return min(chunk_rows, max(0, room.rows - sent_rows))


# -- the checkpoint --------------------------------------------------------------------------


def encode_selection(selection: Selection) -> dict[str, Any]:
    if selection.everything:
        return {"all": True}
    if selection.percent is not None:
        return {"percent": selection.percent}
    return {"ids": list(selection.ids)}


def decode_selection(data: object) -> Selection:
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError(f"a selection is one of ids, percent, all, got {data!r}")
    if data.get("all") is True:
        return Selection(everything=True)
    if "percent" in data:
        percent = data["percent"]
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise ValueError(f"a percentage is a number, got {percent!r}")
        return Selection(percent=float(percent))
    ids = data.get("ids")
    if not isinstance(ids, list) or not ids or not all(_is_id(i) for i in ids):
        raise ValueError(f"ids are a list of room ids, got {str(ids)[:80]}")
    return Selection(ids=tuple(ids))


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True, slots=True)
class Plan:
    """What a backfill job was asked to do, fixed at its start (module docstring)."""

    job: str
    fingerprint: str  # the monolith's data set (`RoomHistory.fingerprint`)
    target: str  # the hints topic and its partition count: where positions mean something
    selection: Selection
    order: Order
    rooms: tuple[PlannedRoom, ...]
    created_unix: float

    @property
    def rows(self) -> int:
        return sum(room.rows for room in self.rooms)

    def encode(self) -> str:
        data = {
            "schema": PLAN_SCHEMA,
            "version": CHECKPOINT_VERSION,
            "job": self.job,
            "fingerprint": self.fingerprint,
            "target": self.target,
            "selection": encode_selection(self.selection),
            "order": self.order.value,
            "created_unix": self.created_unix,
            # [room_id, low, high, rows]: compact, a plan may hold many thousand rooms.
            "rooms": [[r.room_id, r.low, r.high, r.rows] for r in self.rooms],
        }
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def refuse_other(self, fingerprint: str, target: str, selection: Selection) -> None:
        """CheckpointMismatch unless this plan is for the same data set, hints topic and
        selection: resuming it elsewhere would send hints for the wrong rows or wait on
        positions of another log."""
        how = (
            "run it with the same ROOMS, data set and topic to resume, add --restart to forget "
            "it and start over, or give another --job name"
        )
        if self.fingerprint != fingerprint:
            raise CheckpointMismatch(
                f"job {self.job}'s checkpoint was made against another data set (monolith "
                f"{self.fingerprint!r}, this one is {fingerprint!r}): {how}"
            )
        if self.target != target:
            raise CheckpointMismatch(
                f"job {self.job}'s checkpoint was made for the hints topic {self.target!r}, this "
                f"run appends to {target!r}: its positions mean nothing here; {how}"
            )
        if not same_selection(self.selection, selection):
            raise CheckpointMismatch(
                f"job {self.job}'s checkpoint is for rooms {self.selection.describe()!r}, this "
                f"run asks for {selection.describe()!r}: {how}"
            )


def same_selection(one: Selection, other: Selection) -> bool:
    """Whether two selections name the same rooms as written: ids in any order, the same
    percentage, or both all."""
    if one.ids or other.ids:
        return sorted(one.ids) == sorted(other.ids)
    return one.percent == other.percent and one.everything == other.everything


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def decode_plan(job: str, text: str) -> Plan:
    """The plan in `text`; UnreadableCheckpoint (what, and what to do) for anything else."""
    data = _envelope(job, "plan", text, PLAN_SCHEMA)
    try:
        rooms = tuple(_planned(item) for item in _list(data, "rooms"))
        return Plan(
            job=_str(data, "job"),
            fingerprint=_str(data, "fingerprint"),
            target=_str(data, "target"),
            selection=decode_selection(data.get("selection")),
            order=Order(_str(data, "order")),
            rooms=rooms,
            created_unix=_number(data, "created_unix"),
        )
    except (ValueError, TypeError) as exc:
        raise _unreadable(job, "plan", f"not a backfill plan: {exc}") from None


def _planned(item: object) -> PlannedRoom:
    if not isinstance(item, list) or len(item) != 4 or not all(_is_id(v) for v in item):
        raise ValueError(f"a planned room is [room_id, low, high, rows], got {item!r}")
    room_id, low, high, rows = item
    if room_id < 1 or low > high or (rows == 0) != (high == 0):
        raise ValueError(f"a planned room is [room_id, low, high, rows], got {item!r}")
    return PlannedRoom(room_id, low, high, rows)


class RoomState(StrEnum):
    SENDING = "sending"  # chunks being appended
    WAITING = "waiting"  # every hint appended; waiting for the read model to apply the last


@dataclass(frozen=True, slots=True)
class RoomProgress:
    """A started room that is not done: the end of its last chunk appended (`sent_to`, 0
    before the first), the messages those chunks are counted for, and the position of its
    closing hint once appended (then it is WAITING)."""

    room_id: int
    state: RoomState
    sent_to: int = 0
    sent_rows: int = 0
    position: int | None = None
    waiting_since_unix: float | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a job is (module docstring): rooms `[0, next)` of the plan are started; those
    of them not in `rooms` are done."""

    plan_digest: str
    next: int = 0
    rooms: Mapping[int, RoomProgress] = field(default_factory=dict)
    done_rooms: int = 0
    done_rows: int = 0
    # Totals, so that `chat-migrate status` reads the progress without the plan.
    total_rooms: int = 0
    total_rows: int = 0

    @property
    def sent_rows(self) -> int:
        """Messages covered by appended hints, done rooms included."""
        return self.done_rows + sum(r.sent_rows for r in self.rooms.values())

    def with_room(self, room: RoomProgress) -> Progress:
        return replace(self, rooms={**self.rooms, room.room_id: room})

    def started(self, room: RoomProgress) -> Progress:
        return replace(self.with_room(room), next=self.next + 1)

    def done(self, room_id: int) -> Progress:
        rooms = dict(self.rooms)
        finished = rooms.pop(room_id)
        return replace(
            self,
            rooms=rooms,
            done_rooms=self.done_rooms + 1,
            done_rows=self.done_rows + finished.sent_rows,
        )

    @property
    def finished(self) -> bool:
        return self.next >= self.total_rooms and not self.rooms

    def encode(self) -> str:
        data = {
            "schema": PROGRESS_SCHEMA,
            "version": CHECKPOINT_VERSION,
            "plan": self.plan_digest,
            "next": self.next,
            "done_rooms": self.done_rooms,
            "done_rows": self.done_rows,
            "total_rooms": self.total_rooms,
            "total_rows": self.total_rows,
            "rooms": [
                {
                    "room_id": r.room_id,
                    "state": r.state.value,
                    "sent_to": r.sent_to,
                    "sent_rows": r.sent_rows,
                    "position": r.position,
                    "waiting_since_unix": r.waiting_since_unix,
                }
                for r in sorted(self.rooms.values(), key=lambda r: r.room_id)
            ],
        }
        return json.dumps(data, separators=(",", ":"), allow_nan=False)


def decode_progress(job: str, text: str) -> Progress:
    """The progress in `text`; UnreadableCheckpoint (what, and what to do) for anything else."""
    data = _envelope(job, "progress", text, PROGRESS_SCHEMA)
    try:
        rooms: dict[int, RoomProgress] = {}
        for item in _list(data, "rooms"):
            if not isinstance(item, dict):
                raise ValueError(f"a room's progress is an object, got {item!r}")
            position = item.get("position")
            since = item.get("waiting_since_unix")
            room = RoomProgress(
                room_id=_count(item, "room_id"),
                state=RoomState(_str(item, "state")),
                sent_to=_count(item, "sent_to"),
                sent_rows=_count(item, "sent_rows"),
                position=None if position is None else _count(item, "position"),
                waiting_since_unix=None if since is None else _number(item, "waiting_since_unix"),
            )
            if (room.state is RoomState.WAITING) != (room.position is not None):
                raise ValueError(
                    f"room {room.room_id}: a waiting room, and only it, has a position"
                )
            rooms[room.room_id] = room
        progress = Progress(
            plan_digest=_str(data, "plan"),
            next=_count(data, "next"),
            rooms=rooms,
            done_rooms=_count(data, "done_rooms"),
            done_rows=_count(data, "done_rows"),
            total_rooms=_count(data, "total_rooms"),
            total_rows=_count(data, "total_rows"),
        )
    except (ValueError, TypeError) as exc:
        raise _unreadable(job, "progress", f"not a backfill progress: {exc}") from None
    if progress.next > progress.total_rooms or len(rooms) > progress.next:
        raise _unreadable(job, "progress", "more rooms started than planned")
    return progress


def _unreadable(job: str, what: str, reason: str) -> UnreadableCheckpoint:
    return UnreadableCheckpoint(
        f"job {job}'s checkpoint ({what}) cannot be read by this version: {reason}. Run the "
        f"chat-migrate that wrote it to finish the job, or run again with --restart to forget "
        "it (the job starts over: hints already sent are sent again, harmless)"
    )


def _envelope(job: str, what: str, text: str, schema: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _unreadable(job, what, f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != schema:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise _unreadable(job, what, f"schema {found!r}, expected {schema!r}")
    if data.get("version") != CHECKPOINT_VERSION:
        raise _unreadable(
            job, what, f"version {data.get('version')!r}, this version reads {CHECKPOINT_VERSION}"
        )
    return data


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is text, got {value!r}")
    return value


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not _is_id(value):
        raise ValueError(f"{key} is a whole number >= 0, got {value!r}")
    assert isinstance(value, int)
    return value


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} is a number, got {value!r}")
    return float(value)


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{key} is a list, got {type(value).__name__}")
    return value


# -- the throttle ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """Beyond any of these the monolith (or the pipe) is busy: the backfill slows down."""

    max_probe_ms: float
    max_threads_running: int
    max_capture_lag: int


@dataclass(frozen=True, slots=True)
class Reading:
    """One look at the monolith's health and the pipe, as an operator would take it."""

    probe_ms: float
    threads_running: int
    capture_lag: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do next: send at `rate` messages/s, or `wait` (send nothing) until the next
    look; `reasons` name what was over its bound."""

    rate: float
    wait: bool
    reasons: tuple[str, ...] = ()


# A throttled rate never drops below this share of the target: at the floor a chunk still
# goes out now and then once the monolith is healthy again, and growing back stays short.
FLOOR_SHARE = 1 / 64
# Each healthy look adds this share of the target back (additive increase): from the floor to
# the target in about 16 looks (seconds), a ramp the monolith's operators can watch.
STEP_SHARE = 1 / 16


def over_bounds(reading: Reading, limits: Limits) -> tuple[str, ...]:
    reasons = []
    if reading.probe_ms > limits.max_probe_ms:
        reasons.append("probe_latency")
    if reading.threads_running > limits.max_threads_running:
        reasons.append("threads_running")
    if reading.capture_lag > limits.max_capture_lag:
        reasons.append("capture_lag")
    return tuple(reasons)


def throttle(current: float, target: float, reading: Reading, limits: Limits) -> Decision:
    """AIMD on the monolith's health: any measure over its bound halves the rate (down to the
    floor) and waits; all under lets it grow back by a step, up to the target. A lowered
    target applies at once; a raised one is reached step by step. Why these three measures:

    - the probe's latency is what the monolith's users feel (the same shape as its hottest
      read: the latest 100 messages of a room), whatever makes the server slow;
    - `Threads_running` rises before latency does when the server saturates (queries queue on
      the CPUs and on InnoDB), and it is what a DBA watches;
    - the capture lag (hints not yet consumed) is the pipe's health: the backfill shares the
      hints topic and the capturer with live writes, and flooding it delays their capture
      (shadow reads turn late) and makes the capturer read the monolith harder.
    """
    if target <= 0:
        raise ValueError(f"a target rate is above 0, got {target}")
    floor = target * FLOOR_SHARE
    rate = min(max(current, floor), target)
    reasons = over_bounds(reading, limits)
    if reasons:
        return Decision(max(floor, rate / 2), True, reasons)
    return Decision(min(target, rate + target * STEP_SHARE), False)


def pause_after(rows: int, rate: float, spent_s: float) -> float:
    """Seconds to wait after an append of `rows` messages that took `spent_s`, so that the
    messages sent per second stay at `rate` on average."""
    if rate <= 0:
        raise ValueError(f"a rate is above 0, got {rate}")
    return max(0.0, rows / rate - spent_s)
