"""Convergence on the embedded adapters: hundreds of examples of the property
(tests/support/convergence.py), run by the capture and update workers that `chat-capturer` and
`chat-updater` run, over the embedded subscription."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from newcore.adapters.embedded.sqlite_read_store import SqliteReadStore
from tests.support.convergence import DEATHS, FilePipeline, Legacy, Rig, ops, play

SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # fsync is free on tmpfs


def deaths(test: Any) -> Any:
    for program in DEATHS:
        test = example(program)(test)
    return test


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=5, max_size=80))
@deaths
def test_the_read_model_ends_equal_to_the_monolith(program: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as root:
        legacy = Legacy()
        store = SqliteReadStore(":memory:")
        rig = Rig(legacy, FilePipeline(Path(root), legacy.truth, store), store)
        try:
            asyncio.run(play(program, rig))
        finally:
            store.close()
