"""The parity check (`chat-migrate parity ROOMS`): the monolith's state against the read model,
message by message and cursor by cursor, against a frontier, changing nothing on either side
(migrator/README.md, "Parity"; the rules and the result document: `migrator/domain/parity.py`).

One run, in order:

1. **Frontier.** `Pipeline.mark()` (the monolith's binlog position now), then wait until
   `Pipeline.reached` it (polled every `poll_s`, at most `frontier_timeout_s`): the read model
   then holds everything the monolith had committed at that moment. Not reached in time: every
   room is **late** (not clean, not different) and nothing is compared. Meanwhile, never
   holding the check up, the rooms are measured (`RoomHistory.bounds`: rows) for the progress
   bar's total and ETA.
2. **Scan** of each room (`scan_room`): its monolith rows (`MonolithReader.read_range`, pages
   of `page` rows, each page its own READ COMMITTED read, translated as the capturer does) and
   its live read-model messages (`ReadStore.after`, pages), both sides read at once a page
   ahead by reading threads, merged in id order (`domain.parity.merge`): memory holds a few
   pages whatever the room's size. Then its cursors (`RoomCursors`, pages) against the read
   model's (`ReadStore.cursor`, a few at once). Rows that differ are **candidates**, written to
   a spill file (a room with a million missing messages holds none of them in memory);
   unreadable legacy rows' differences too. Reading, translating and comparing is Python's
   work, one core per process: with a `ScanPool`, rooms are scanned by `workers` processes
   at once (each with its own clients), scans running ahead of the room being re-checked;
   without one, or for fewer than POOL_ROOMS_PER_WORKER rooms per process (starting one costs
   seconds), by a few threads here. Rooms are reported in the order asked.
3. **Re-check** of the candidates of a batch of rooms (`rooms_per_frontier`, scanned ahead:
   one frontier awaited per round for all of them, not one per room), up to `recheck_rounds`
   times: mark a new frontier (after the scans read every candidate's monolith state), wait
   until it is reached (late: the batch's rooms with candidates are late), then read each
   candidate again, the read model first, then the monolith
   (`domain.parity.recheck_*`): the same now is lag, not a difference; still different with
   the monolith's state unchanged is **confirmed** and reported; changed meanwhile (written
   during the check) goes to the next round from the state just read, and is never reported.
   Candidates still changing after the last round are **unsettled** (the room is late).
   From right after a frontier's mark until the candidates are read again, the monolith's
   states of the candidates are sampled every `sample_s` (at most `sample_limit` candidates):
   a read model that holds one of them holds a state the monolith had after the frontier, and
   is caught up with a row that changes faster than the pipeline's lag (the cursor of a client
   who posts or reads every second). The
   read model's side of a chunk of candidates is one range read when the scan found them
   close together (a room missing most of its messages), else one read per message.
4. **Outcome**, per room: different (a confirmed blocking difference), late, or clean; a clean
   room is marked (`PhaseStore.mark_parity_clean(room, positions, who)`, positions: the
   frontiers it was compared at) unless the request says not to. The result goes to a
   `ResultSink` as a stream (the JSON document: `adapters/report/json_report.py`): each
   room's differences, then its outcome; nothing is held.

Async, because the `Pipeline` port is (Kafka); the blocking reads (MariaDB, HBase) run in
worker threads (`asyncio.to_thread`), so the event loop stays free (the metrics endpoint, the
frontier's polls).

Nothing is written on either side: the monolith is only read (SELECT, SHOW), the read model
only read (`after`, `message`, `cursor`), Kafka only read (no group joined). The one write is
the clean mark in the control store.

Metrics (`ParityMetrics`, on /metrics while it runs): rows compared (`migrator_parity_
messages_total`, the progress), read-model messages and cursors read, differences by kind,
rooms by verdict, candidates and re-check outcomes, frontier waits. Logs: one JSON line per
room (verdict, counts, seconds), never a message's value (bodies are the customers' data).

Errors: a service down raises its `Unavailable` (exit 4: run again; the partial result is left
under its `.partial` name), ValueError from a broken adapter (a side out of id order) goes up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import logging
import multiprocessing
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.ports import PhaseStore, RoomCatalog
from migrator.domain.parity import (
    BLOCKING,
    DELETED,
    Changed,
    Confirmed,
    CursorCandidate,
    Difference,
    Header,
    Kind,
    LegacyRow,
    MessageCandidate,
    RoomResult,
    Summary,
    Tally,
    Verdict,
    compare_cursor,
    difference_from_json,
    difference_json,
    merge,
    recheck_cursor,
    recheck_message,
    state_digest,
    verdict_of,
)
from migrator.ports import Frontier, Pipeline, RoomCursors, RoomHistory
from migrator.settings import ParitySettings
from newcore.domain.model import MAX_ID, Message, ReadCursor
from newcore.domain.row_problems import RowProblem
from newcore.errors import Misconfigured, MonolithUnavailable, ReadStoreUnavailable, Unavailable
from newcore.ports import MonolithReader, ReadStore

POOL_ROOMS_PER_WORKER = 4  # fewer rooms than this per scanning process: scanned here
SAMPLES_PER_ROW = 64  # distinct monolith states remembered per candidate while waiting

# The digests of the states the monolith showed per candidate ("m", id) or ("c", account)
# since a frontier was marked (domain.parity.state_digest).
Seen = dict[tuple[str, int], set[bytes]]


class ResultSink(Protocol):
    """Where a run's result goes, as a stream (the JSON document's writer)."""

    def start_room(self, room_id: int) -> None: ...

    def difference(self, difference: Difference) -> None: ...

    def end_room(self, result: RoomResult) -> None: ...


class ProgressView(Protocol):
    """The progress bar over monolith rows compared (rate and ETA)."""

    def start(self, total: int | None) -> None: ...

    def total(self, total: int) -> None: ...

    def advance(self, rows: int) -> None: ...

    def note(self, fields: dict[str, str]) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    def start(self, total: int | None) -> None:
        pass

    def total(self, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def note(self, fields: dict[str, str]) -> None:
        pass

    def close(self) -> None:
        pass


class ParityMetrics:
    """What a parity run exports on /metrics (names end in their unit, counters in _total)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.messages = Counter(
            "migrator_parity_messages", "Monolith rows compared (soft-deleted ones included)",
            registry=r,
        )  # fmt: skip
        self.new_messages = Counter(
            "migrator_parity_new_messages", "Live read-model messages read by the scan", registry=r
        )
        self.cursors = Counter("migrator_parity_cursors", "Monolith cursors compared", registry=r)
        differences = Counter(
            "migrator_parity_differences", "Differences reported, by kind", ["kind"], registry=r
        )
        self.differences = {kind: differences.labels(kind.value) for kind in Kind}
        rooms = Counter("migrator_parity_rooms", "Rooms compared, by verdict", ["verdict"],
                        registry=r)  # fmt: skip
        self.rooms = {verdict: rooms.labels(verdict.value) for verdict in Verdict}
        self.candidates = Counter(
            "migrator_parity_candidates", "Rows that differed in a scan (re-checked)", registry=r
        )
        rechecks = Counter(
            "migrator_parity_rechecks", "Candidates re-read, by outcome", ["outcome"], registry=r
        )
        self.rechecks = {o: rechecks.labels(o) for o in ("settled", "confirmed", "changed")}
        self.frontier_wait = Histogram(
            "migrator_parity_frontier_wait_seconds",
            "Time from marking a frontier until the read model reached it (or the timeout)",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=r,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ParityRequest:
    rooms: Sequence[int]  # resolved (migrator.domain.selection), in the order to check them
    selection: str  # as the operator wrote it (Selection.describe)
    who: str
    mark: bool = True  # mark clean rooms in the control store


@dataclass(slots=True)
class ParityOutcome:
    run: str
    summary: Summary
    rooms: int


@dataclass(frozen=True, slots=True)
class ParityJob:
    """What `chat-migrate parity` opens: the check, and the monolith's room list its ROOMS are
    resolved against."""

    check: ParityCheck
    catalog: RoomCatalog


@dataclass(frozen=True, slots=True)
class Tuning:
    """How often the job looks: production defaults; tests go faster."""

    poll_s: float = 0.2  # between two looks at whether a frontier is reached
    measure_workers: int = 4  # rooms measured at once for the progress bar
    sample_limit: int = 1000  # candidates whose states are sampled while a frontier is awaited
    sample_s: float = 0.05  # between two samples (a state that lasts longer is seen)
    # Rooms scanned at once in this process (no pool). One: measured on this 2-core machine
    # under load, scans sharing a process's interpreter lock ran 2.4 times slower than one
    # after the other (each scan still reads its two sides at once).
    scan_threads: int = 1
    rooms_ahead: int = 64  # rooms scanned (or being scanned) ahead of the ones being written
    rooms_per_frontier: int = 64  # rooms whose candidates are re-checked at one frontier
    rooms_per_chunk: int = 8  # rooms sent to a scanning process at once


class _Room:
    """A room between its scan and its outcome: its result so far, its candidates (messages,
    cursors: the current round's spills), its unreadable rows' and confirmed differences."""

    def __init__(
        self,
        room_id: int,
        scan: RoomScan | None,
        result: RoomResult,
        late: str | None,
        metrics: ParityMetrics,
    ) -> None:
        self.room_id = room_id
        self.scan = scan
        self.result = result
        self.late = late
        self._metrics = metrics
        self.spills = [_Spill(None), _Spill(None)]
        self.unreadable = _Spill(None)
        self.confirmed = _Spill(None)
        if scan is not None:
            self.spills = [scan.messages.open(), scan.cursor_candidates.open()]
            self.unreadable = scan.unreadable.open()
            self.confirmed = self.spills[0].sibling("confirmed")

    @classmethod
    def of(
        cls,
        room_id: int,
        scan: RoomScan | None,
        compared_at: Frontier,
        late: str | None,
        metrics: ParityMetrics,
    ) -> _Room:
        if scan is None:
            return cls(room_id, None, RoomResult(room_id, Verdict.LATE), late, metrics)
        result = RoomResult(
            room_id, Verdict.CLEAN, compared_at=compared_at, legacy_rows=scan.legacy_rows,
            new_messages=scan.new_messages, cursors=scan.cursors,
        )  # fmt: skip
        metrics.cursors.inc(scan.cursors)
        metrics.candidates.inc(scan.messages.count + scan.cursor_candidates.count)
        return cls(room_id, scan, result, None, metrics)

    @property
    def left(self) -> int:
        """Candidates still to re-check."""
        return sum(spill.count for spill in self.spills)

    def confirm(self, difference: Difference) -> None:
        """A difference confirmed by a re-check: written with the room's outcome."""
        self.confirmed.add(json.dumps(difference_json(difference), ensure_ascii=False))
        self.result.counts[difference.kind] += 1
        self._metrics.differences[difference.kind].inc()

    def close(self) -> None:
        for spill in (*self.spills, self.unreadable, self.confirmed):
            spill.close()


class _Scans:
    """Where rooms are scanned: a pool of processes, or threads of this process (then the
    progress shows page by page)."""

    def __init__(self, check: ParityCheck, workdir: Path, pool: ScanPool | None) -> None:
        self._check = check
        self._workdir = workdir
        self._pool = pool
        self._threads = (
            ThreadPoolExecutor(check._tuning.scan_threads, thread_name_prefix="parity-scan")
            if pool is None
            else None
        )

    def submit(self, rooms: list[int]) -> list[asyncio.Future[RoomScan]]:
        check = self._check
        page = check._settings.page
        if self._pool is not None:

            def scanned(scan: RoomScan) -> None:  # the progress, as each room comes in
                check._progress.advance(scan.legacy_rows)
                check._metrics.messages.inc(scan.legacy_rows)
                check._metrics.new_messages.inc(scan.new_messages)

            return self._pool.submit(rooms, page, self._workdir, scanned)
        assert self._threads is not None

        def advance(legacy: int, new: int) -> None:
            check._progress.advance(legacy)
            check._metrics.messages.inc(legacy)
            check._metrics.new_messages.inc(new)

        return [
            asyncio.wrap_future(
                self._threads.submit(
                    scan_room, check._reader, check._store, check._cursors, room, page,
                    self._workdir, advance,
                )
            )
            for room in rooms
        ]  # fmt: skip

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)


class ParityCheck:
    def __init__(
        self,
        reader: MonolithReader,
        store: ReadStore,
        cursors: RoomCursors,
        pipeline: Pipeline,
        phases: PhaseStore,
        settings: ParitySettings,
        *,
        history: RoomHistory | None = None,
        metrics: ParityMetrics | None = None,
        progress: ProgressView | None = None,
        log: logging.Logger | None = None,
        tuning: Tuning = Tuning(),
        scan_pool: ScanPool | None = None,
    ) -> None:
        """`scan_pool`: processes that scan rooms (several rooms at once, each on a core);
        None: every room is scanned in this process, in a worker thread."""
        self._reader = reader
        self._store = store
        self._cursors = cursors
        self._pipeline = pipeline
        self._phases = phases
        self._settings = settings
        self._history = history
        self._metrics = metrics or ParityMetrics()
        self._progress = progress or NoProgress()
        self._log = log or logging.getLogger("chat-migrate.parity")
        self._tuning = tuning
        self._pool = scan_pool

    async def run(
        self,
        request: ParityRequest,
        open_sink: Callable[[Header], ResultSink],
        on_room: Callable[[RoomResult], None] | None = None,
    ) -> ParityOutcome:
        """Checks every room of the request; `open_sink(header)` is called once the first
        frontier is marked, then gets each room's differences and outcome. The caller closes
        the sink with the returned summary."""
        began, started_at = time.monotonic(), time.time()
        run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at)) + "-" + uuid.uuid4().hex[:6]
        self._progress.start(None)
        # Processes pay off over many rooms: each takes seconds to start (a spawned
        # interpreter imports the project), and a room is scanned by one of them.
        pool = self._pool
        if pool is not None and len(request.rooms) < POOL_ROOMS_PER_WORKER * pool.workers:
            pool = None
        if pool is not None:
            pool.warm()
        # The rooms are measured meanwhile (the bar's total and ETA), never holding the check up.
        measuring = asyncio.ensure_future(self._measure(request.rooms))
        measuring.add_done_callback(self._measured)
        frontier = await self._pipeline.mark()
        waited = await self._wait(frontier)
        s = self._settings
        sink = open_sink(
            Header(
                run=run, started_at=started_at, selection=request.selection, who=request.who,
                frontier=frontier,
                settings={"page": s.page, "recheck_rounds": s.recheck_rounds,
                          "frontier_timeout_s": s.frontier_timeout_s, "mark": request.mark},
            )
        )  # fmt: skip
        late = None if waited else self._late(frontier)
        if late:
            self._log.warning("the pipeline did not reach the first frontier: every room is late",
                              extra={"frontier": frontier.binlog,
                                     "timeout_s": s.frontier_timeout_s})  # fmt: skip
        tally = Tally()
        with tempfile.TemporaryDirectory(prefix="chat-parity-") as workdir:
            window: collections.deque[tuple[int, asyncio.Future[RoomScan] | None]] = (
                collections.deque()
            )
            rooms = iter(request.rooms)
            scans = _Scans(self, Path(workdir), pool)

            def fill() -> None:
                # Scans run ahead of the rooms being re-checked and written (every process
                # busy, and many rooms' candidates re-checked at one frontier), rooms sent to
                # be scanned in chunks.
                while len(window) < self._tuning.rooms_ahead:
                    chunk = list(itertools.islice(rooms, self._tuning.rooms_per_chunk))
                    if not chunk:
                        return
                    if late:
                        window.extend((room, None) for room in chunk)
                    else:
                        window.extend(zip(chunk, scans.submit(chunk), strict=True))

            try:
                fill()
                while window:
                    # The next rooms, once scanned, their candidates re-checked together: one
                    # frontier awaited per round for all of them, not one per room.
                    batch: list[tuple[int, RoomScan | None]] = []
                    while window and len(batch) < self._tuning.rooms_per_frontier:
                        room, scanning = window.popleft()
                        batch.append((room, None if scanning is None else await scanning))
                        fill()
                    for result in await self._rooms(batch, frontier, late, request, sink):
                        tally.add(result)
                        if on_room is not None:
                            on_room(result)
            finally:
                for _, scanning in window:
                    if scanning is not None:
                        scanning.cancel()
                        with contextlib.suppress(BaseException):
                            await scanning
                scans.close()
                measuring.cancel()
                with contextlib.suppress(BaseException):
                    await measuring
                self._progress.close()
        return ParityOutcome(
            run, tally.summary(time.time(), time.monotonic() - began), len(request.rooms)
        )

    # -- frontiers ---------------------------------------------------------------------------

    async def _wait(self, frontier: Frontier) -> bool:
        """Polls until the read model reached `frontier`; False at the timeout."""
        began = time.monotonic()
        deadline = began + self._settings.frontier_timeout_s
        try:
            while True:
                if await self._pipeline.reached(frontier):
                    return True
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(self._tuning.poll_s)
        finally:
            self._metrics.frontier_wait.observe(time.monotonic() - began)

    def _late(self, frontier: Frontier) -> str:
        return (
            f"the pipeline did not reach binlog {frontier.binlog} within "
            f"{self._settings.frontier_timeout_s:g} s (the binlog source, the capturer and the "
            "updater must all run and keep up: make pipeline; or raise MIG_PARITY_FRONTIER_TIMEOUT_S)"
        )

    def _measured(self, measuring: asyncio.Future[int | None]) -> None:
        if measuring.cancelled():
            return
        error = measuring.exception()
        if error is not None:  # the bar goes without a total; the check goes on
            self._log.warning("rooms not measured", extra={"reason": repr(error)})
        elif (total := measuring.result()) is not None:
            self._progress.total(total)

    async def _measure(self, rooms: Sequence[int]) -> int | None:
        """Rows of every room (the progress bar's total), a few rooms at a time; None without
        a history port."""
        history = self._history
        if history is None:
            return None
        gate = asyncio.Semaphore(self._tuning.measure_workers)

        async def rows(room: int) -> int:
            async with gate:
                bounds = await asyncio.to_thread(history.bounds, room)
            return 0 if bounds is None else bounds.rows

        return sum(await asyncio.gather(*(rows(room) for room in rooms)))

    # -- one room ----------------------------------------------------------------------------

    async def _rooms(
        self,
        batch: list[tuple[int, RoomScan | None]],
        compared_at: Frontier,
        late: str | None,
        request: ParityRequest,
        sink: ResultSink,
    ) -> list[RoomResult]:
        """Rooms scanned (None: not compared, late): their candidates re-checked together, one
        frontier per round for every room of the batch, then each room's outcome written, in
        order."""
        began = time.monotonic()
        rooms = [_Room.of(room, scan, compared_at, late, self._metrics) for room, scan in batch]
        try:
            await self._settle([r for r in rooms if r.scan is not None])
            results = []
            for room in rooms:
                results.append(await self._finish(room, request, sink))
                room.result.seconds += time.monotonic() - began
        finally:
            for room in rooms:
                room.close()
        return results

    async def _settle(self, rooms: list[_Room]) -> None:
        """The re-check rounds of the rooms' candidates (module docstring, 3)."""
        for _ in range(self._settings.recheck_rounds):
            active = [room for room in rooms if room.left]
            if not active:
                return
            left = sum(room.left for room in active)
            frontier = await self._pipeline.mark()
            seen: dict[int, Seen] = {room.room_id: {} for room in active}
            # From right after the mark until the candidates are read again, the monolith's
            # states of the candidates are sampled (few candidates only): every one of them is
            # a state the monolith had after the frontier.
            rounds = [(room, list(room.spills)) for room in active]  # this round's candidates
            stop = asyncio.Event()
            sampling = (
                asyncio.ensure_future(self._sampling(rounds, seen, stop))
                if left <= self._tuning.sample_limit
                else None
            )
            try:
                if not await self._wait(frontier):
                    for room in active:
                        room.late = (
                            self._late(frontier)
                            + f"; {room.left} row(s) of the room could not be re-checked"
                        )
                    return
                for room in active:
                    room.result.settled_at = frontier
                    room.spills = list(
                        await asyncio.to_thread(
                            self._recheck, room.room_id, room.result, room.spills[0],
                            room.spills[1], seen[room.room_id], room.confirm,
                        )
                    )  # fmt: skip
            finally:
                stop.set()
                if sampling is not None:
                    await sampling  # the sample under way ends first
                for room, spills in rounds:  # a re-checked round's candidates are done with
                    if room.spills != spills:
                        for spill in spills:
                            spill.close()

    async def _finish(self, room: _Room, request: ParityRequest, sink: ResultSink) -> RoomResult:
        """A room's outcome: its differences (unreadable rows' as the scan met them, then the
        confirmed ones) and result to the sink, its clean mark."""
        result = room.result
        began = time.monotonic()
        sink.start_room(room.room_id)
        for spill in (room.unreadable, room.confirmed):
            for lines in spill.chunks(self._settings.page):
                for line in lines:
                    difference = difference_from_json(json.loads(line))
                    sink.difference(difference)
                    if spill is room.unreadable:
                        result.counts[difference.kind] += 1
                        self._metrics.differences[difference.kind].inc()
        unsettled = 0 if room.late else room.left
        blocking = sum(n for kind, n in result.counts.items() if kind in BLOCKING)
        result.verdict, result.reason = verdict_of(blocking, unsettled, room.late)
        result.unsettled = unsettled
        if result.verdict is Verdict.CLEAN and request.mark:
            await asyncio.to_thread(
                self._phases.mark_parity_clean, room.room_id, result.positions(), request.who
            )
            result.marked_clean = True
        result.seconds = (room.scan.seconds if room.scan else 0.0) + time.monotonic() - began
        sink.end_room(result)
        self._metrics.rooms[result.verdict].inc()
        self._log.info(
            "room compared",
            extra={
                "room": room.room_id, "verdict": result.verdict.value, "reason": result.reason,
                "rows": result.legacy_rows, "cursors": result.cursors,
                "differences": {k.value: n for k, n in result.counts.items() if n},
                "rechecked": result.rechecked, "unsettled": unsettled,
                "marked_clean": result.marked_clean, "seconds": round(result.seconds, 3),
            },
        )  # fmt: skip
        return result

    async def _sampling(
        self, rounds: list[tuple[_Room, list[_Spill]]], seen: dict[int, Seen], stop: asyncio.Event
    ) -> None:
        """Samples the candidates' monolith states every `sample_s` until `stop` is set."""

        def sample() -> None:
            for room, (messages, cursors) in rounds:
                self._sample(room.room_id, messages, cursors, seen[room.room_id])

        while not stop.is_set():
            await asyncio.to_thread(sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._tuning.sample_s)

    # -- a re-check round (a worker thread) ----------------------------------------------------

    def _recheck(
        self,
        room: int,
        result: RoomResult,
        messages: _Spill,
        cursors: _Spill,
        seen: Seen,
        emit: Callable[[Difference], None],
    ) -> tuple[_Spill, _Spill]:
        """One round over every candidate (the read model read first, then the monolith):
        confirmed ones emitted, changed ones into the returned spills (the next round's). The
        spills read stay open: the caller closes them once nothing samples them."""
        page = self._settings.page
        next_messages, next_cursors = messages.sibling("m"), cursors.sibling("c")
        try:
            for lines in messages.chunks(page):
                chunk = [_message_candidate(room, line) for line in lines]
                new_now = self._new_side(room, chunk)
                read = self._reader.read_messages([(room, c.message_id) for c in chunk])
                for candidate in chunk:
                    legacy_now = read.live.get((room, candidate.message_id))
                    self._judge(
                        recheck_message(
                            candidate, legacy_now, new_now.get(candidate.message_id),
                            frozenset(seen.get(("m", candidate.message_id), ())),
                        ),
                        emit, next_messages, next_cursors,
                    )  # fmt: skip
                result.rechecked += len(chunk)
            for lines in cursors.chunks(page):
                cursor_chunk = [_cursor_candidate(room, line) for line in lines]
                accounts = [c.account_id for c in cursor_chunk]
                new_cursors = dict(
                    zip(
                        accounts,
                        readers().map(lambda a: self._store.cursor(room, a), accounts),
                        strict=True,
                    )
                )
                legacy_cursors = self._reader.read_cursors(
                    [(room, c.account_id) for c in cursor_chunk]
                )
                for cursor_candidate in cursor_chunk:
                    account = cursor_candidate.account_id
                    self._judge(
                        recheck_cursor(
                            cursor_candidate, legacy_cursors.get((room, account)),
                            new_cursors[account], frozenset(seen.get(("c", account), ())),
                        ),
                        emit, next_messages, next_cursors,
                    )  # fmt: skip
                result.rechecked += len(cursor_chunk)
        except BaseException:
            next_messages.close()
            next_cursors.close()
            raise
        return next_messages, next_cursors

    def _sample(self, room: int, messages: _Spill, cursors: _Spill, seen: Seen) -> None:
        """The monolith's current states of the candidates (their digests), remembered per
        row (at most SAMPLES_PER_ROW distinct ones: past that, nothing more is taken, which can
        only settle fewer rows, never report one)."""

        def remember(key: tuple[str, int], digest: bytes) -> None:
            states = seen.setdefault(key, set())
            if len(states) < SAMPLES_PER_ROW:
                states.add(digest)

        page = self._settings.page
        for lines in messages.chunks(page):
            ids = [_message_candidate(room, line).message_id for line in lines]
            read = self._reader.read_messages([(room, mid) for mid in ids])
            for mid in ids:
                remember(("m", mid), state_digest(read.live.get((room, mid))))
        for lines in cursors.chunks(page):
            accounts = [_cursor_candidate(room, line).account_id for line in lines]
            found = self._reader.read_cursors([(room, a) for a in accounts])
            for account in accounts:
                remember(("c", account), state_digest(found.get((room, account))))

    def _judge(
        self,
        outcome: object,
        emit: Callable[[Difference], None],
        next_messages: _Spill,
        next_cursors: _Spill,
    ) -> None:
        if isinstance(outcome, Confirmed):
            self._metrics.rechecks["confirmed"].inc()
            for difference in outcome.differences:
                emit(difference)
        elif isinstance(outcome, Changed):
            self._metrics.rechecks["changed"].inc()
            if isinstance(outcome.next, MessageCandidate):
                next_messages.add(_message_line(outcome.next))
            else:
                next_cursors.add(_cursor_line(outcome.next))
        else:
            self._metrics.rechecks["settled"].inc()

    def _new_side(self, room: int, chunk: list[MessageCandidate]) -> dict[int, Message]:
        """The read model's messages of the chunk's candidates: one range read when the scan
        found them close together (few agreeing rows between them), else one read each."""
        wanted = {c.message_id for c in chunk}
        between = [c.between for c in chunk[1:]]
        known = [b for b in between if b is not None]
        if len(chunk) > 1 and len(known) == len(between) and sum(known) <= len(chunk):
            return self._new_range(room, chunk[0].message_id, chunk[-1].message_id, wanted)
        found: dict[int, Message] = {}
        ids = sorted(wanted)  # one read each, a few at once
        for message_id, message in zip(
            ids, readers().map(lambda m: self._store.message(room, m), ids), strict=True
        ):
            if message is not None:
                found[message_id] = message
        return found

    def _new_range(self, room: int, first: int, last: int, wanted: set[int]) -> dict[int, Message]:
        found: dict[int, Message] = {}
        after = first - 1
        while True:
            page = self._store.after(room, after, self._settings.page)
            for message in page:
                if message.message_id > last:
                    return found
                if message.message_id in wanted:
                    found[message.message_id] = message
            if not page:
                return found
            after = page[-1].message_id


def legacy_rows(
    live: Sequence[Message], deleted: Sequence[int], problems: Iterable[RowProblem]
) -> list[LegacyRow]:
    """One page of `read_range` as LegacyRows in id order, each with its rows' problems."""
    reasons: dict[int, list[str]] = {}
    for problem in problems:
        if problem.table == "messages":
            reasons.setdefault(problem.key, []).append(problem.reason)
    if reasons:
        rows = [LegacyRow(m.message_id, m, tuple(reasons.get(m.message_id, ()))) for m in live]
    else:  # the common case, kept cheap: one object per row
        rows = [LegacyRow(m.message_id, m) for m in live]
    if deleted:
        rows += [LegacyRow(mid, None, tuple(reasons.get(mid, ()))) for mid in deleted]
        rows.sort(key=lambda row: row.message_id)
    return rows


# -- reading a page ahead ------------------------------------------------------------------------

Page = TypeVar("Page")
Place = TypeVar("Place")

_READERS: ThreadPoolExecutor | None = None
_READERS_LOCK = threading.Lock()
READERS = 4  # threads of a process that read pages (a room's two sides at once) and cursors


def readers() -> ThreadPoolExecutor:
    """This process's reading threads (made on first use): both sides of a room are read at
    once, a page ahead, while the merge compares."""
    global _READERS
    with _READERS_LOCK:
        if _READERS is None:
            _READERS = ThreadPoolExecutor(READERS, thread_name_prefix="parity-read")
        return _READERS


def ahead(
    read: Callable[[Place], tuple[Page, Place | None]], start: Place, pool: Executor
) -> Iterator[Page]:
    """The pages `read(place) -> (page, next place or None at the end)` gives from `start`,
    each next page asked for as soon as the one before is in (one page ahead of the reader).
    An error of a read is raised here."""
    coming: Future[tuple[Page, Place | None]] | None = pool.submit(read, start)
    while coming is not None:
        got, place = coming.result()
        coming = None if place is None else pool.submit(read, place)
        yield got


# -- candidates spilled ----------------------------------------------------------------------


class _Spill:
    """Lines of JSON (candidates, differences) in a file of their own, written then read, and
    removed when closed: a room's candidates never sit in memory, whatever their number. The
    file is made on the first line (an empty spill is no file)."""

    def __init__(self, path: Path | None, count: int = 0) -> None:
        """`path` None: an empty spill that takes no line (a room not scanned)."""
        self._path = path
        self.count = count
        self._out: IO[str] | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            raise RuntimeError("an empty spill has no file")
        return self._path

    def add(self, line: str) -> None:
        if self._out is None:
            self._out = self.path.open("a", encoding="utf-8")
        self._out.write(line + "\n")
        self.count += 1

    def finish(self) -> _SpillFile:
        """Done writing: what another process needs to read it."""
        if self._out is not None:
            self._out.close()
            self._out = None
        return _SpillFile(str(self._path) if self._path is not None else "", self.count)

    def chunks(self, size: int) -> Iterator[list[str]]:
        self.finish()
        if not self.count:
            return
        with self.path.open(encoding="utf-8") as lines:
            chunk: list[str] = []
            for line in lines:
                chunk.append(line)
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    def sibling(self, kind: str) -> _Spill:
        """A new spill beside this one (the next round's)."""
        return _Spill(self.path.with_name(f"{self.path.stem}.{kind}{uuid.uuid4().hex[:8]}.jsonl"))

    def close(self) -> None:
        self.finish()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class _SpillFile:
    """A spill as it crosses from a scanning process: its file and its number of lines."""

    path: str
    count: int

    def open(self) -> _Spill:
        return _Spill(Path(self.path) if self.path else None, self.count)


@dataclass(frozen=True, slots=True)
class RoomScan:
    """What the scan of a room found: its counts, and spills of its unreadable rows'
    differences, its message candidates and its cursor candidates (files in the run's work
    directory, which the re-check reads and removes)."""

    room_id: int
    legacy_rows: int
    new_messages: int
    cursors: int
    unreadable: _SpillFile
    messages: _SpillFile
    cursor_candidates: _SpillFile
    counted_here: bool = True  # its progress was counted page by page (a scan in this process)
    seconds: float = 0.0


def scan_room(
    reader: MonolithReader,
    store: ReadStore,
    cursors: RoomCursors,
    room: int,
    page: int,
    workdir: Path,
    advance: Callable[[int, int], None] | None = None,
    reads: Executor | None = None,
) -> RoomScan:
    """Both sides of a room in pages, each read a page ahead by `reads` (default: this
    process's `readers()`), merged in id order; then its cursors. Blocking: run in a worker
    thread or a scanning process. `advance(legacy rows, read-model messages)` as pages come."""
    began = time.monotonic()
    stem = workdir / f"{room}-{uuid.uuid4().hex[:8]}"
    unreadable = _Spill(stem.with_suffix(".unreadable.jsonl"))
    messages = _Spill(stem.with_suffix(".messages.jsonl"))
    cursor_candidates = _Spill(stem.with_suffix(".cursors.jsonl"))
    counts = {"legacy": 0, "new": 0}

    pool = reads or readers()

    def legacy_page(first: int) -> tuple[list[LegacyRow], int | None]:
        read = reader.read_range(room, first, MAX_ID, page)
        rows = legacy_rows(read.live, read.deleted, read.problems)
        last = read.last_seen
        if last is None or len(rows) < page or last >= MAX_ID:
            return rows, None  # a short page is the last: no read to learn nothing follows
        return rows, last + 1

    def new_page(after: int) -> tuple[list[Message], int | None]:
        found = store.after(room, after, page)
        return found, None if len(found) < page else found[-1].message_id

    def counted_legacy() -> Iterator[LegacyRow]:
        for rows in ahead(legacy_page, 0, pool):
            counts["legacy"] += len(rows)
            if advance is not None:
                advance(len(rows), 0)
            yield from rows

    def counted_new() -> Iterator[Message]:
        for found in ahead(new_page, 0, pool):
            counts["new"] += len(found)
            if advance is not None:
                advance(0, len(found))
            yield from found

    try:
        for item in merge(room, counted_legacy(), counted_new()):
            if isinstance(item, Difference):
                unreadable.add(json.dumps(difference_json(item), ensure_ascii=False))
            else:
                messages.add(_message_line(item))
        after, seen_cursors = 0, 0
        while True:
            found_cursors = cursors.cursors(room, after, page)
            # The read model's cursors, a few reads at once (one read per cursor).
            theirs = pool.map(lambda c: store.cursor(room, c.account_id), found_cursors)
            for legacy, new in zip(found_cursors, theirs, strict=True):
                candidate = compare_cursor(room, legacy, new)
                if candidate is not None:
                    cursor_candidates.add(_cursor_line(candidate))
            seen_cursors += len(found_cursors)
            if len(found_cursors) < page:
                break
            after = found_cursors[-1].account_id
    except BaseException:
        for spill in (unreadable, messages, cursor_candidates):
            spill.close()
        raise
    return RoomScan(
        room, counts["legacy"], counts["new"], seen_cursors, unreadable.finish(),
        messages.finish(), cursor_candidates.finish(), seconds=time.monotonic() - began,
    )  # fmt: skip


# -- scanning processes ------------------------------------------------------------------------

# What a scanning process reads with, built once in it by the pool's factory.
Sides = tuple[MonolithReader, ReadStore, RoomCursors]
_SIDES: Sides | _ScanFailed | None = None


_ROOM_THREADS: ThreadPoolExecutor | None = None


def _start_scanning(factory: Callable[[], Sides], threads: int) -> None:
    """A scanning process's start: its clients (or why it has none: said at its first scan,
    where the run can hear it; an initializer's error would only break the pool), and the
    threads that scan several of its rooms at once (their waits overlap)."""
    global _SIDES, _ROOM_THREADS
    logging.getLogger().setLevel(logging.WARNING)
    _ROOM_THREADS = ThreadPoolExecutor(threads, thread_name_prefix="parity-scan")
    try:
        _SIDES = factory()
    except Exception as exc:
        _SIDES = _ScanFailed.of(exc)


@dataclass(frozen=True, slots=True)
class _ScanFailed:
    """An error in a scanning process, as it crosses back (an exception of ours may not be
    rebuilt from its pickled form): which of our kinds it was, and its text."""

    kind: str
    text: str

    @classmethod
    def of(cls, exc: Exception) -> _ScanFailed:
        kind = (
            "monolith" if isinstance(exc, MonolithUnavailable)
            else "read-model" if isinstance(exc, ReadStoreUnavailable)
            else "unavailable" if isinstance(exc, Unavailable)
            else "misconfigured" if isinstance(exc, Misconfigured)
            else "value" if isinstance(exc, ValueError)
            else "other"
        )  # fmt: skip
        return cls(kind, f"{type(exc).__name__}: {exc}")

    def error(self) -> BaseException:
        if self.kind == "monolith":
            return MonolithUnavailable(self.text)
        if self.kind == "read-model":
            return ReadStoreUnavailable(self.text)
        if self.kind == "unavailable":
            return Unavailable(self.text)
        if self.kind == "misconfigured":
            return Misconfigured(self.text)
        if self.kind == "value":
            return ValueError(self.text)
        return RuntimeError(f"a scanning process failed: {self.text}")


def _warm() -> None:
    """Nothing: a task that makes a process start (and build its clients)."""


def _scan_in_process(rooms: list[int], page: int, workdir: str) -> list[RoomScan | _ScanFailed]:
    """Scans `rooms` (a few at once, on this process's threads); each room's scan or why not."""
    sides, threads = _SIDES, _ROOM_THREADS
    if sides is None or threads is None:
        return [_ScanFailed("other", "a scanning process without its clients")] * len(rooms)
    if isinstance(sides, _ScanFailed):
        return [sides] * len(rooms)
    reader, store, cursors = sides

    def one(room: int) -> RoomScan | _ScanFailed:
        try:
            scan = scan_room(reader, store, cursors, room, page, Path(workdir))
        except Exception as exc:
            return _ScanFailed.of(exc)
        return dataclasses.replace(scan, counted_here=False)

    return list(threads.map(one, rooms))


class ScanPool:
    """`workers` processes that scan rooms (reading, translating and comparing both sides is
    Python's work: one core per process, where threads would share one), each `threads` rooms
    at once (default one: several scans sharing an interpreter lock were 2.4 times slower, see
    `Tuning.scan_threads`). Rooms go to a process in chunks. Each process builds its own clients with `factory` (picklable: a module-level
    function and settings) when it starts; they are started on first use (a spawned
    interpreter: no state of this process is inherited) and stopped by `close`."""

    def __init__(self, factory: Callable[[], Sides], workers: int, threads: int = 1) -> None:
        if workers < 1 or threads < 1:
            raise ValueError(f"a scan pool has one process at least, got {workers}")
        self.workers = workers
        self.threads = threads
        self._factory = factory
        self._executor: ProcessPoolExecutor | None = None

    def _started(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_scanning, initargs=(self._factory, self.threads),
            )  # fmt: skip
        return self._executor

    def warm(self) -> None:
        """Starts every process now (a spawned interpreter takes a second or more to import
        the project): their start overlaps the wait for the first frontier."""
        executor = self._started()
        for _ in range(self.workers):
            executor.submit(_warm)

    def submit(
        self,
        rooms: list[int],
        page: int,
        workdir: Path,
        on_scanned: Callable[[RoomScan], None] | None = None,
    ) -> list[asyncio.Future[RoomScan]]:
        """The scans of `rooms` by one of the processes (one future per room, all set when the
        chunk is done); `on_scanned` for each as soon as they are in."""
        loop = asyncio.get_running_loop()
        scanning = loop.run_in_executor(
            self._started(), _scan_in_process, list(rooms), page, str(workdir)
        )
        futures: list[asyncio.Future[RoomScan]] = [loop.create_future() for _ in rooms]

        def done(finished: asyncio.Future[list[RoomScan | _ScanFailed]]) -> None:
            if finished.cancelled():
                for future in futures:
                    future.cancel()
                return
            error = finished.exception()
            for index, future in enumerate(futures):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                    continue
                got = finished.result()[index]
                if isinstance(got, _ScanFailed):
                    future.set_exception(got.error())
                else:
                    if on_scanned is not None:
                        on_scanned(got)
                    future.set_result(got)

        scanning.add_done_callback(done)
        return futures

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _message_line(candidate: MessageCandidate) -> str:
    m = candidate.legacy
    legacy = None if m is None else [m.account_id, m.body, m.send_time, m.update_time]
    return json.dumps(
        [str(candidate.message_id), legacy, candidate.gone_as, candidate.between],
        ensure_ascii=False,
    )


def _message_candidate(room: int, line: str) -> MessageCandidate:
    message_id, legacy, gone_as, between = json.loads(line)
    mid = int(message_id)
    message = None if legacy is None else Message(room, mid, *legacy)
    return MessageCandidate(room, mid, message, str(gone_as or DELETED), (), between)


def _cursor_line(candidate: CursorCandidate) -> str:
    c = candidate.legacy
    return json.dumps([c.account_id, str(c.last_read_message_id), str(c.last_fetched_message_id)])


def _cursor_candidate(room: int, line: str) -> CursorCandidate:
    account, last_read, last_fetched = json.loads(line)
    return CursorCandidate(
        room, int(account), ReadCursor(room, int(account), int(last_read), int(last_fetched)), ()
    )
