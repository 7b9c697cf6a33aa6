"""`chat-migrate backfill` over the in-memory backfill world (rig.py), through `run_guarded`
(the real exit codes and messages): a run prints its summary; every nonsense argument is one
line on stderr and exit 2 with the job never opened; refusals of the job itself (unknown rooms,
a checkpoint of another data set) exit 2 with nothing appended or marked."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import typer

from migrator.entrypoints.commands import backfill as command
from migrator.entrypoints.failures import run_guarded
from migrator.service.backfill import Backfill, BackfillMetrics, ProgressView
from migrator.settings import BackfillSettings, MigratorSettings
from newcore.settings import CapturerSettings
from tests.unit.migrator.backfill.rig import RANGE_PAGE, World


@dataclass
class Ran:
    code: int
    out: str
    err: str


class Bar:
    def __init__(self) -> None:
        self.total = self.done = 0
        self.closed = False

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def advance(self, rows: int) -> None:
        self.done += rows

    def note(self, fields: Mapping[str, str]) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.world = World()
        for size in (25, 7, 0):
            self.world.room(size)
        self.opened: list[BackfillSettings] = []
        self.bar = Bar()
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        monkeypatch.setattr(command, "job_logging", lambda ops: logging.getLogger("test.cli"))
        monkeypatch.setattr(command, "TqdmProgress", lambda job: self.bar)
        self.app = typer.Typer(name="chat-migrate", add_completion=False)

        @self.app.callback()
        def root() -> None:
            """chat-migrate, for tests."""

        command.register(self.app, self)

    # -- the wiring ----------------------------------------------------------------------

    def settings(self) -> MigratorSettings:
        settings = MigratorSettings.from_env()
        ops = settings.ops.model_copy(update={"metrics_port": 0, "who": "ops:default"})
        backfill = BackfillSettings(chunk_rows=10, rooms_in_parallel=2, rate=1000)
        return settings.model_copy(
            update={
                "capturer": CapturerSettings(range_page=RANGE_PAGE), "ops": ops,
                "backfill": backfill,
            }
        )  # fmt: skip

    @asynccontextmanager
    async def job(
        self,
        settings: MigratorSettings,
        backfill: BackfillSettings,
        who: str,
        metrics: BackfillMetrics,
        progress: ProgressView,
        log: logging.Logger,
    ) -> AsyncIterator[Backfill]:
        self.opened.append(backfill)
        yield self.world.backfill(settings=backfill, metrics=metrics, progress=progress)

    def __call__(self, *args: str) -> Ran:
        self._capsys.readouterr()
        self._monkeypatch.setattr(sys, "argv", ["chat-migrate", *args])
        code = run_guarded(self.app)
        out, err = self._capsys.readouterr()
        return Ran(code, out, err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


def test_a_backfill_runs_and_says_what_it_did(cli: Cli) -> None:
    ran = cli("backfill", "all", "--chunk-rows", "10", "--rooms-in-parallel", "2", "--rate", "500")
    assert ran.code == 0, ran.err
    assert "backfill backfill: done (started): 3 rooms, 32 messages planned" in ran.out
    assert "marked 3 rooms backfilled and sent 32 messages" in ran.out
    assert cli.opened[0].chunk_rows == 10 and cli.opened[0].rooms_in_parallel == 2
    assert cli.opened[0].rate == 500
    assert (cli.bar.total, cli.bar.done, cli.bar.closed) == (32, 32, True)
    for room in cli.world.rooms:
        assert cli.world.marks(room) == 1
    marks = cli.world.phases.marks(cli.world.rooms[0], 1)
    assert marks[0].who == "ops:default"
    again = cli("backfill", "all")
    assert again.code == 0 and "(resumed)" in again.out and "sent 0 messages" in again.out


def test_who_and_the_job_name_are_the_operators(cli: Cli) -> None:
    room = cli.world.rooms[1]
    ran = cli("backfill", str(room), "--job", "room-7.backfill", "--who", "ops:alice")
    assert ran.code == 0, ran.err
    assert cli.world.phases.marks(room, 1)[0].who == "ops:alice"
    assert cli.world.checkpoints.load("room-7.backfill") is not None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["backfill", "abc"], "'abc' in ROOMS is not a room id"),
        (["backfill", ""], "ROOMS is empty"),
        (["backfill", "150%"], "is not a percentage"),
        (["backfill", "@/nonexistent/rooms.txt"], "cannot read the room list"),
        (["backfill", "all", "--order", "biggest"], "--order is one of hot, size, id"),
        (["backfill", "all", "--rate", "0"], "a rate is above 0"),
        (["backfill", "all", "--rate", "-5"], "a rate is above 0"),
        (["backfill", "all", "--rate", "fast"], "Invalid value for '--rate'"),
        (["backfill", "all", "--rooms-in-parallel", "0"], "--rooms-in-parallel"),
        (["backfill", "all", "--chunk-rows", "0"], "--chunk-rows"),
        (
            ["backfill", "all", "--chunk-rows", "51"],
            "--chunk-rows 51 is more than the capturer's range page (50, MIG_CAPTURER_RANGE_PAGE)",
        ),
        (["backfill", "all", "--job", "Bad Name"], "a job name is 1..64"),
        (["backfill", "all", "--who", ""], "who must not be empty"),
        (["backfill", "all", "--unknown"], "No such option"),
        (["backfill"], "Missing argument 'ROOMS'"),
    ],
)
def test_a_nonsense_argument_exits_2_before_anything_opens(
    cli: Cli, args: list[str], says: str
) -> None:
    ran = cli(*args)
    assert ran.code == 2, (ran.out, ran.err)
    assert says in ran.err
    assert "Traceback" not in ran.err
    assert cli.opened == []


def test_unknown_rooms_exit_2_with_nothing_changed(cli: Cli) -> None:
    ran = cli("backfill", f"{cli.world.rooms[0]},4000000000")
    assert ran.code == 2
    assert "unknown room(s) 4000000000" in ran.err
    assert cli.world.log.appends == [] and cli.world.checkpoints.jobs() == []


def test_a_checkpoint_of_another_data_set_exits_2_and_restart_forgets_it(cli: Cli) -> None:
    assert cli("backfill", "all").code == 0
    cli.world.history._fingerprint = "memory:another"  # the monolith was swapped
    appended, saved = len(cli.world.log.appends), cli.world.checkpoints.jobs()
    ran = cli("backfill", "all")
    assert ran.code == 2 and "another data set" in ran.err and "--restart" in ran.err
    assert len(cli.world.log.appends) == appended and cli.world.checkpoints.jobs() == saved
    ran = cli("backfill", "all", "--restart")
    assert ran.code == 0 and "(started)" in ran.out
    assert len(cli.world.log.appends) > appended


def test_a_checkpoint_of_another_version_exits_3(cli: Cli) -> None:
    cli.world.checkpoints.save(
        "backfill", "backfill", '{"schema": "chat-migration/backfill-progress", "version": 2}'
    )
    ran = cli("backfill", "all")
    assert ran.code == 3 and "version 2" in ran.err and "--restart" in ran.err


def test_a_service_down_exits_4_and_the_next_run_resumes(cli: Cli) -> None:
    cli.world.log.down = True
    ran = cli("backfill", "all")
    assert ran.code == 4 and "run the command again" in ran.err
    cli.world.log.down = False
    ran = cli("backfill", "all")
    assert ran.code == 0 and "(resumed)" in ran.out
