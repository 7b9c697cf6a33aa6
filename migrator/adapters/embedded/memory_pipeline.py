"""The `Pipeline` port in memory: a model of the capture pipeline's positions, for unit tests
and the embedded engine. It holds the same contract as the Kafka adapter
(`tests/contracts/pipeline.py`) and follows the same stages: the binlog source's checkpoint at
or past the frontier, then the capturer past the hints appended until then, then the updater
past the events appended until the capturer got there.

Whoever plays the pipeline moves it (`write`, `source`, `capture`, `update`, or `carry` for
all of them): the model has no processes of its own. The binlog is one file whose offset grows
by `STEP` per write, so positions read like MariaDB's (`memory-bin.000001:4`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from migrator.domain.parity import binlog_order
from migrator.ports import Frontier
from newcore.domain.partitioning import partition_for

FILE = "memory-bin.000001"
STEP = 100


@dataclass
class _Progress:
    source_past: bool = False
    hints_ends: list[int] | None = None
    events_ends: list[int] | None = None
    done: bool = False


@dataclass
class MemoryPipeline:
    partitions: int = 4
    binlog_end: int = 4  # where the monolith's binlog ends (offset in FILE)
    checkpoint: str | None = None  # the binlog source's last checkpoint ("file:pos")
    hints: list[int] = field(default_factory=list)  # end offset per partition
    captured: list[int] = field(default_factory=list)  # the capturer's committed offsets
    events: list[int] = field(default_factory=list)
    applied: list[int] = field(default_factory=list)  # the updater's committed offsets
    looks: int = 0  # calls of `reached`, for tests that count them
    _progress: dict[Frontier, _Progress] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for counts in (self.hints, self.captured, self.events, self.applied):
            counts[:] = [0] * self.partitions

    # -- playing the pipeline --------------------------------------------------------------

    def position(self) -> str:
        return f"{FILE}:{self.binlog_end}"

    def write(self, count: int = 1) -> str:
        """The monolith commits `count` transactions; returns where its binlog ends now."""
        self.binlog_end += STEP * count
        return self.position()

    def source(self, rooms: Sequence[int] = (), at: str | None = None) -> None:
        """The binlog source appends a hint per room and checkpoints at `at` (default: the
        binlog's end), in one transaction."""
        if at is not None:
            binlog_order(at)
        for room in rooms:
            self.hints[partition_for(room, self.partitions)] += 1
        self.checkpoint = at or self.position()

    def capture(self) -> None:
        """The capturer consumes every hint appended, one event per hint."""
        for p in range(self.partitions):
            self.events[p] += self.hints[p] - self.captured[p]
            self.captured[p] = self.hints[p]

    def update(self) -> None:
        """The updater applies every event appended."""
        self.applied[:] = self.events

    def carry(self, rooms: Sequence[int] = ()) -> None:
        """Everything the monolith committed, through every stage."""
        self.source(rooms)
        self.capture()
        self.update()

    # -- the port --------------------------------------------------------------------------

    async def mark(self) -> Frontier:
        return Frontier(self.position(), time.time())

    async def reached(self, frontier: Frontier) -> bool:
        self.looks += 1
        target = binlog_order(frontier.binlog)
        progress = self._progress.setdefault(frontier, _Progress())
        if progress.done:
            return True
        if not progress.source_past:
            if self.checkpoint is None or binlog_order(self.checkpoint) < target:
                return False
            progress.source_past = True
        if progress.hints_ends is None:
            progress.hints_ends = list(self.hints)
        if any(c < e for c, e in zip(self.captured, progress.hints_ends, strict=True)):
            return False
        if progress.events_ends is None:
            progress.events_ends = list(self.events)
        if any(a < e for a, e in zip(self.applied, progress.events_ends, strict=True)):
            return False
        progress.done = True
        return True

    async def source_checkpoint(self) -> str | None:
        return self.checkpoint

    async def capture_lag(self) -> int:
        return sum(h - c for h, c in zip(self.hints, self.captured, strict=True))

    async def close(self) -> None:
        return None
