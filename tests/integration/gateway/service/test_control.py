"""Every gateway instance sees a phase change within a bounded time: the poll interval plus one
snapshot read. Two followers on the real control store, as two gateway processes would be."""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.adapters.mariadb.control_schema import control_engine
from gateway.adapters.mariadb.phase_store import MariaDbPhaseStore
from gateway.domain.phases import Phase
from gateway.service.control import ControlFollower
from tests.support.control_db import scratch_control_database
from tests.support.stack import Stack

POLL_S = 0.2
# The bound stated in gateway/README.md: one poll interval, plus a snapshot read (milliseconds
# on this machine; a generous margin for a loaded CI machine).
BOUND_S = POLL_S + 0.5


def test_two_gateways_see_a_move_and_the_kill_switch_within_the_bound(stack: Stack) -> None:
    async def go(operator: MariaDbPhaseStore, stores: list[MariaDbPhaseStore]) -> None:
        followers = [ControlFollower(s, POLL_S, logging.getLogger("test")) for s in stores]
        for follower in followers:
            await follower.load()
        runs = [asyncio.create_task(f.run()) for f in followers]
        try:
            for change, room_phase in [
                (lambda: operator.move([42], Phase.DUAL_WRITE, "ops", "t"), Phase.DUAL_WRITE),
                (lambda: operator.set_kill_switch(True, "ops", "t"), Phase.LEGACY),
                (lambda: operator.set_kill_switch(False, "ops", "t"), Phase.DUAL_WRITE),
            ]:
                await asyncio.to_thread(change)
                changed_at = time.monotonic()
                while not all(f.snapshot.phase_of(42) is room_phase for f in followers):
                    assert time.monotonic() - changed_at < BOUND_S, "not seen within the bound"
                    await asyncio.sleep(0.01)
        finally:
            for follower in followers:
                follower.stop()
            await asyncio.gather(*runs)

    with scratch_control_database(stack) as (server, name):
        engines = [control_engine(server, name) for _ in range(3)]
        try:
            operator, *gateways = [MariaDbPhaseStore(e) for e in engines]
            asyncio.run(go(operator, gateways))
        finally:
            for engine in engines:
                engine.dispose()
