"""The parity check (`chat-migrate parity ROOMS`): the monolith's state against the read model,
message by message and cursor by cursor, against a frontier, changing nothing on either side
(migrator/README.md, "Parity"; the rules and the result document: `migrator/domain/parity.py`).

One run, in order:

1. **Frontier.** `Pipeline.mark()` (the monolith's binlog position now), then wait until
   `Pipeline.reached` it (polled every `poll_s`, at most `frontier_timeout_s`): the read model
   then holds everything the monolith had committed at that moment. Not reached in time: every
   room is **late** (not clean, not different) and nothing is compared. Meanwhile the rooms are
   measured (`RoomHistory.bounds`: rows) for the progress bar's total and ETA.
2. **Scan**, room by room: the room's monolith rows (`MonolithReader.read_range`, pages of
   `page` rows, each page its own READ COMMITTED read, translated as the capturer does) and
   its live read-model messages (`ReadStore.after`, pages) are read by two threads a page
   ahead each, and merged in id order (`domain.parity.merge`): memory holds a few pages
   whatever the room's size. Then the room's cursors (`RoomCursors`, pages) against the read
   model's (`ReadStore.cursor`). Rows that differ are **candidates**, written to a spill file
   (in memory up to a few MB, then on disk: a room with a million missing messages holds none
   of them in memory). Unreadable legacy rows are reported as the scan meets them.
3. **Re-check**, per room with candidates, up to `recheck_rounds` times: mark a new frontier
   (after the scan read every candidate's monolith state), wait until it is reached (late: the
   room is late), then read each candidate again, the read model first, then the monolith
   (`domain.parity.recheck_*`): the same now is lag, not a difference; still different with
   the monolith's state unchanged is **confirmed** and reported; changed meanwhile (written
   during the check) goes to the next round from the state just read, and is never reported.
   Candidates still changing after the last round are **unsettled** (the room is late).
   While a frontier is awaited, the monolith's states of the candidates are sampled (at most
   `sample_limit` candidates, right after the mark and after each look): a read model that
   holds one of them holds a state the monolith had after the frontier, and is caught up with
   a row that changes faster than the pipeline's lag (a cursor a client moves every second). The
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
import contextlib
import functools
import json
import logging
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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
from newcore.ports import MonolithReader, ReadStore

T = TypeVar("T")

SPILL_IN_MEMORY = 4 << 20  # bytes of candidates kept in memory before the spill goes to disk
PREFETCH = 2  # pages read ahead of the merge, per side
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
    ) -> None:
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
        frontier = await self._pipeline.mark()
        waited, total = await asyncio.gather(self._wait(frontier), self._measure(request.rooms))
        if total is not None:
            self._progress.total(total)
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
        try:
            for room in request.rooms:
                result = await self._room(room, frontier, late, request, sink)
                tally.add(result)
                if on_room is not None:
                    on_room(result)
        finally:
            self._progress.close()
        return ParityOutcome(
            run, tally.summary(time.time(), time.monotonic() - began), len(request.rooms)
        )

    # -- frontiers ---------------------------------------------------------------------------

    async def _wait(self, frontier: Frontier, sample: Callable[[], None] | None = None) -> bool:
        """Polls until the read model reached `frontier`; False at the timeout. `sample` (run
        in a worker thread) right after the mark and after each look that found it not
        reached yet: the monolith's states of the candidates meanwhile."""
        began = time.monotonic()
        deadline = began + self._settings.frontier_timeout_s
        try:
            while True:
                if sample is not None:
                    await asyncio.to_thread(sample)
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

    async def _room(
        self,
        room: int,
        compared_at: Frontier,
        late: str | None,
        request: ParityRequest,
        sink: ResultSink,
    ) -> RoomResult:
        began = time.monotonic()
        sink.start_room(room)
        result = RoomResult(room, Verdict.CLEAN, compared_at=None if late else compared_at)

        def emit(difference: Difference) -> None:
            sink.difference(difference)
            result.counts[difference.kind] += 1
            self._metrics.differences[difference.kind].inc()

        unsettled = 0
        if late is None:
            spills = [_Spill(), _Spill()]  # messages, cursors: the current round's
            try:
                await asyncio.to_thread(self._scan, room, result, spills[0], spills[1], emit)
                self._metrics.candidates.inc(sum(spill.count for spill in spills))
                for _ in range(self._settings.recheck_rounds):
                    left = sum(spill.count for spill in spills)
                    if not left:
                        break
                    frontier = await self._pipeline.mark()
                    seen: Seen = {}
                    sample = (
                        functools.partial(self._sample, room, spills[0], spills[1], seen)
                        if left <= self._tuning.sample_limit
                        else None
                    )
                    waited = await self._wait(frontier, sample)
                    if not waited:
                        late = (
                            self._late(frontier)
                            + f"; {left} row(s) of the room could not be re-checked"
                        )
                        break
                    result.settled_at = frontier
                    spills = list(
                        await asyncio.to_thread(
                            self._recheck, room, result, spills[0], spills[1], seen, emit
                        )
                    )
                unsettled = 0 if late else sum(spill.count for spill in spills)
            finally:
                for spill in spills:
                    spill.close()
        blocking = sum(n for kind, n in result.counts.items() if kind in BLOCKING)
        result.verdict, result.reason = verdict_of(blocking, unsettled, late)
        result.unsettled = unsettled
        if result.verdict is Verdict.CLEAN and request.mark:
            await asyncio.to_thread(
                self._phases.mark_parity_clean, room, result.positions(), request.who
            )
            result.marked_clean = True
        result.seconds = time.monotonic() - began
        sink.end_room(result)
        self._metrics.rooms[result.verdict].inc()
        self._log.info(
            "room compared",
            extra={
                "room": room, "verdict": result.verdict.value, "reason": result.reason,
                "rows": result.legacy_rows, "cursors": result.cursors,
                "differences": {k.value: n for k, n in result.counts.items() if n},
                "rechecked": result.rechecked, "unsettled": unsettled,
                "marked_clean": result.marked_clean, "seconds": round(result.seconds, 3),
            },
        )  # fmt: skip
        return result

    # -- the scan (a worker thread) ------------------------------------------------------------

    def _scan(
        self,
        room: int,
        result: RoomResult,
        messages: _Spill,
        cursors: _Spill,
        emit: Callable[[Difference], None],
    ) -> None:
        page = self._settings.page

        def legacy_pages() -> Iterator[list[LegacyRow]]:
            first = 0
            while first <= MAX_ID:
                read = self._reader.read_range(room, first, MAX_ID, page)
                if read.last_seen is None:
                    return
                yield legacy_rows(read.live, read.deleted, read.problems)
                first = read.last_seen + 1

        def new_pages() -> Iterator[list[Message]]:
            after = 0
            while True:
                found = self._store.after(room, after, page)
                if not found:
                    return
                yield found
                after = found[-1].message_id

        def counted_legacy() -> Iterator[LegacyRow]:
            for rows in prefetched(legacy_pages()):
                result.legacy_rows += len(rows)
                self._metrics.messages.inc(len(rows))
                self._progress.advance(len(rows))
                yield from rows

        def counted_new() -> Iterator[Message]:
            for found in prefetched(new_pages()):
                result.new_messages += len(found)
                self._metrics.new_messages.inc(len(found))
                yield from found

        for item in merge(room, counted_legacy(), counted_new()):
            if isinstance(item, Difference):
                emit(item)
            else:
                messages.add(_message_line(item))
        after = 0
        while True:
            found = self._cursors.cursors(room, after, page)
            if not found:
                break
            for legacy in found:
                candidate = compare_cursor(
                    room, legacy, self._store.cursor(room, legacy.account_id)
                )
                if candidate is not None:
                    cursors.add(_cursor_line(candidate))
            result.cursors += len(found)
            self._metrics.cursors.inc(len(found))
            after = found[-1].account_id

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
        confirmed ones emitted, changed ones into the returned spills (the next round's)."""
        page = self._settings.page
        next_messages, next_cursors = _Spill(), _Spill()
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
                            seen.get(("m", candidate.message_id), ()),
                        ),
                        emit, next_messages, next_cursors,
                    )  # fmt: skip
                result.rechecked += len(chunk)
            for lines in cursors.chunks(page):
                cursor_chunk = [_cursor_candidate(room, line) for line in lines]
                new_cursors = {
                    c.account_id: self._store.cursor(room, c.account_id) for c in cursor_chunk
                }
                legacy_cursors = self._reader.read_cursors(
                    [(room, c.account_id) for c in cursor_chunk]
                )
                for cursor_candidate in cursor_chunk:
                    account = cursor_candidate.account_id
                    self._judge(
                        recheck_cursor(
                            cursor_candidate, legacy_cursors.get((room, account)),
                            new_cursors[account], seen.get(("c", account), ()),
                        ),
                        emit, next_messages, next_cursors,
                    )  # fmt: skip
                result.rechecked += len(cursor_chunk)
        except BaseException:
            next_messages.close()
            next_cursors.close()
            raise
        finally:
            messages.close()
            cursors.close()
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
        for message_id in sorted(wanted):
            message = self._store.message(room, message_id)
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
    rows = [LegacyRow(m.message_id, m, tuple(reasons.get(m.message_id, ()))) for m in live]
    rows += [LegacyRow(mid, None, tuple(reasons.get(mid, ()))) for mid in deleted]
    rows.sort(key=lambda row: row.message_id)
    return rows


# -- prefetching a side's pages --------------------------------------------------------------

_DONE = object()


def prefetched(pages: Iterator[T], depth: int = PREFETCH) -> Iterator[T]:
    """`pages`, produced by a thread of its own up to `depth` ahead: the two sides of a room are
    read at once, while the merge compares. An error of the producer is raised here; stopping
    early (an error of the consumer) stops the producer at its next page."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in pages:
                while not stop.is_set():
                    try:
                        handoff.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            with contextlib.suppress(queue.Full):
                handoff.put(_Failure(exc), timeout=5)

    worker = threading.Thread(target=produce, name="parity-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=10)


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


# -- candidates spilled ----------------------------------------------------------------------


@dataclass
class _Spill:
    """Candidates as JSON lines, in memory up to SPILL_IN_MEMORY bytes, then in a temporary
    file (deleted when closed)."""

    count: int = 0
    _file: IO[str] = field(
        default_factory=lambda: tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by close)
            max_size=SPILL_IN_MEMORY, mode="w+", encoding="utf-8", prefix="chat-parity-"
        )
    )

    def add(self, line: str) -> None:
        self._file.seek(0, 2)  # after a read, writes go at the end all the same
        self._file.write(line + "\n")
        self.count += 1

    def chunks(self, size: int) -> Iterator[list[str]]:
        self._file.flush()
        self._file.seek(0)
        chunk: list[str] = []
        for line in self._file:
            chunk.append(line)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
