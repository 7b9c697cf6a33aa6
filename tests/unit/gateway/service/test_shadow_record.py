"""The gateway's shadow verdicts reach the control store's shadow records in batches: counted by
the ledger, written by a loop off the request path, kept when the store is away, recorded once
more at stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import pytest

from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore
from gateway.domain.shadow_record import ShadowCounts
from gateway.errors import ControlStoreUnavailable
from gateway.service.shadow import ShadowLedger, ShadowRecord
from gateway.service.shadow_record import ShadowRecorder

LOG = logging.getLogger("test")


def verdict(room_id: int, outcome: str) -> ShadowRecord:
    return ShadowRecord(
        at=0.0, room_id=room_id, route="list", request="GET /", outcome=outcome, attempts=1,
        waited_ms=1, frontier=0, applied=None,
    )  # fmt: skip


class FlakyStore(MemoryPhaseStore):
    """Refuses the next `failures` batches as a store that is away would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        self.batches: list[dict[int, ShadowCounts]] = []

    def record_shadow(self, counts: Mapping[int, ShadowCounts]) -> None:
        if self.failures:
            self.failures -= 1
            raise ControlStoreUnavailable("control store, record_shadow: connection refused")
        self.batches.append(dict(counts))
        super().record_shadow(counts)


def test_the_ledger_counts_each_room_by_outcome_until_taken() -> None:
    ledger = ShadowLedger(keep=10)
    for room, outcome in [(7, "same"), (7, "same"), (7, "late"), (8, "different"), (0, "same")]:
        ledger.record(verdict(room, outcome))
    assert ledger.take_unrecorded() == {7: ShadowCounts(2, 0, 1), 8: ShadowCounts(different=1)}
    assert ledger.take_unrecorded() == {}
    assert ledger.by_room[7] == {"same": 2, "late": 1}  # what the admin API shows stays


def test_a_batch_reaches_the_store_and_a_refused_one_is_added_to_the_next() -> None:
    async def scenario() -> None:
        store, ledger = FlakyStore(), ShadowLedger(keep=10)
        recorder = ShadowRecorder(store, ledger, 60, LOG)
        assert await recorder.record_once()  # nothing to send: no call
        assert store.batches == []
        ledger.record(verdict(7, "same"))
        ledger.record(verdict(8, "late"))
        store.failures = 2
        assert not await recorder.record_once()
        ledger.record(verdict(7, "different"))
        assert not await recorder.record_once()
        assert store.shadow_records([7, 8]) == {}
        assert await recorder.record_once()
        assert store.batches == [{7: ShadowCounts(1, 1, 0), 8: ShadowCounts(late=1)}]
        tallies = store.shadow_records([7, 8])
        assert (tallies[7].same, tallies[7].different, tallies[8].late) == (1, 1, 1)
        assert tallies[7].last_different_at is not None

    asyncio.run(scenario())


def test_the_loop_records_every_interval_goes_on_after_errors_and_records_at_stop() -> None:
    async def scenario() -> None:
        store, ledger = FlakyStore(), ShadowLedger(keep=10)
        recorder = ShadowRecorder(store, ledger, 0.05, LOG)
        task = asyncio.create_task(recorder.run())
        ledger.record(verdict(7, "same"))
        store.failures = 3
        for _ in range(100):
            await asyncio.sleep(0.02)
            if store.batches:
                break
        assert store.batches == [{7: ShadowCounts(same=1)}] and not task.done()
        ledger.record(verdict(7, "same"))
        recorder.stop()
        await asyncio.wait_for(task, 5)
        assert store.shadow_records([7])[7].same == 2  # the last one at stop

    asyncio.run(scenario())


def test_a_batch_that_fails_for_a_bug_is_kept_so_no_difference_is_forgotten() -> None:
    """Dropping it would lose a "different" that a later "same" would then hide from the
    guard of new_primary; kept, its counts merge with the next ones (no growth per retry)."""

    class Broken(MemoryPhaseStore):
        broken = True

        def record_shadow(self, counts: Mapping[int, ShadowCounts]) -> None:
            if self.broken:
                raise RuntimeError("a bug")
            super().record_shadow(counts)

    async def scenario() -> None:
        store = Broken()
        ledger = ShadowLedger(keep=10)
        ledger.record(verdict(7, "different"))
        recorder = ShadowRecorder(store, ledger, 1, LOG)
        assert not await recorder.record_once()
        ledger.record(verdict(7, "same"))
        assert not await recorder.record_once()
        store.broken = False
        assert await recorder.record_once()
        record = store.shadow_records([7])[7]
        assert (record.same, record.different) == (1, 1)

    asyncio.run(scenario())


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="above 0"):
        ShadowRecorder(MemoryPhaseStore(), ShadowLedger(keep=1), 0, LOG)
