"""The hint shipper: moves what the gateway spooled into the hints topic, and tells shadow reads
where each hint landed (gateway/README.md, "Hints from the gateway" and "Shadow reads").

The loop takes the oldest records the spool has not shipped, appends them to the hints topic
(`EventLog.append`, each to its room's partition, in order), and only then moves the spool's
cursor: at least once, never lost. A record appended twice (the gateway died between the append
and the cursor) is harmless: a hint carries no data, it only makes the capturer read again.

When the log is unavailable the shipper backs off (doubling from `backoff_ms` to
`max_backoff_ms`, with jitter so that gateways restarted together do not hit a recovering
broker in step) and the spool grows; requests are not touched. `asyncio.sleep` is right here:
this loop is no Kafka consumer, there is no group session to lose while it waits.

Where the work runs: the shipper shares the gateway's event loop. Reading a batch of pending
records is page-cache reads and a CRC per record, done on the loop (a few milliseconds per 500
records at most on a busy 2-core machine); moving the cursor (a rename, perhaps a segment's
deletion) is disk work, done in a worker thread (`asyncio.to_thread`).

The positions: `EventLog.append` returns each record's offset in its partition; the shipper
keeps the latest `keep_positions` of them by spool sequence, so that a shadow read that knows
the sequence of a room's last hint before the monolith answered (`HintSpool.last_seq_for`)
can wait for its position (`position_of`) and then for the read model to apply it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass

from gateway.adapters.spool import HintSpool
from gateway.errors import SpoolUnavailable
from newcore.errors import EventLogUnavailable
from newcore.ports import EventLog

_log = logging.getLogger("gateway.shipping")


@dataclass(frozen=True, slots=True)
class ShippingStats:
    """Counters for the metrics (the integrator exports them), since the process started."""

    spooled: int  # hints the spool kept
    dropped: int  # hints the spool could not keep (bound reached, disk failed): rooms lost
    shipped: int  # records appended to the hints topic (a record shipped twice counts twice)
    ship_failures: int  # appends that failed (the log unavailable), each followed by a backoff
    batches: int  # appends that succeeded
    backoff_ms: int  # the current backoff; 0 when the last append went through
    last_error: str | None


class HintShipper:
    def __init__(
        self,
        spool: HintSpool,
        log: EventLog,
        *,
        batch: int,
        backoff_ms: int,
        max_backoff_ms: int,
        keep_positions: int = 200_000,
        idle_wait_s: float = 1.0,
    ) -> None:
        """`batch`: records per append. `keep_positions`: how many recent sequences keep
        their position for `position_of` (about 100 bytes each). `idle_wait_s`: with nothing
        to ship, how long to wait for `notify` before looking at the spool anyway (a safety
        net: `notify` is what makes shipping prompt)."""
        if batch < 1 or backoff_ms < 1 or max_backoff_ms < backoff_ms or keep_positions < 1:
            raise ValueError("batch, backoff_ms, keep_positions >= 1, max_backoff_ms >= backoff_ms")
        self._spool = spool
        self._log = log
        self._batch = batch
        self._backoff_ms = backoff_ms
        self._max_backoff_ms = max_backoff_ms
        self._keep = keep_positions
        self._idle_wait_s = idle_wait_s
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._positions: OrderedDict[int, int] = OrderedDict()  # seq -> position, oldest first
        # Sequences at or below this have no position to wait for: shipped before this
        # shipper started, or forgotten (beyond keep_positions).
        self._unknown_through = spool.state().shipped_seq
        self._waiters: dict[int, list[asyncio.Future[int]]] = {}
        self._shipped = self._failures = self._batches = 0
        self._current_backoff_ms = 0
        self._last_error: str | None = None

    # -- the loop ------------------------------------------------------------------------

    def notify(self) -> None:
        """A record was put: ship it now, not at the next idle check. Cheap; callable from
        any thread (the gateway calls it from the loop the shipper runs in)."""
        loop = self._loop
        if loop is None or self._loop_thread == threading.get_ident():
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        """Ends `run` after the append under way, if any (and at once during a backoff)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Ships until `stop`. Raises what an operator must act on (EventLogMisconfigured,
        EventLogFenced): the policy above it decides (newcore/service/worker.py: exit 3).
        EventLogUnavailable and SpoolUnavailable are waited out."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()  # before looking: a put after the look wakes the next wait
            try:
                records = self._spool.pending(self._batch)
            except SpoolUnavailable as exc:
                failures += 1
                await self._back_off(failures, exc, "reading the spool")
                continue
            if not records:
                failures = 0
                self._current_backoff_ms = 0
                await self._wait(self._wake, self._idle_wait_s)
                continue
            try:
                positions = await self._log.append([(r.room_id, r.value) for r in records])
            except EventLogUnavailable as exc:
                failures += 1
                self._failures += 1
                await self._back_off(failures, exc, "appending to the hints topic")
                continue
            failures = 0
            self._current_backoff_ms = 0
            self._batches += 1
            self._shipped += len(records)
            if isinstance(positions, list) and len(positions) == len(records):
                self._remember([r.seq for r in records], positions)
            else:  # an EventLog that does not answer positions: shadow reads end "late"
                self._last_error = "the event log answered no positions"
                self._forget_through(records[-1].seq)
            try:  # in a thread: the cursor's rename and a segment's deletion are disk work
                await asyncio.to_thread(self._spool.shipped, records[-1].seq)
            except SpoolUnavailable as exc:  # taken as shipped in memory; its cursor is retried
                self._last_error = str(exc)
                _log.warning("spool cursor not written", extra={"reason": str(exc)})
        self._wake_all_waiters()

    async def _back_off(self, failures: int, error: Exception, doing: str) -> None:
        ceiling = min(self._max_backoff_ms, self._backoff_ms * 2 ** min(failures - 1, 30))
        wait_ms = round(random.uniform(min(self._backoff_ms / 2, ceiling), ceiling))
        self._current_backoff_ms = wait_ms
        self._last_error = f"{doing}: {error}"
        _log.warning(
            "hint shipping waits",
            extra={"reason": str(error), "doing": doing, "backoff_ms": wait_ms},
        )
        await self._wait(self._stopping, wait_ms / 1000)

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    # -- positions -----------------------------------------------------------------------

    def _remember(self, seqs: list[int], positions: list[int]) -> None:
        for seq, position in zip(seqs, positions, strict=True):
            self._positions[seq] = position
            for waiter in self._waiters.pop(seq, ()):
                if not waiter.done():
                    waiter.set_result(position)
        while len(self._positions) > self._keep:
            seq, _ = self._positions.popitem(last=False)
            self._unknown_through = max(self._unknown_through, seq)

    def _forget_through(self, seq: int) -> None:
        self._unknown_through = max(self._unknown_through, seq)
        for waiting in [s for s in self._waiters if s <= seq]:
            for waiter in self._waiters.pop(waiting):
                if not waiter.done():
                    waiter.set_result(-1)

    def _wake_all_waiters(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(-1)
        self._waiters.clear()

    def shipped_long_ago(self, seq: int) -> bool:
        """The record `seq` was shipped before this shipper started, or so long ago that its
        position is forgotten (`keep_positions`): nothing to wait for."""
        return seq <= self._unknown_through

    async def position_of(self, seq: int, timeout_s: float) -> int | None:
        """The position in the hints topic the record `seq` got, once shipped: at once if it
        is, else when it is (up to `timeout_s`). None: not shipped within the timeout (Kafka
        behind or down), or shipped before this shipper started or too long ago to remember
        (the caller takes it as "late"). Call it from the shipper's loop."""
        known = self._positions.get(seq)
        if known is not None:
            return known
        if seq <= self._unknown_through or self._stopping.is_set():
            return None
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(seq, []).append(waiter)
        try:
            position = await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            return None
        finally:
            waiting = self._waiters.get(seq)
            if waiting is not None and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[seq]
        return None if position < 0 else position

    # -- counters ------------------------------------------------------------------------

    @property
    def stats(self) -> ShippingStats:
        state = self._spool.state()
        return ShippingStats(
            spooled=state.spooled,
            dropped=state.dropped_full + state.dropped_unwritable,
            shipped=self._shipped,
            ship_failures=self._failures,
            batches=self._batches,
            backoff_ms=self._current_backoff_ms,
            last_error=self._last_error,
        )
