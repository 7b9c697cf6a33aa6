"""An in-memory parity world for the service's and the command's unit tests: the monolith
(InMemoryMonolith), the read model (the SQLite read store) that the pipeline (MemoryPipeline,
played here) fills from the monolith on `carry`, and the control store (MemoryPhaseStore)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore
from legacy_adapters.adapters.embedded.memory_monolith import InMemoryMonolith
from legacy_adapters.domain.translation import LegacyMessageRow
from migrator.adapters.embedded.memory_cursors import MemoryRoomCursors
from migrator.adapters.embedded.memory_pipeline import MemoryPipeline
from migrator.domain.parity import DocumentWriter, Header, ParityResult, decode
from migrator.service.parity import (
    ParityCheck,
    ParityMetrics,
    ParityOutcome,
    ParityRequest,
    Tuning,
)
from migrator.settings import ParitySettings
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from newcore.domain.events import CursorMoved, Event, MessageDeleted, MessageUpserted

ROOM, OTHER = 7, 8
FAST = Tuning(poll_s=0.001)


def row(
    mid: int, body: str | None = "本文 [To:1] 😀", room: int = ROOM, **fields: Any
) -> LegacyMessageRow:
    values: dict[str, Any] = dict(
        message_id=mid, room_id=room, account_id=5, body=body, body_v1=None, body_raw=None,
        send_time=1_700_000_000 + mid, update_time=0, created_at="2023-11-15 07:13:20", deleted=0,
    )  # fmt: skip
    values.update(fields)
    return LegacyMessageRow(**values)


class World:
    """A monolith, a read model that the pipeline fills from it on `carry`, and a parity check
    over them."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.monolith = InMemoryMonolith()
        self.read_model_path = tmp / "read-model.sqlite"
        self.store = SqliteReadStore(self.read_model_path)
        self.pipeline = MemoryPipeline()
        self.phases = MemoryPhaseStore()
        self.position = 0
        self.settings = ParitySettings(**({"frontier_timeout_s": 0.5} | settings))
        self.metrics = ParityMetrics()
        for room in (ROOM, OTHER):
            self.monolith.add_room(room)

    def put(self, *rows: LegacyMessageRow) -> None:
        for r in rows:
            self.monolith.put(r)
        self.pipeline.write()

    def carry(self, rooms: Sequence[int] = (ROOM, OTHER)) -> None:
        """The pipeline carries the monolith's current state into the read model."""
        events: list[Event] = []
        for room in rooms:
            self.position += 1
            read = self.monolith.read_range(room, 0, 2**64 - 1, 1_000_000)
            live = {m.message_id for m in read.live}
            events += [MessageUpserted(m, self.position, 0) for m in read.live]
            events += [MessageDeleted(room, mid, self.position, 0) for mid in read.deleted]
            held = {m.message_id for m in self.store.after(room, 0, 1_000_000)}
            events += [MessageDeleted(room, mid, self.position, 0) for mid in held - live]
            events += [
                CursorMoved(cursor, self.position, 0)
                for key, cursor in self.monolith.read_cursors(
                    [k for k in self.monolith.cursors if k[0] == room]
                ).items()
            ]
        self.store.apply(events)
        self.pipeline.carry(list(rooms))

    def check(self, **options: Any) -> ParityCheck:
        return ParityCheck(
            self.monolith, self.store, MemoryRoomCursors(self.monolith), self.pipeline,
            self.phases, self.settings, metrics=self.metrics, tuning=options.pop("tuning", FAST),
            log=logging.getLogger("test"), **options,
        )  # fmt: skip

    def run(
        self, rooms: Sequence[int] = (ROOM,), *, mark: bool = True, check: ParityCheck | None = None
    ) -> tuple[ParityOutcome, ParityResult]:
        pieces: list[str] = []
        writers: list[DocumentWriter] = []

        def open_sink(header: Header) -> DocumentWriter:
            writers.append(DocumentWriter(pieces.append, header))
            return writers[0]

        request = ParityRequest(list(rooms), ",".join(map(str, rooms)), "tester", mark)
        outcome = asyncio.run((check or self.check()).run(request, open_sink))
        writers[0].close(outcome.summary)
        return outcome, decode("".join(pieces))


def sides_of(
    monolith: InMemoryMonolith, read_model: Path
) -> tuple[InMemoryMonolith, SqliteReadStore, MemoryRoomCursors]:
    """What a scanning process of a test reads with: a copy of the monolith (pickled into the
    process) and the read model's SQLite file."""
    return monolith, SqliteReadStore(read_model), MemoryRoomCursors(monolith)
