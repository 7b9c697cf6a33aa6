"""The cutover commands on in-memory parts: a Typer app of the test's own with the commands
registered on a MemoryPhaseStore, a MemoryRoomCatalog and a dict of checkpoints, run through
`run_guarded` (the real exit codes and messages)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import typer

from gateway.adapters.embedded.memory_phase_store import MemoryPhaseStore, MemoryRoomCatalog
from migrator.entrypoints.commands import cutover
from migrator.entrypoints.commands.cutover import CutoverParts
from migrator.entrypoints.failures import run_guarded

ROOMS = list(range(1, 201))


class Checkpoints:
    """The part of CheckpointStore that status reads (jobs), over a dict."""

    def __init__(self) -> None:
        self.saved: dict[str, tuple[str, str]] = {}

    def load(self, job: str) -> tuple[str, str] | None:
        return self.saved.get(job)

    def save(self, job: str, kind: str, state: str) -> None:
        self.saved[job] = (kind, state)

    def delete(self, job: str) -> None:
        self.saved.pop(job, None)

    def jobs(self) -> list[tuple[str, str, str]]:
        return [(job, *self.saved[job]) for job in sorted(self.saved)]


@dataclass
class Ran:
    code: int
    out: str
    err: str


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.store = MemoryPhaseStore()
        self.catalog = MemoryRoomCatalog(ROOMS)
        self.checkpoints = Checkpoints()
        self.opened = 0
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        self.app = typer.Typer(name="chat-migrate", add_completion=False)

        @self.app.callback()
        def root() -> None:
            """chat-migrate, for tests."""

        @contextmanager
        def wiring() -> Iterator[CutoverParts]:
            self.opened += 1
            yield CutoverParts(
                self.store, self.catalog, self.checkpoints, "ops:test", 3600.0, self.clock
            )

        cutover.register(self.app, wiring)

    def __call__(self, *args: str) -> Ran:
        self._capsys.readouterr()
        self._monkeypatch.setattr(sys, "argv", ["chat-migrate", *args])
        code = run_guarded(self.app)
        out, err = self._capsys.readouterr()
        return Ran(code, out, err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)
