"""Shadow reads: after the client has the monolith's answer, the same read is asked of the new
core's Read API and the two are compared, once the read model has caught up with the room's
frontier (gateway/README.md, "Shadow reads"; the rules: `gateway/domain/shadow.py`).

What is promised:
- Never in the client's way: a comparison is a task started after the answer is forwarded;
  at most `concurrency` run at once, a read beyond that is not compared ("skipped", counted),
  so a slow or dead Read API costs the gateway a bounded amount of memory and nothing else.
- No side effect (promise 7): the Read API is asked its shadow variant, which moves no cursor;
  a `force=0` read is asked "as if the cursor were just before the first message the monolith
  returned", so neither side's cursor is read or moved by the comparison.
- Lag is not a difference: below the frontier at the timeout is "late"; a difference is
  "different" only if it is still there at the timeout with the frontier reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import httpx

from gateway.domain.routing import Route, RouteKind
from gateway.domain.shadow import Difference, Outcome, compare, frontier_reached, should_retry
from gateway.domain.shadow_record import OUTCOMES, ShadowCounts
from gateway.service.metrics import COMPARISON_LAG, COMPARISONS, DIFFERENCES

SHADOW = "X-Migration-Shadow"
AFTER = "X-Migration-After"
ROOM_POSITION = "X-Migration-Room-Position"
# Between two asks of the Read API while the read model catches up.
RETRY_S = (0.02, 0.05, 0.1, 0.2, 0.4)
ASKING_AT_ONCE = 4


class Positions(Protocol):
    """Where a spooled hint landed in the hints topic (the shipper)."""

    async def position_of(self, seq: int, timeout_s: float) -> int | None: ...

    def shipped_long_ago(self, seq: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """A read the monolith answered, to be compared. `token` lives only as long as the job."""

    route: Route
    method: str
    path: str  # path and query as the client sent them (tokens travel in headers, not here)
    token: str
    status: int
    body: bytes
    answered_at: float  # time.monotonic() when the monolith's answer was in
    # The unix second the request came in, before the monolith read anything: a message or an
    # edit the new side shows stamped at or after it may be newer than the monolith's answer.
    answered_at_s: int
    frontier_seq: int | None  # the room's last spooled hint before the answer


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    """One comparison's verdict, as the admin API shows it."""

    at: float
    room_id: int
    route: str
    request: str
    outcome: str
    attempts: int
    waited_ms: int
    frontier: int
    applied: int | None
    differences: list[dict[str, Any]] = field(default_factory=list)


class ShadowLedger:
    """Recent verdicts with differences (bounded) and counts per room and outcome; and the
    counts not yet added to the control store's shadow records (`take_unrecorded`, for
    `gateway/service/shadow_record.py`: one entry per room, so bounded by the rooms compared).
    Used from the event loop only."""

    def __init__(self, keep: int) -> None:
        self.recent: deque[ShadowRecord] = deque(maxlen=keep)
        self.by_room: dict[int, dict[str, int]] = {}
        self._unrecorded: dict[int, ShadowCounts] = {}

    def record(self, verdict: ShadowRecord) -> None:
        counts = self.by_room.setdefault(verdict.room_id, {})
        counts[verdict.outcome] = counts.get(verdict.outcome, 0) + 1
        if verdict.outcome in ("different", "late"):
            self.recent.append(verdict)
        if verdict.room_id > 0 and verdict.outcome in OUTCOMES:
            self.put_back({verdict.room_id: ShadowCounts.of(verdict.outcome)})

    def take_unrecorded(self) -> dict[int, ShadowCounts]:
        """The counts judged since the last take, by room; forgotten here (`put_back` them
        if they could not be recorded)."""
        taken, self._unrecorded = self._unrecorded, {}
        return taken

    def put_back(self, counts: dict[int, ShadowCounts]) -> None:
        for room_id, added in counts.items():
            before = self._unrecorded.get(room_id)
            self._unrecorded[room_id] = added if before is None else before + added

    def differences(self, room_id: int | None, limit: int) -> list[dict[str, Any]]:
        picked = [r for r in reversed(self.recent) if room_id is None or r.room_id == room_id]
        return [asdict(r) for r in picked[:limit]]


class ShadowReads:
    def __init__(
        self,
        read_api: str,
        positions: Positions,
        ledger: ShadowLedger,
        *,
        timeout_s: float,
        concurrency: int,
        log: logging.Logger,
        sample: float = 1.0,
    ) -> None:
        self._read_api = read_api
        self._positions = positions
        self._ledger = ledger
        self._timeout_s = timeout_s
        self._slots = concurrency
        self._sample = sample
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()
        # Comparisons asking and comparing at once. Each compare parses two pages on the
        # proxy's own event loop; when Kafka comes back, every comparison that waited for its
        # frontier wakes together, and unbounded they would hold the loop (and the requests
        # it proxies) for as long as all of them take. Bounded, requests go between them.
        self._asking = asyncio.Semaphore(ASKING_AT_ONCE)
        self._client: httpx.AsyncClient | None = None

    def offer(self, job: ShadowJob) -> bool:
        """Starts the comparison in the background; False (and counted) when the read is not in
        the sample, or `concurrency` comparisons are already under way. Never blocks, never
        raises."""
        route = job.route.kind.value
        if not job.token.isascii():  # the monolith answered 401; an HTTP header cannot carry it
            COMPARISONS.labels(route, "skipped").inc()
            return False
        if self._sample < 1.0 and random.random() >= self._sample:
            COMPARISONS.labels(route, "not_sampled").inc()
            return False
        if len(self._tasks) >= self._slots:
            COMPARISONS.labels(route, "skipped").inc()
            return False
        task = asyncio.get_running_loop().create_task(self._compare(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self._read_api,
                timeout=httpx.Timeout(2.0, connect=0.5),
                limits=httpx.Limits(max_connections=self._slots, max_keepalive_connections=32),
            )
        return self._client

    async def _ask(self, job: ShadowJob, after: int | None) -> tuple[int, bytes, int | None]:
        headers = {"X-ChatWorkToken": job.token, SHADOW: "1"}
        params: dict[str, str] = {}
        path, _, query = job.path.partition("?")
        if job.route.kind is RouteKind.LIST:
            if job.route.force is not None:  # as the monolith read it (query or form body)
                params["force"] = "1" if job.route.force else "0"
            elif query:  # a value the monolith refused: the Read API is asked the same
                path = f"{path}?{query}"
            if after is not None:
                headers[AFTER] = str(after)
        # `params={}` would replace the query kept in `path` (httpx): None keeps it.
        answer = await self._http().get(path, params=params or None, headers=headers)
        position = answer.headers.get(ROOM_POSITION)
        applied = int(position) if position is not None and position.lstrip("-").isdigit() else None
        return (
            answer.status_code,
            answer.content,
            (None if applied is None or applied < 0 else applied),
        )

    async def _compare(self, job: ShadowJob) -> None:
        deadline = job.answered_at + self._timeout_s
        frontier = 0
        applied: int | None = None
        attempts = 0
        differences: list[Difference] = []
        outcome = "late"
        try:
            frontier_seq = job.frontier_seq
            if frontier_seq is not None and self._positions.shipped_long_ago(frontier_seq):
                frontier_seq = None  # shipped before this process, or long ago: applied
            if frontier_seq is not None:
                shipped = await self._positions.position_of(
                    frontier_seq, max(0.0, deadline - time.monotonic())
                )
                if shipped is None:  # the hint is still in the spool: Kafka is behind or down
                    self._finish(job, "late", attempts, frontier, applied, [])
                    return
                frontier = shipped
            after = _after_for(job)
            timeout_ms = (deadline - job.answered_at) * 1000
            while True:
                attempts += 1
                async with self._asking:
                    status, body, applied = await self._ask(job, after)
                    differences = compare(
                        job.route, job.status, job.body, status, body, job.answered_at_s
                    )
                # A hint at position 0 (a partition's first record) is still a frontier.
                reached = frontier_reached(applied, frontier) and (
                    frontier_seq is None or applied is not None
                )
                pause = RETRY_S[min(attempts - 1, len(RETRY_S) - 1)]
                # The next ask must fit before the deadline: judge as if it were already past.
                elapsed_ms = (time.monotonic() + pause - job.answered_at) * 1000
                verdict = should_retry(
                    differs=bool(differences) or not reached, frontier_reached=reached,
                    elapsed_ms=elapsed_ms, timeout_ms=timeout_ms,
                )  # fmt: skip
                if isinstance(verdict, Outcome):
                    outcome = verdict.value
                    break
                await asyncio.sleep(pause)
        except Exception as exc:  # a comparison never takes the gateway down
            COMPARISONS.labels(job.route.kind.value, "error").inc()
            # The class only: an exception's text may carry a header (the client's token).
            self._log.warning("shadow read failed", extra={"room_id": job.route.room_id,
                              "reason": exc.__class__.__name__})  # fmt: skip
            return
        self._finish(
            job, outcome, attempts, frontier, applied, differences if outcome == "different" else []
        )

    def _finish(
        self, job: ShadowJob, outcome: str, attempts: int, frontier: int,
        applied: int | None, differences: list[Difference],
    ) -> None:  # fmt: skip
        waited = time.monotonic() - job.answered_at
        COMPARISONS.labels(job.route.kind.value, outcome).inc()
        COMPARISON_LAG.labels(outcome).observe(waited)
        for difference in differences:
            DIFFERENCES.labels(difference.field).inc()
        record = ShadowRecord(
            at=time.time(), room_id=job.route.room_id or 0, route=job.route.kind.value,
            request=f"{job.method} {job.path}", outcome=outcome, attempts=attempts,
            waited_ms=round(waited * 1000), frontier=frontier, applied=applied,
            differences=[asdict(d) for d in differences],
        )  # fmt: skip
        self._ledger.record(record)
        if outcome == "different":
            # Where, not what: the values are customers' messages (the admin API shows them).
            found = [f"{d['message_id']}:{d['field']}" for d in record.differences]
            self._log.warning("shadow difference", extra={"room_id": record.room_id,
                              "request": record.request, "differences": found[:50]})  # fmt: skip

    def in_flight(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()


def _after_for(job: ShadowJob) -> int | None:
    """For a `force=0` read the monolith answered with messages: the id just before the first
    one (ids only increase within a room, so the messages a cursor at that id would get are
    the ones the monolith returned). None otherwise (a 204 is compared at the account's
    cursor, which nothing moved)."""
    if job.route.kind is not RouteKind.LIST or job.route.force or job.status != 200:
        return None
    try:
        first = json.loads(job.body)[0]["message_id"]
        return int(first) - 1
    except (ValueError, LookupError, TypeError):
        return None
