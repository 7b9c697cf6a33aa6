"""Follows the control store: the phases every request of this gateway is routed by, and the
room map the front door reads.

A phase change reaches this gateway within `poll_s` plus one snapshot read: the follower reads
the store's one-row revision every `poll_s` and the whole snapshot only when it moved. The
request path reads `snapshot` (an immutable object swapped whole), never the store. When the
store cannot be reached the last snapshot stays in use (promise 1: the monolith's traffic never
waits on us) and its age is reported; before a first snapshot every room is `legacy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from gateway.domain.phases import INSPECTED, ControlSnapshot
from gateway.errors import ControlStoreMisconfigured, ControlStoreUnavailable
from gateway.ports import PhaseStore
from gateway.service.metrics import CONTROL_AGE, CONTROL_REVISION
from newcore.errors import Misconfigured, Unavailable

NOTHING_YET = ControlSnapshot(revision=-1, kill_switch=False, phases={})


class RoomMap(Protocol):
    """Where the front door learns which rooms go through the gateway."""

    def publish(self, room_ids: Iterable[int]) -> bool:
        """Makes these rooms (and only these) go through the gateway; True when it changed.
        Raises Unavailable when the front door cannot be told (retried at the next poll)."""
        ...


def routed_rooms(snapshot: ControlSnapshot) -> list[int]:
    """The rooms the front door sends to the gateway: those in an inspected phase, none while
    the kill switch is on (everything then goes straight to the monolith)."""
    if snapshot.kill_switch:
        return []
    return sorted(room for room, phase in snapshot.phases.items() if phase in INSPECTED)


class ControlFollower:
    def __init__(
        self,
        store: PhaseStore,
        poll_s: float,
        log: logging.Logger,
        room_map: RoomMap | None = None,
    ) -> None:
        self._store = store
        self._poll_s = poll_s
        self._log = log
        self._room_map = room_map
        self._stopping = asyncio.Event()
        self._published: list[int] | None = None
        self._answered_at: float | None = None
        self.snapshot: ControlSnapshot = NOTHING_YET

    async def load(self) -> ControlSnapshot:
        """Reads the whole snapshot now (at start: a store this version cannot read raises
        ControlStoreMisconfigured here, before any traffic is taken)."""
        snapshot = await asyncio.to_thread(self._store.snapshot)
        self._take(snapshot)
        await self._publish()
        return snapshot

    def _take(self, snapshot: ControlSnapshot) -> None:
        if snapshot.revision != self.snapshot.revision:
            self._log.info(
                "control snapshot", extra={"revision": snapshot.revision,
                "kill_switch": snapshot.kill_switch, "rooms": len(snapshot.phases)},
            )  # fmt: skip
        self.snapshot = snapshot
        self._answered_at = time.monotonic()
        CONTROL_REVISION.set(snapshot.revision)

    async def _publish(self) -> None:
        if self._room_map is None:
            return
        rooms = routed_rooms(self.snapshot)
        if rooms == self._published:
            return
        try:
            changed = await asyncio.to_thread(self._room_map.publish, rooms)
        except Unavailable as exc:
            self._log.warning("room map not published", extra={"reason": str(exc)})
            return
        except Misconfigured as exc:  # the front door's file or pid is not ours: say it loud,
            # keep serving (the front door keeps its last map) and try again at the next poll
            self._log.error("room map not published", extra={"reason": str(exc)})
            return
        self._published = rooms
        if changed:
            self._log.info("room map published", extra={"rooms": len(rooms)})

    async def poll_once(self) -> None:
        """One poll: the revision, and the snapshot if it moved; the room map if it changed."""
        try:
            revision = await asyncio.to_thread(self._store.revision)
            if revision != self.snapshot.revision:
                self._take(await asyncio.to_thread(self._store.snapshot))
            else:
                self._answered_at = time.monotonic()
        except ControlStoreUnavailable as exc:
            self._log.warning("control store unavailable", extra={"reason": str(exc)})
        except ControlStoreMisconfigured as exc:
            # A row this version cannot read (a newer version's phase in a rolling upgrade):
            # keep the last snapshot and go on asking, loudly; the health shows its age.
            self._log.error("control store unreadable", extra={"reason": str(exc)})
        await self._publish()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.poll_once()
            CONTROL_AGE.set(self.age_s() or 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll_s)

    def stop(self) -> None:
        self._stopping.set()

    def age_s(self) -> float | None:
        """Seconds since the store last answered; None before its first answer."""
        if self._answered_at is None:
            return None
        return time.monotonic() - self._answered_at

    def health(self) -> dict[str, Any]:
        age = self.age_s()
        return {
            "control_revision": self.snapshot.revision,
            "control_age_s": None if age is None else round(age, 3),
            "kill_switch": self.snapshot.kill_switch,
            "room_map_published": self._published is not None or self._room_map is None,
        }
