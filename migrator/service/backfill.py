"""The backfill job (`chat-migrate backfill ROOMS`): the history of chosen rooms reaches the
read model through the same pipe as live writes (migrator/README.md, "Backfill"; the rules in
`migrator/domain/backfill.py`).

One run, in order:

1. **Hold the job** (`JobLocks.hold`): a second run of the same job name is refused at once
   (`JobRunning`, exit 2) instead of interleaving with the first; the hold dies with its
   process, so a run killed with `kill -9` never blocks the next.
2. **Plan or resume.** A saved checkpoint of this job is resumed only if it was made against
   this data set (`RoomHistory.fingerprint`), this hints topic, this selection (and the order,
   if one is asked): else `CheckpointMismatch` (exit 2), nothing changed; `--restart` forgets
   it. A new plan resolves the selection (unknown rooms refused, nothing changed), measures
   every room (`bounds`, a few rooms at a time), orders them, and is saved before any hint.
3. **Obey the operator** before anything is sent and between every two appends
   (`JobControls.checkpoint`): the rate override, pause (nothing sent, place kept), panic
   (`PanicStop`, exit 5, checkpoint kept).
4. **Send.** Up to `rooms_in_parallel` rooms are worked on at once: each append carries the
   next chunk of each of them as a `RangeHint` (and after a room's last chunk a `CursorHint`
   per read cursor of the room, `RoomCursors`, then its closing `MessageHint`), appended with
   `EventLog.append`, which returns each record's position. Only after the append returned is
   the progress saved (each room's last chunk end, and the position of its closing hint).
   Appends are paced to the rate: messages per second.
5. **Throttle** about once a second on the monolith's health (`MonolithHealth.sample`: the
   probe's latency and Threads_running) and the capture lag (`Pipeline.capture_lag`), AIMD
   (`domain.throttle`): over any bound, halve and wait; all under, grow back by steps.
6. **Mark** a room backfilled (`PhaseStore.mark_backfilled`) only when the read model's
   `room_position(room)` reached the position of its closing hint: every chunk before it has
   been captured and applied, its cursors too (the domain's docstring says why the closing
   hint exists: a last chunk whose rows were all purged meanwhile gives no event). A room
   without messages but with cursors waits on its last cursor hint instead. A room that does not become
   visible within `visible_timeout_s` stops the job at its end with `NotVisible` (exit 4, it
   waits again on the next run) naming the rooms.

Resuming after `kill -9` at any moment: chunks whose append was followed by a saved progress
are never sent again; hints appended after the last save are sent again (harmless: the read
model keeps one state per message, the highest position wins); no chunk is skipped, because a
room's next chunk always starts right after its last saved end. A mark made just before the
kill is made again (harmless).

Errors: every port's `Unavailable` goes up (the job stops, exit 4, the checkpoint kept: run
again, it resumes); `OperatorError`s are raised before anything is changed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from gateway.domain.jobs import check_job_name
from gateway.domain.phases import check_who
from gateway.ports import PhaseStore, RoomCatalog
from migrator.domain.backfill import (
    KIND,
    PLAN_KIND,
    Decision,
    Limits,
    Order,
    Plan,
    PlannedRoom,
    Progress,
    Reading,
    RoomProgress,
    RoomState,
    check_chunk_rows,
    chunk_rows_counted,
    decode_plan,
    decode_progress,
    digest,
    order_rooms,
    pause_after,
    plan_key,
    throttle,
)
from migrator.domain.selection import Selection, resolve
from migrator.errors import (
    CheckpointMismatch,
    NotVisible,
    OperatorError,
    SourceNeverRan,
    UnreadableCheckpoint,
)
from migrator.ports import (
    CheckpointStore,
    JobLease,
    JobLocks,
    MonolithHealth,
    Pipeline,
    RoomCursors,
    RoomHistory,
)
from migrator.settings import BackfillSettings
from newcore.domain.hints import CursorHint, MessageHint, RangeHint
from newcore.ports import EventLog, ReadStore
from newcore.wire.hints import encode_hint

DAY_S = 86_400


class Controls(Protocol):
    """What the job asks its operator between units of work (`migrator.service.control.
    JobControls` is the real one)."""

    async def checkpoint(self) -> float | None: ...

    async def heartbeat(self, detail: Mapping[str, Any], *, force: bool = False) -> None: ...


class ProgressView(Protocol):
    """Where the job shows its progress over messages (a tqdm bar in the CLI)."""

    def start(self, total: int, done: int) -> None: ...

    def advance(self, rows: int) -> None: ...

    def note(self, fields: Mapping[str, str]) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    def start(self, total: int, done: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def note(self, fields: Mapping[str, str]) -> None:
        pass

    def close(self) -> None:
        pass


class BackfillMetrics:
    """What the job exports on /metrics while it runs (labelled by job name). Names end in
    their unit, counters in _total (Prometheus' conventions)."""

    def __init__(self, job: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, j = self.registry, ["job"]
        self.messages = Counter(
            "migrator_backfill_messages_total",
            "Messages covered by the range hints appended (progress, over messages)", j,
            registry=r,
        ).labels(job)  # fmt: skip
        hints = Counter(
            "migrator_backfill_hints_total",
            "Hints appended to the hints topic, by kind (range: a chunk; cursor: a read cursor of "
            "a room; closing: a room's last)",
            [*j, "kind"], registry=r,
        )  # fmt: skip
        self.range_hints = hints.labels(job, "range")
        self.closing_hints = hints.labels(job, "closing")
        self.cursor_hints = hints.labels(job, "cursor")
        self.append_seconds = Histogram(
            "migrator_backfill_append_seconds", "Time of one append to the hints topic", j,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r,
        ).labels(job)  # fmt: skip
        rooms = Gauge(
            "migrator_backfill_rooms", "Rooms of the plan by state (pending: not started yet)",
            [*j, "state"], registry=r,
        )  # fmt: skip
        self.rooms = {
            state: rooms.labels(job, state) for state in ("pending", "sending", "waiting", "done")
        }
        self.planned_messages = Gauge(
            "migrator_backfill_planned_messages", "Messages of the plan (rows measured at the start)",
            j, registry=r,
        ).labels(job)  # fmt: skip
        self.rate = Gauge(
            "migrator_backfill_rate_messages_per_second",
            "The rate sent at now, after throttling", j, registry=r,
        ).labels(job)  # fmt: skip
        self.target = Gauge(
            "migrator_backfill_target_rate_messages_per_second",
            "The rate asked for (the operator's override or the setting)", j, registry=r,
        ).labels(job)  # fmt: skip
        self.throttled = Counter(
            "migrator_backfill_throttled_total",
            "Looks at the monolith's health over a bound, by reason (each halves the rate)",
            [*j, "reason"], registry=r,
        )  # fmt: skip
        self.waiting_seconds = Counter(
            "migrator_backfill_throttle_wait_seconds_total",
            "Time spent sending nothing because the monolith or the pipe was over a bound", j,
            registry=r,
        ).labels(job)  # fmt: skip
        self.probe_seconds = Gauge(
            "migrator_monolith_probe_seconds",
            "Latency of the probe shaped like the monolith's hot read (latest 100 of a room)", j,
            registry=r,
        ).labels(job)  # fmt: skip
        self.threads_running = Gauge(
            "migrator_monolith_threads_running", "MariaDB's Threads_running at the last look", j,
            registry=r,
        ).labels(job)  # fmt: skip
        self.capture_lag = Gauge(
            "migrator_capture_lag_hints", "Hints appended and not yet consumed by the capturer", j,
            registry=r,
        ).labels(job)  # fmt: skip
        self.marked = Counter(
            "migrator_backfill_rooms_marked_total",
            "Rooms marked backfilled in the control store by this run", j, registry=r,
        ).labels(job)  # fmt: skip
        self.saves = Counter(
            "migrator_backfill_checkpoint_saves_total", "Checkpoint saves (one per append)", j,
            registry=r,
        ).labels(job)  # fmt: skip


@contextmanager
def metrics_endpoint(
    registry: CollectorRegistry, host: str, port: int, log: logging.Logger
) -> Iterator[int | None]:
    """Serves `registry` as Prometheus text on http://host:port/metrics while the context is
    open; yields the port, or None when there is none: port 0 (off), or a port that cannot be
    listened on (another job uses it): the job runs without an endpoint rather than not at all,
    and the log says so."""
    if port == 0:
        yield None
        return
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning(
            f"metrics endpoint not started: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "the job runs without one (another job on that port? set MIG_MIGRATOR_METRICS_PORT, "
            "0 for none)",
            extra={"metrics_host": host, "metrics_port": port},
        )
        yield None
        return
    log.info(f"metrics on http://{host}:{port}/metrics", extra={"metrics_port": port})
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """What the operator asked. `order` None: `hot` for a new plan, the plan's when resuming
    (an explicit order that differs from the checkpoint's is refused)."""

    job: str
    selection: Selection
    who: str
    order: Order | None = None
    restart: bool = False


@dataclass(frozen=True, slots=True)
class BackfillOutcome:
    job: str
    resumed: bool
    rooms: int  # rooms of the plan
    messages: int  # messages of the plan (measured at its start)
    marked: int  # rooms marked backfilled by this run
    sent: int  # messages covered by hints this run appended
    appends: int
    elapsed_s: float
    cursors: int = 0  # cursor hints this run appended


@dataclass(frozen=True, slots=True)
class Tuning:
    """How often the job looks at things: the defaults are for production, tests go faster."""

    health_every_s: float = 1.0  # a look at the monolith's health and the capture lag
    visible_every_s: float = 0.5  # a look at the waiting rooms' applied positions
    lease_every_s: float = 5.0  # a check that the job's hold is still ours
    ends_per_look: int = 4  # chunk ends read per room and statement batch
    plan_workers: int = 4  # rooms measured at once while planning
    max_waiting: int = 256  # rooms waiting to be visible before no new room starts
    cursor_page: int = 1000  # a room's read cursors read per statement


@dataclass
class _Run:
    """One run's moving parts (not saved: the checkpoint is `progress`)."""

    job: str
    who: str
    plan: Plan
    progress: Progress
    controls: Controls
    lease: JobLease
    planned: dict[int, PlannedRoom]
    rate: float
    target: float
    decision: Decision
    reading: Reading | None = None
    ends: dict[int, list[int]] = field(default_factory=dict)
    waiting_since: dict[int, float] = field(default_factory=dict)
    marked: int = 0
    sent: int = 0
    appends: int = 0
    cursor_hints: int = 0


class Backfill:
    def __init__(
        self,
        *,
        history: RoomHistory,
        cursors: RoomCursors,
        health: MonolithHealth,
        pipeline: Pipeline,
        hints: EventLog,
        read_store: ReadStore,
        phases: PhaseStore,
        catalog: RoomCatalog,
        checkpoints: CheckpointStore,
        locks: JobLocks,
        controls: Callable[[str], Controls],
        settings: BackfillSettings,
        range_page: int,
        target: str,
        metrics: BackfillMetrics | None = None,
        progress: ProgressView | None = None,
        log: logging.Logger | None = None,
        tuning: Tuning = Tuning(),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`cursors`: the monolith's read cursors, part of a room's history (each sent as a
        `CursorHint` before the room's closing hint); `range_page`: the capturer's range page
        (a chunk may not be larger); `target`: the
        hints topic and its partition count, as text (positions are meaningful only there);
        `controls(job)`: the job's operator controls; `metrics`: where the job counts (made for
        the job when None)."""
        self._history = history
        self._cursors = cursors
        self._health = health
        self._pipeline = pipeline
        self._hints = hints
        self._read_store = read_store
        self._phases = phases
        self._catalog = catalog
        self._checkpoints = checkpoints
        self._locks = locks
        self._controls = controls
        self._settings = settings
        self._chunk_rows = check_chunk_rows(settings.chunk_rows, range_page)
        self._target = target
        self.metrics = metrics
        self._progress = progress or NoProgress()
        self._log = log or logging.getLogger("migrator.backfill")
        self._tuning = tuning
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._limits = Limits(
            settings.max_probe_ms, settings.max_threads_running, settings.max_capture_lag
        )

    async def run(self, request: BackfillRequest) -> BackfillOutcome:
        job, who = check_job_name(request.job), check_who(request.who)
        started = self._monotonic()
        await self._live_capture_covers(job)
        holding = self._locks.hold(job)
        lease = await asyncio.to_thread(holding.__enter__)
        try:
            plan, progress, resumed = await self._plan_or_resume(job, request)
            controls = self._controls(job)
            # A job paused or panicked before it started obeys before anything changes.
            override = await controls.checkpoint()
            if not resumed:
                await self._save_new(job, plan, progress, request.restart)
            if self.metrics is None:
                self.metrics = BackfillMetrics(job)
            target = override if override is not None else self._settings.rate
            run = _Run(
                job, who, plan, progress, controls, lease,
                planned={room.room_id: room for room in plan.rooms},
                rate=target, target=target, decision=Decision(target, False),
            )  # fmt: skip
            self._log.info(
                f"job {job}: {'resumed' if resumed else 'planned'}: {len(plan.rooms)} rooms, "
                f"{plan.rows} messages, order {plan.order.value}; {progress.done_rooms} rooms "
                f"done, {progress.sent_rows} messages sent before",
                extra={"job": job, "rooms": len(plan.rooms), "messages": plan.rows,
                       "resumed": resumed, "order": plan.order.value},
            )  # fmt: skip
            await self._work(run)
        finally:
            holding.__exit__(None, None, None)
        elapsed = self._monotonic() - started
        outcome = BackfillOutcome(
            job, resumed, len(plan.rooms), plan.rows, run.marked, run.sent, run.appends, elapsed,
            run.cursor_hints,
        )  # fmt: skip
        self._log.info(
            f"job {job}: done: {len(plan.rooms)} rooms backfilled ({run.marked} marked by this "
            f"run), {run.sent} messages and {run.cursor_hints} cursors sent in {run.appends} "
            f"appends in {elapsed:.1f} s",
            extra={"job": job, "marked": run.marked, "sent": run.sent, "appends": run.appends,
                   "cursors": run.cursor_hints, "elapsed_s": round(elapsed, 3)},
        )  # fmt: skip
        return outcome

    # -- planning ------------------------------------------------------------------------

    async def _live_capture_covers(self, job: str) -> None:
        """The backfill brings each room's history up to its highest id when the job measures
        it; what is committed after that is live capture's: the binlog source's. A source that
        never checkpointed would, at its first start, begin at the binlog's end then and skip
        what was committed between the plan and that start, and the rooms would be marked
        backfilled over the gap. So a job starts (or resumes) only once the source has a
        checkpoint: from it on, every commit is captured, whenever the source runs."""
        if await self._pipeline.source_checkpoint() is None:
            raise SourceNeverRan(
                f"job {job}: the binlog source (chat-binlog-source) has never checkpointed: "
                "start the capture pipeline first (make pipeline) and run the command again. "
                "The backfill brings each room's history up to its highest id at the job's "
                "start; what is written after is captured live, only by a source already running"
            )

    async def _plan_or_resume(
        self, job: str, request: BackfillRequest
    ) -> tuple[Plan, Progress, bool]:
        fingerprint = await asyncio.to_thread(self._history.fingerprint)
        saved = None if request.restart else await asyncio.to_thread(self._checkpoints.load, job)
        if saved is not None:
            plan, progress = await self._resume(job, saved, fingerprint, request)
            return plan, progress, True
        room_ids = await asyncio.to_thread(resolve, request.selection, self._catalog)
        if not room_ids:
            raise OperatorError(
                f"ROOMS {request.selection.describe()!r} selects no room of the monolith: "
                "nothing to backfill (a larger percentage, or ids)"
            )
        planned = await self._measure(room_ids)
        order = request.order or Order.HOT
        activity: dict[int, int] = {}
        if order is Order.HOT:
            since = int(self._clock()) - self._settings.hot_days * DAY_S
            busy = [room.room_id for room in planned if room.rows]
            activity = await self._activity(busy, since)
        plan = Plan(
            job=job,
            fingerprint=fingerprint,
            target=self._target,
            selection=request.selection,
            order=order,
            rooms=tuple(order_rooms(planned, order, activity)),
            created_unix=round(self._clock(), 3),
        )
        progress = Progress(
            plan_digest=digest(plan.encode()), total_rooms=len(plan.rooms), total_rows=plan.rows
        )
        return plan, progress, False

    async def _resume(
        self, job: str, saved: tuple[str, str], fingerprint: str, request: BackfillRequest
    ) -> tuple[Plan, Progress]:
        kind, state = saved
        if kind != KIND:
            raise CheckpointMismatch(
                f"job {job}'s checkpoint is a {kind!r} job's, not a backfill's: give this "
                "backfill another --job name, or --restart to forget that checkpoint"
            )
        progress = decode_progress(job, state)
        found = await asyncio.to_thread(self._checkpoints.load, plan_key(job))
        if found is None or found[0] != PLAN_KIND or digest(found[1]) != progress.plan_digest:
            raise UnreadableCheckpoint(
                f"job {job}'s checkpoint has no plan that matches its progress (the plan "
                f"{plan_key(job)!r} is missing or was replaced): run again with --restart to "
                "forget it (the job starts over: hints already sent are sent again, harmless)"
            )
        plan = decode_plan(job, found[1])
        plan.refuse_other(fingerprint, self._target, request.selection)
        if request.order is not None and request.order is not plan.order:
            raise CheckpointMismatch(
                f"job {job}'s checkpoint takes rooms in {plan.order.value} order, this run asks "
                f"for {request.order.value}: leave --order out to resume it, add --restart to "
                "start over in the new order, or give another --job name"
            )
        if progress.total_rooms != len(plan.rooms):
            raise UnreadableCheckpoint(
                f"job {job}'s checkpoint counts {progress.total_rooms} rooms, its plan "
                f"{len(plan.rooms)}: run again with --restart to forget it"
            )
        return plan, progress

    async def _measure(self, room_ids: Sequence[int]) -> list[PlannedRoom]:
        """Every room's bounds, a few rooms at a time (short statements each)."""
        gate = asyncio.Semaphore(self._tuning.plan_workers)
        done = 0
        said = self._monotonic()

        async def one(room_id: int) -> PlannedRoom:
            nonlocal done, said
            async with gate:
                bounds = await asyncio.to_thread(self._history.bounds, room_id)
            done += 1
            if self._monotonic() - said >= 5:
                said = self._monotonic()
                self._log.info(f"planning: {done} of {len(room_ids)} rooms measured")
            if bounds is None:
                return PlannedRoom(room_id, 0, 0, 0)
            return PlannedRoom(room_id, bounds.low, bounds.high, bounds.rows)

        return list(await asyncio.gather(*(one(room) for room in room_ids)))

    async def _activity(self, room_ids: list[int], since: int) -> dict[int, int]:
        gate = asyncio.Semaphore(self._tuning.plan_workers)
        found: dict[int, int] = {}

        async def some(part: list[int]) -> None:
            async with gate:
                found.update(await asyncio.to_thread(self._history.activity, part, since))

        size = 200
        await asyncio.gather(*(some(room_ids[i : i + size]) for i in range(0, len(room_ids), size)))
        return found

    async def _save_new(self, job: str, plan: Plan, progress: Progress, restart: bool) -> None:
        """The plan first, then the progress that names it: a kill between the two leaves no
        progress, and the next run plans again."""
        if restart:
            await asyncio.to_thread(self._checkpoints.delete, job)
            await asyncio.to_thread(self._checkpoints.delete, plan_key(job))
        await asyncio.to_thread(self._checkpoints.save, plan_key(job), PLAN_KIND, plan.encode())
        await asyncio.to_thread(self._checkpoints.save, job, KIND, progress.encode())

    # -- the work ------------------------------------------------------------------------

    async def _work(self, run: _Run) -> None:
        t = self._tuning
        now = self._monotonic()
        for room in run.progress.rooms.values():
            if room.state is RoomState.WAITING:
                run.waiting_since[room.room_id] = now  # a resumed wait starts its clock again
        last_look = last_visible = -math.inf
        last_lease = now
        next_send_at = now
        self._progress.start(run.progress.total_rows, run.progress.sent_rows)
        try:
            while True:
                override = await run.controls.checkpoint()
                target = override if override is not None else self._settings.rate
                if target != run.target:
                    run.target = target
                    run.rate = min(run.rate, target)  # a lowered rate applies at once
                now = self._monotonic()
                if now - last_lease >= t.lease_every_s:
                    await asyncio.to_thread(run.lease.check)
                    last_lease = now
                if now - last_look >= t.health_every_s:
                    await self._look(run)
                    last_look = now
                if now - last_visible >= t.visible_every_s:
                    await self._settle(run)
                    last_visible = now
                await self._start_rooms(run)
                self._show(run)
                await run.controls.heartbeat(self._detail(run))
                if run.progress.finished:
                    break
                sending = self._rooms(run, RoomState.SENDING)
                if not sending:
                    self._refuse_stuck(run)
                    await self._sleep(t.visible_every_s)
                    continue
                if run.decision.wait:
                    assert self.metrics is not None
                    self.metrics.waiting_seconds.inc(t.health_every_s)
                    await self._sleep(t.health_every_s)
                    continue
                if now < next_send_at:
                    await self._sleep(min(next_send_at - now, t.visible_every_s))
                    continue
                began = self._monotonic()
                rows = await self._send(run, sending)
                next_send_at = began + pause_after(rows, run.rate, 0.0)
        finally:
            self._progress.close()
        await run.controls.heartbeat(self._detail(run), force=True)

    def _rooms(self, run: _Run, state: RoomState) -> list[RoomProgress]:
        return [room for room in run.progress.rooms.values() if room.state is state]

    async def _look(self, run: _Run) -> None:
        """The monolith's health and the capture lag; the throttle's decision."""
        sample = await asyncio.to_thread(self._health.sample)
        lag = await self._pipeline.capture_lag()
        reading = Reading(sample.probe_ms, sample.threads_running, lag)
        before = run.decision
        run.decision = throttle(run.rate, run.target, reading, self._limits)
        run.rate, run.reading = run.decision.rate, reading
        m = self.metrics
        assert m is not None
        m.probe_seconds.set(sample.probe_ms / 1000)
        m.threads_running.set(sample.threads_running)
        m.capture_lag.set(lag)
        m.rate.set(run.rate)
        m.target.set(run.target)
        for reason in run.decision.reasons:
            m.throttled.labels(run.job, reason).inc()
        health = {"probe_ms": round(sample.probe_ms, 2), "threads_running": sample.threads_running,
                  "capture_lag": lag}  # fmt: skip
        if run.decision.wait and run.decision.reasons != before.reasons:
            self._log.warning(
                f"job {run.job}: throttled ({', '.join(run.decision.reasons)} over the bound): "
                f"waiting, then sending at {run.rate:.0f} messages/s",
                extra={"job": run.job, "reasons": list(run.decision.reasons), **health},
            )
        elif before.wait and not run.decision.wait:
            self._log.info(
                f"job {run.job}: the monolith is healthy again: growing back from "
                f"{run.rate:.0f} to {run.target:.0f} messages/s",
                extra={"job": run.job, **health},
            )

    async def _start_rooms(self, run: _Run) -> None:
        """Takes the next rooms of the plan while slots are free. A room with no history (no
        message and no read cursor at the start) is done at once: everything it has came
        later, by live capture. A room with cursors and no message (a force=0 read of an empty
        room makes one) is sent like the others: `_send` appends its cursor hints."""
        plan, changed = run.plan, False
        while run.progress.next < len(plan.rooms):
            if len(self._rooms(run, RoomState.SENDING)) >= self._settings.rooms_in_parallel:
                break
            if len(self._rooms(run, RoomState.WAITING)) >= self._tuning.max_waiting:
                break
            room = plan.rooms[run.progress.next]
            run.progress = run.progress.started(RoomProgress(room.room_id, RoomState.SENDING))
            if room.rows == 0 and not await asyncio.to_thread(
                self._cursors.cursors, room.room_id, 0, 1
            ):
                await self._mark(run, room.room_id)
                changed = True
        if changed:
            await self._save(run)

    async def _send(self, run: _Run, sending: list[RoomProgress]) -> int:
        """One append: the next chunk of each room being sent (and, for each whose range ends,
        a cursor hint per read cursor of the room then its closing hint); then the progress is
        saved. Returns the messages counted.

        The cursor hints go before the closing hint, in the same append (same room, same
        partition, in order): once the read model has applied the closing hint's position, it
        has applied the cursors too. A room without messages (high 0) has no closing message
        hint: it waits on its last cursor hint, which gives an event (the row exists; cursors
        are never deleted by the monolith); if its cursors are gone meanwhile, nothing is left
        to wait for and it is marked at once."""
        ends = await asyncio.gather(*(self._next_end(run, room) for room in sending))
        last = [
            end is None or end >= run.planned[room.room_id].high
            for room, end in zip(sending, ends, strict=True)
        ]
        accounts = await asyncio.gather(
            *(self._accounts(room.room_id) for room, ends_here in zip(sending, last, strict=True)
              if ends_here)
        )  # fmt: skip
        closing_accounts = iter(accounts)
        records: list[tuple[int, bytes]] = []
        # room, end, its range ends here, closing index, cursor hints
        marks: list[tuple[RoomProgress, int | None, bool, int | None, int]] = []
        for room, end, ends_here in zip(sending, ends, last, strict=True):
            planned = run.planned[room.room_id]
            if end is not None:
                records.append(
                    (room.room_id, encode_hint(RangeHint(room.room_id, room.sent_to + 1, end)))
                )
            closing, cursors = None, 0
            if ends_here:
                for account in next(closing_accounts):
                    closing = len(records)  # the last cursor hint, unless a message hint follows
                    records.append((room.room_id, encode_hint(CursorHint(room.room_id, account))))
                    cursors += 1
                if planned.high > 0:
                    closing = len(records)
                    records.append(
                        (room.room_id, encode_hint(MessageHint(room.room_id, planned.high)))
                    )
            marks.append((room, end, ends_here, closing, cursors))
        m = self.metrics
        assert m is not None
        began = self._monotonic()
        positions = await self._hints.append(records) if records else []
        m.append_seconds.observe(self._monotonic() - began)
        rows = 0
        empty: list[int] = []  # rooms whose range ended with nothing to wait for
        for room, end, ends_here, closing, cursors in marks:
            planned = run.planned[room.room_id]
            counted = chunk_rows_counted(planned, room.sent_rows, self._chunk_rows, ends_here)
            updated = replace(
                room,
                sent_to=room.sent_to if end is None else end,
                sent_rows=room.sent_rows + counted,
            )
            if closing is not None:
                updated = replace(
                    updated,
                    state=RoomState.WAITING,
                    position=positions[closing],
                    waiting_since_unix=round(self._clock(), 3),
                )
                run.waiting_since[room.room_id] = self._monotonic()
            if ends_here:
                run.ends.pop(room.room_id, None)
                if planned.high > 0:
                    m.closing_hints.inc()
                elif closing is None:
                    empty.append(room.room_id)
            if end is not None:
                m.range_hints.inc()
            m.cursor_hints.inc(cursors)
            run.cursor_hints += cursors
            run.progress = run.progress.with_room(updated)
            rows += counted
        for room_id in empty:
            await self._mark(run, room_id)
        await self._save(run)
        run.sent += rows
        run.appends += 1 if records else 0
        m.messages.inc(rows)
        self._progress.advance(rows)
        return rows

    async def _accounts(self, room_id: int) -> list[int]:
        """The accounts with a read cursor in the room, in account order, page by page."""
        found: list[int] = []
        while True:
            after = found[-1] if found else 0
            page = await asyncio.to_thread(
                self._cursors.cursors, room_id, after, self._tuning.cursor_page
            )
            found.extend(cursor.account_id for cursor in page)
            if len(page) < self._tuning.cursor_page:
                return found

    async def _next_end(self, run: _Run, room: RoomProgress) -> int | None:
        """The end of the room's next chunk after its last one sent; None: the range is done."""
        planned = run.planned[room.room_id]
        if planned.high == 0:
            return None  # no message at the start: its cursors only
        ends = run.ends.get(room.room_id)
        if not ends:
            ends = await asyncio.to_thread(
                self._history.chunk_ends, room.room_id, room.sent_to, planned.high,
                self._chunk_rows, self._tuning.ends_per_look,
            )  # fmt: skip
            run.ends[room.room_id] = ends
        return ends.pop(0) if ends else None

    async def _settle(self, run: _Run) -> None:
        """Marks the waiting rooms whose closing hint the read model has applied."""
        waiting = self._rooms(run, RoomState.WAITING)
        if not waiting:
            return

        def positions() -> dict[int, int | None]:
            return {room.room_id: self._read_store.room_position(room.room_id) for room in waiting}

        applied = await asyncio.to_thread(positions)
        visible = [
            room
            for room in waiting
            if (at := applied[room.room_id]) is not None
            and room.position is not None
            and at >= room.position
        ]
        for room in visible:
            await self._mark(run, room.room_id)
        if visible:
            await self._save(run)

    async def _mark(self, run: _Run, room_id: int) -> None:
        await asyncio.to_thread(self._phases.mark_backfilled, room_id, run.who)
        run.progress = run.progress.done(room_id)
        run.waiting_since.pop(room_id, None)
        run.marked += 1
        assert self.metrics is not None
        self.metrics.marked.inc()
        self._log.info(
            f"job {run.job}: room {room_id} backfilled (its history is visible in the read model)",
            extra={"job": run.job, "room_id": room_id},
        )

    def _refuse_stuck(self, run: _Run) -> None:
        """When nothing is left to send and every room still waiting has waited longer than
        `visible_timeout_s`, the job stops (NotVisible), its checkpoint kept."""
        if (
            run.progress.next < len(run.plan.rooms)
            and len(self._rooms(run, RoomState.WAITING)) < self._tuning.max_waiting
        ):
            return
        now, limit = self._monotonic(), self._settings.visible_timeout_s
        waiting = self._rooms(run, RoomState.WAITING)
        if not waiting or any(now - run.waiting_since[r.room_id] <= limit for r in waiting):
            return
        rooms = sorted(r.room_id for r in waiting)
        shown = ", ".join(str(r) for r in rooms[:20]) + (" ..." if len(rooms) > 20 else "")
        raise NotVisible(
            f"job {run.job}: the read model did not apply the last hint of room(s) {shown} "
            f"within {limit:g} s (MIG_BACKFILL_VISIBLE_TIMEOUT_S): are chat-capturer and "
            "chat-updater running, and is anything in the dead-letter topic for these rooms? "
            "The rooms are not marked; run the command again, it waits for them again"
        )

    async def _save(self, run: _Run) -> None:
        await asyncio.to_thread(self._checkpoints.save, run.job, KIND, run.progress.encode())
        assert self.metrics is not None
        self.metrics.saves.inc()

    def _counts(self, run: _Run) -> dict[str, int]:
        p = run.progress
        return {
            "pending": p.total_rooms - p.next,
            "sending": len(self._rooms(run, RoomState.SENDING)),
            "waiting": len(self._rooms(run, RoomState.WAITING)),
            "done": p.done_rooms,
        }

    def _show(self, run: _Run) -> None:
        counts = self._counts(run)
        assert self.metrics is not None
        for state, value in counts.items():
            self.metrics.rooms[state].set(value)
        self.metrics.planned_messages.set(run.progress.total_rows)
        self._progress.note(
            {
                "rooms": f"{counts['done']}/{run.progress.total_rooms}",
                "waiting": str(counts["waiting"]),
                "cursors": str(run.cursor_hints),
                "rate": f"{run.rate:.0f}/s",
                "throttle": ",".join(run.decision.reasons) or "-",
            }
        )

    def _detail(self, run: _Run) -> dict[str, Any]:
        reading = run.reading
        return {
            "rooms": {"planned": run.progress.total_rooms, **self._counts(run)},
            "messages": {"planned": run.progress.total_rows, "sent": run.progress.sent_rows},
            "cursor_hints": run.cursor_hints,  # sent by this run (not kept in the checkpoint)
            "rate": round(run.rate, 3),
            "target_rate": run.target,
            "throttled": list(run.decision.reasons),
            "health": None
            if reading is None
            else {
                "probe_ms": round(reading.probe_ms, 2),
                "threads_running": reading.threads_running,
                "capture_lag": reading.capture_lag,
            },
        }
