"""Convergence on the embedded adapters: hundreds of examples (the property: tests/convergence.py)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newcore.adapters.embedded.file_event_log import FileEventLog
from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from tests.support.convergence import PARTITIONS, Legacy, Rig, ops, play

SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # fsync is free on tmpfs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=5, max_size=80))
def test_the_read_model_ends_equal_to_the_monolith(program: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as root:
        legacy = Legacy()
        store = SqliteReadStore(":memory:")
        rig = Rig(
            legacy, legacy.truth,
            FileEventLog(Path(root) / "hints", PARTITIONS),
            FileEventLog(Path(root) / "events", PARTITIONS),
            FileEventLog(Path(root) / "dead", PARTITIONS),
            store,
        )  # fmt: skip
        try:
            asyncio.run(play(program, rig))
        finally:
            store.close()
