"""The Pipeline contract (migrator/ports.py): one suite, run unchanged against the Kafka
adapter on the real services and the memory one.

A subclass provides `await rig()`: a fresh pipeline of its own (topics, groups, checkpoint)
and a `PipelineRig` that plays its processes: the monolith committing a transaction, the
binlog source appending hints with a checkpoint, the capturer consuming every hint into
events, the updater consuming every event, each as the real process does it (transactions and
offsets included).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from migrator.domain.parity import binlog_order
from migrator.ports import Frontier, Pipeline

PARTITIONS = 4


class PipelineRig(Protocol):
    @property
    def pipeline(self) -> Pipeline: ...

    async def write(self) -> None:
        """The monolith commits one transaction (its binlog moves on)."""
        ...

    async def source(self, rooms: Sequence[int], at: str | None = None) -> None:
        """The binlog source appends a hint per room and checkpoints at `at` ("file:pos";
        default: where the monolith's binlog ends now), in one transaction."""
        ...

    async def capture(self) -> None:
        """The capturer consumes every hint appended so far (events out, offsets committed)."""
        ...

    async def update(self) -> None:
        """The updater consumes every event appended so far."""
        ...

    async def close(self) -> None: ...


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def next_file(frontier: Frontier) -> str:
    """A position in the binlog file after the frontier's, at its first offset."""
    file = frontier.binlog.rpartition(":")[0]
    stem, _, number = file.rpartition(".")
    return f"{stem}.{int(number) + 1:0{len(number)}d}:4"


class PipelineContract:
    async def rig(self) -> PipelineRig:
        raise NotImplementedError

    def test_mark_is_where_the_binlog_ends_now_and_moves_on_with_a_write(self) -> None:
        async def scenario() -> None:
            rig = await self.rig()
            try:
                before = time.time()
                first = await rig.pipeline.mark()
                await rig.write()
                second = await rig.pipeline.mark()
                assert binlog_order(second.binlog) > binlog_order(first.binlog)
                assert before - 1 <= first.at_unix <= second.at_unix <= time.time() + 1
            finally:
                await rig.close()

        run(scenario)

    def test_the_source_checkpoint_is_none_until_the_source_checkpoints(self) -> None:
        async def scenario() -> None:
            rig = await self.rig()
            try:
                assert await rig.pipeline.source_checkpoint() is None
                frontier = await rig.pipeline.mark()
                await rig.source([1])
                assert await rig.pipeline.source_checkpoint() == frontier.binlog
                later = next_file(frontier)
                await rig.source([1], at=later)
                assert await rig.pipeline.source_checkpoint() == later
            finally:
                await rig.close()

        run(scenario)

    def test_nothing_checkpointed_is_not_reached(self) -> None:
        async def scenario() -> None:
            rig = await self.rig()
            try:
                frontier = await rig.pipeline.mark()
                assert await rig.pipeline.reached(frontier) is False
                assert await rig.pipeline.capture_lag() == 0
            finally:
                await rig.close()

        run(scenario)

    def test_a_frontier_is_reached_only_through_every_stage_in_order(self) -> None:
        async def scenario() -> None:
            rig = await self.rig()
            p = rig.pipeline
            try:
                earlier = await p.mark()
                await rig.source([], at=earlier.binlog)
                await rig.write()  # committed after the checkpoint
                frontier = await p.mark()
                assert await p.reached(frontier) is False, "the source is behind the frontier"
                await rig.source([1, 2, 3, 11])
                assert await p.reached(frontier) is False, "the capturer has not consumed"
                await rig.capture()
                assert await p.reached(frontier) is False, "the updater has not applied"
                await rig.update()
                assert await p.reached(frontier) is True
                assert await p.reached(earlier) is True
            finally:
                await rig.close()

        run(scenario)

    def test_an_idle_pipeline_after_transactions_reaches_a_new_frontier(self) -> None:
        """Transaction markers after the last records: the groups' committed offsets stay below
        the end offsets, and the pipeline is still caught up."""

        async def scenario() -> None:
            rig = await self.rig()
            p = rig.pipeline
            try:
                for rooms in ([1, 2], [3], [4, 5, 6, 7]):
                    await rig.source(rooms)
                    await rig.capture()
                    await rig.update()
                frontier = await p.mark()
                await rig.source([])  # a checkpoint with no hint, as after an idle stretch
                assert await p.reached(frontier) is True
            finally:
                await rig.close()

        run(scenario)

    def test_once_reached_a_frontier_stays_reached(self) -> None:
        async def scenario() -> None:
            rig = await self.rig()
            p = rig.pipeline
            try:
                frontier = await p.mark()
                await rig.source([9])
                await rig.capture()
                await rig.update()
                assert await p.reached(frontier) is True
                await rig.source([9, 10])  # later hints, not consumed
                assert await p.reached(frontier) is True
            finally:
                await rig.close()

        run(scenario)

    def test_hints_appended_after_the_first_look_do_not_hold_a_frontier_back(self) -> None:
        """The hints that count are those appended until the checkpoint was seen past the
        frontier; a later look only waits for them."""

        async def scenario() -> None:
            rig = await self.rig()
            p = rig.pipeline
            try:
                frontier = await p.mark()
                await rig.source([5])
                assert await p.reached(frontier) is False  # the capturer is behind
                await rig.capture()
                await rig.source([5, 6])  # written after, not captured yet
                await rig.update()  # the events of the first hint are applied
                assert await p.reached(frontier) is True
            finally:
                await rig.close()

        run(scenario)

    def test_a_checkpoint_in_a_later_binlog_file_is_past(self) -> None:
        async def scenario() -> None:
            rig = await self.rig()
            p = rig.pipeline
            try:
                frontier = await p.mark()
                await rig.source([8], at=next_file(frontier))
                await rig.capture()
                await rig.update()
                assert await p.reached(frontier) is True
            finally:
                await rig.close()

        run(scenario)

    def test_capture_lag_counts_hints_the_capturer_has_not_consumed(self) -> None:
        async def scenario() -> None:
            rig = await self.rig()
            p = rig.pipeline
            try:
                await rig.source([1, 2, 3, 4, 5, 1, 1])
                assert await p.capture_lag() >= 7
                await rig.capture()
                # Kafka: a transaction marker after the last hint of each partition written.
                assert await p.capture_lag() <= PARTITIONS
                await rig.source([1, 2])
                lag = await p.capture_lag()
                assert 2 <= lag <= 2 + 2 * PARTITIONS  # the earlier markers, and the new ones
            finally:
                await rig.close()

        run(scenario)
