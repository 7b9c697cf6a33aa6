"""The memory pipeline holds the Pipeline contract."""

from __future__ import annotations

from collections.abc import Sequence

from migrator.adapters.embedded.memory_pipeline import MemoryPipeline
from migrator.ports import Pipeline
from tests.contracts.pipeline import PARTITIONS, PipelineContract, PipelineRig


class MemoryRig:
    def __init__(self) -> None:
        self.model = MemoryPipeline(PARTITIONS)

    @property
    def pipeline(self) -> Pipeline:
        return self.model

    async def write(self) -> None:
        self.model.write()

    async def source(self, rooms: Sequence[int], at: str | None = None) -> None:
        self.model.source(rooms, at)

    async def capture(self) -> None:
        self.model.capture()

    async def update(self) -> None:
        self.model.update()

    async def close(self) -> None:
        await self.model.close()


class TestMemoryPipeline(PipelineContract):
    async def rig(self) -> PipelineRig:
        return MemoryRig()
