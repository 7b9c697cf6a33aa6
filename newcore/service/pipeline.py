"""One step of each pipeline stage, over the ports: read a batch from the committed position,
do the work, write the results, commit.

`capture_batch` and `update_batch` stop short of the commit so that a crash between the
effect and the commit can be played in tests: the batch is then read again (redelivery), which
the read store's rule makes harmless. The steps commit the *next* position to read, after
their effect is durable.
"""

from __future__ import annotations

import time

from newcore.ports import EventLog, ReadStore
from newcore.service.capture import Capturer
from newcore.service.update import apply_records

CAPTURER_GROUP = "capturer"
UPDATER_GROUP = "updater"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def capture_batch(
    hints: EventLog, events: EventLog, dead_letters: EventLog, capturer: Capturer,
    partition: int, *, max_records: int = 500, timeout_ms: int = 0,
) -> int | None:  # fmt: skip
    """Captures the next batch of the partition; returns the next position to commit, or None
    when there was nothing to read."""
    start = await hints.committed(CAPTURER_GROUP, partition)
    records = await hints.read(partition, start, max_records, timeout_ms)
    if not records:
        return None
    outcome = capturer.capture(records, _now_ms())
    await events.append(outcome.event_records())
    await dead_letters.append(outcome.dead_letter_records())
    await hints.append(outcome.follow_up_records())
    return records[-1].position + 1


async def capture_step(
    hints: EventLog, events: EventLog, dead_letters: EventLog, capturer: Capturer, partition: int,
    *, max_records: int = 500, timeout_ms: int = 0,
) -> bool:  # fmt: skip
    """One batch captured and committed; False when there was nothing to do."""
    following = await capture_batch(
        hints,
        events,
        dead_letters,
        capturer,
        partition,
        max_records=max_records,
        timeout_ms=timeout_ms,
    )
    if following is None:
        return False
    await hints.commit(CAPTURER_GROUP, {partition: following})
    return True


async def update_batch(
    events: EventLog, dead_letters: EventLog, store: ReadStore, partition: int,
    *, max_records: int = 1000, timeout_ms: int = 0,
) -> int | None:  # fmt: skip
    start = await events.committed(UPDATER_GROUP, partition)
    records = await events.read(partition, start, max_records, timeout_ms)
    if not records:
        return None
    dead = apply_records(records, store)
    await dead_letters.append([(letter.room_id, letter.encode()) for letter in dead])
    return records[-1].position + 1


async def update_step(
    events: EventLog, dead_letters: EventLog, store: ReadStore, partition: int,
    *, max_records: int = 1000, timeout_ms: int = 0,
) -> bool:  # fmt: skip
    following = await update_batch(
        events, dead_letters, store, partition, max_records=max_records, timeout_ms=timeout_ms
    )
    if following is None:
        return False
    await events.commit(UPDATER_GROUP, {partition: following})
    return True
