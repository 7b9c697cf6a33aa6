"""The shipper moves every spooled hint to the hints topic, in order per room, at least once, and
tells shadow reads the position each got; an unavailable log only makes the spool grow."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import pytest

from gateway.adapters.spool import HintSpool
from gateway.service.shipping import HintShipper
from newcore.adapters.embedded.file_event_log import FileEventLog
from newcore.domain.hints import CursorHint, Hint, MessageHint
from newcore.domain.partitioning import partition_for
from newcore.errors import EventLogMisconfigured, EventLogUnavailable
from newcore.ports import LogRecord
from newcore.wire.hints import decode_hint
from tests.contracts.event_log import read_all

PARTITIONS = 4


class FlakyLog:
    """An EventLog that is unavailable for its first `failures` appends, then is `inner`.
    `on_failure` runs at each failure (traffic goes on while Kafka is down)."""

    def __init__(
        self,
        inner: FileEventLog,
        failures: int,
        on_failure: Callable[[], None] = lambda: None,
        error: Exception | None = None,
    ) -> None:
        self.inner = inner
        self.failures = failures
        self.on_failure = on_failure
        self.error = error or EventLogUnavailable("Kafka at nowhere: down")
        self.appends = 0

    @property
    def partitions(self) -> int:
        return self.inner.partitions

    async def append(self, records: Sequence[tuple[int, bytes]]) -> list[int]:
        self.appends += 1
        if self.failures > 0:
            self.failures -= 1
            self.on_failure()
            raise self.error
        return await self.inner.append(records)

    async def read(
        self, partition: int, from_position: int, max_records: int, timeout_ms: int
    ) -> list[LogRecord]:
        return await self.inner.read(partition, from_position, max_records, timeout_ms)

    async def committed(self, group: str, partition: int) -> int:
        return await self.inner.committed(group, partition)

    async def commit(self, group: str, positions: Mapping[int, int]) -> None:
        await self.inner.commit(group, positions)

    async def close(self) -> None:
        await self.inner.close()


def some_hints(count: int, rooms: int = 9) -> list[Hint]:
    return [
        CursorHint(i % rooms + 1, 7) if i % 4 == 3 else MessageHint(i % rooms + 1, 5000 + i)
        for i in range(count)
    ]


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def shipped_log(log: FileEventLog) -> dict[int, list[Hint]]:
    """The hints the log holds, per room, in log order."""
    found: dict[int, list[Hint]] = {}
    for partition in range(PARTITIONS):
        for record in await read_all(log, partition):
            found.setdefault(record.room_id, []).append(decode_hint(record.value))
    return found


def per_room(hints: Sequence[Hint]) -> dict[int, list[Hint]]:
    rooms: dict[int, list[Hint]] = {}
    for hint in hints:
        rooms.setdefault(hint.room_id, []).append(hint)
    return rooms


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


@pytest.fixture
def spool(tmp_path: Path) -> HintSpool:
    return HintSpool(tmp_path / "spool", 1 << 24, segment_bytes=8192, fsync_interval_s=0.05)


def test_everything_spooled_reaches_the_log_in_order_per_room(
    tmp_path: Path, spool: HintSpool
) -> None:
    async def scenario() -> None:
        log = FileEventLog(tmp_path / "log", PARTITIONS)
        shipper = HintShipper(spool, log, batch=7, backoff_ms=10, max_backoff_ms=50)
        task = asyncio.create_task(shipper.run())
        given = some_hints(200)
        seqs = []
        for i, hint in enumerate(given):
            seq = spool.put(hint)
            assert seq is not None
            seqs.append(seq)
            shipper.notify()
            if i % 50 == 0:
                await asyncio.sleep(0)  # the shipper runs between puts too
        await until(lambda: spool.state().pending_records == 0)
        shipper.stop()
        await task
        assert await shipped_log(log) == per_room(given)
        # Each sequence's position is where the log holds that hint.
        for seq, hint in zip(seqs, given, strict=True):
            position = await shipper.position_of(seq, 0)
            assert position is not None
            partition = partition_for(hint.room_id, PARTITIONS)
            (record,) = await log.read(partition, position, 1, timeout_ms=100)
            assert (record.position, decode_hint(record.value)) == (position, hint)
        stats = shipper.stats
        assert (stats.spooled, stats.shipped, stats.dropped, stats.ship_failures) == (
            200,
            200,
            0,
            0,
        )
        assert spool.state().shipped_seq == 200

    run(scenario)
    spool.close()


def test_an_unavailable_log_grows_the_spool_and_nothing_is_lost(
    tmp_path: Path, spool: HintSpool
) -> None:
    """Unavailable three times, while requests go on spooling: the spool grows, the shipper
    backs off, then everything arrives once, in order per room, and the spool drains."""
    given = some_hints(30)
    later = some_hints(33)[30:]
    seen_pending: list[int] = []

    def traffic_goes_on() -> None:
        seen_pending.append(spool.state().pending_records)
        hint = later[len(seen_pending) - 1]
        assert spool.put(hint) is not None

    async def scenario() -> None:
        log = FlakyLog(FileEventLog(tmp_path / "log", PARTITIONS), 3, traffic_goes_on)
        for hint in given:
            spool.put(hint)
        shipper = HintShipper(spool, log, batch=100, backoff_ms=10, max_backoff_ms=40)
        task = asyncio.create_task(shipper.run())
        await until(lambda: spool.state().pending_records == 0)
        shipper.stop()
        await task
        assert seen_pending == [30, 31, 32]  # grew while the log was down
        assert await shipped_log(log.inner) == per_room(given + later)
        stats = shipper.stats
        assert (stats.ship_failures, stats.shipped, stats.backoff_ms) == (3, 33, 0)
        assert log.appends == 4
        assert await shipper.position_of(33, 1) is not None

    run(scenario)
    spool.close()


def test_position_of_waits_for_the_shipping_or_times_out(tmp_path: Path, spool: HintSpool) -> None:
    async def scenario() -> None:
        log = FlakyLog(FileEventLog(tmp_path / "log", PARTITIONS), 2)
        shipper = HintShipper(spool, log, batch=10, backoff_ms=50, max_backoff_ms=100)
        seq = spool.put(MessageHint(3, 1))
        assert seq == 1
        waiting = asyncio.create_task(shipper.position_of(seq, 10))
        early = await shipper.position_of(seq, 0.01)  # nothing runs yet: the timeout
        assert early is None
        task = asyncio.create_task(shipper.run())
        assert await waiting == 0  # once the log came back: its offset in the partition
        assert await shipper.position_of(seq, 0) == 0
        assert await shipper.position_of(999, 0.05) is None  # never spooled
        shipper.stop()
        await task

    run(scenario)
    spool.close()


def test_a_sequence_shipped_before_the_shipper_started_has_no_position_to_wait_for(
    tmp_path: Path, spool: HintSpool
) -> None:
    async def scenario() -> None:
        spool.put(MessageHint(1, 1))
        spool.shipped(1)
        shipper = HintShipper(
            spool, FileEventLog(tmp_path / "log", 1), batch=1, backoff_ms=1, max_backoff_ms=1
        )
        started = time.monotonic()
        assert await shipper.position_of(1, 5) is None
        assert time.monotonic() - started < 1

    run(scenario)
    spool.close()


def test_a_put_is_shipped_at_once_when_notified(tmp_path: Path, spool: HintSpool) -> None:
    """Idle, the shipper waits for `notify` (here up to 30 s), from the loop or another thread."""

    async def scenario() -> None:
        log = FileEventLog(tmp_path / "log", PARTITIONS)
        shipper = HintShipper(
            spool, log, batch=10, backoff_ms=10, max_backoff_ms=50, idle_wait_s=30
        )
        task = asyncio.create_task(shipper.run())
        await asyncio.sleep(0.1)
        for from_thread in (False, True):
            seq = spool.put(MessageHint(4, 40 + from_thread))
            assert seq is not None
            started = time.monotonic()
            if from_thread:
                threading.Thread(target=shipper.notify).start()
            else:
                shipper.notify()
            assert await shipper.position_of(seq, 5) is not None
            assert time.monotonic() - started < 1, from_thread
        shipper.stop()
        await asyncio.wait_for(task, 1)

    run(scenario)
    spool.close()


def test_stop_ends_a_backoff_at_once(tmp_path: Path, spool: HintSpool) -> None:
    async def scenario() -> None:
        log = FlakyLog(FileEventLog(tmp_path / "log", PARTITIONS), 1_000_000)
        shipper = HintShipper(spool, log, batch=10, backoff_ms=10_000, max_backoff_ms=20_000)
        spool.put(MessageHint(1, 1))
        task = asyncio.create_task(shipper.run())
        await until(lambda: log.appends == 1)
        assert shipper.stats.backoff_ms >= 5_000
        started = time.monotonic()
        shipper.stop()
        await asyncio.wait_for(task, 2)
        assert time.monotonic() - started < 1
        assert spool.state().pending_records == 1  # kept for the next start

    run(scenario)
    spool.close()


def test_a_misconfigured_log_is_raised_for_the_process_policy(
    tmp_path: Path, spool: HintSpool
) -> None:
    async def scenario() -> None:
        error = EventLogMisconfigured("topic has 2 partitions, expected 4")
        log = FlakyLog(FileEventLog(tmp_path / "log", PARTITIONS), 1, error=error)
        shipper = HintShipper(spool, log, batch=10, backoff_ms=10, max_backoff_ms=10)
        spool.put(MessageHint(1, 1))
        with pytest.raises(EventLogMisconfigured):
            await asyncio.wait_for(shipper.run(), 5)
        assert spool.state().pending_records == 1

    run(scenario)
    spool.close()
