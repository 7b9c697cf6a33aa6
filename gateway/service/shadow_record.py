"""Adds this gateway's shadow verdicts to the control store's shadow records, in batches
(`gateway/domain/shadow_record.py`; the guard of the phases after shadow_read reads them).

What is promised:
- Never on the request path: verdicts are counted in memory by the ledger (`ShadowLedger`,
  on the event loop); every `interval_s` this loop takes the counts and writes them in one
  transaction in a worker thread (`asyncio.to_thread`), as the control follower reads.
- Nothing counted is lost while the store is away: a batch the store refused goes back to the
  ledger and is added to the next one (one entry per room, so memory stays bounded by the
  rooms compared, whatever the outage's length). A batch the store may have committed before
  its answer was lost is sent again: counts may then be counted twice (more evidence of the
  same kind, never a difference hidden).
- On stop, what is left is recorded once more; verdicts of comparisons still under way then
  are not (they stay only in this gateway's memory, which ends).
- The loop never ends by itself (the gateway stops when a background loop ends): a store
  error is logged and counted, and it goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter

from gateway.errors import ControlStoreMisconfigured, ControlStoreUnavailable
from gateway.ports import PhaseStore
from gateway.service.shadow import ShadowLedger

BATCHES = Counter(
    "chat_gateway_shadow_record_batches_total",
    "Batches of shadow verdict counts sent to the control store, by result",
    ["result"],
)


class ShadowRecorder:
    def __init__(
        self, store: PhaseStore, ledger: ShadowLedger, interval_s: float, log: logging.Logger
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the shadow record's interval is above 0 seconds")
        self._store = store
        self._ledger = ledger
        self._interval_s = interval_s
        self._log = log
        self._stopping = asyncio.Event()

    async def record_once(self) -> bool:
        """Sends what the ledger counted since the last batch; False when the store refused
        it (kept for the next batch). Never raises."""
        batch = self._ledger.take_unrecorded()
        if not batch:
            return True
        try:
            await asyncio.to_thread(self._store.record_shadow, batch)
        except (ControlStoreUnavailable, ControlStoreMisconfigured) as exc:
            self._ledger.put_back(batch)
            BATCHES.labels("kept").inc()
            self._log.warning(
                "shadow record not written, kept for the next batch",
                extra={"rooms": len(batch), "reason": str(exc)},
            )
            return False
        except Exception as exc:  # a bug: say it loud, go on, and lose no verdict
            # Kept like a refused batch: a dropped "different" followed by a "same" would make
            # the room's record look clean to the guard of new_primary. The counts merge into
            # one per room and outcome, so keeping them costs no memory growth.
            self._ledger.put_back(batch)
            BATCHES.labels("failed").inc()
            self._log.error(
                "shadow record batch failed, kept for the next batch",
                extra={"rooms": len(batch), "reason": f"{exc.__class__.__name__}: {exc}"},
            )
            return False
        BATCHES.labels("written").inc()
        return True

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
            await self.record_once()

    def stop(self) -> None:
        self._stopping.set()
