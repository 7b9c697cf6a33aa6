"""`chat-migrate parity` over the in-memory parity world (rig.py), through `run_guarded` (the
real exit codes and messages): a clean run exits 0 and says where its reports are; differences
exit 1; a late room exits 4; every nonsense argument and unknown rooms exit 2 with the job's
check never run and nothing marked."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from migrator.adapters.embedded.memory_cursors import MemoryRoomCursors
from migrator.adapters.report.json_report import read_result
from migrator.domain.parity import Difference, Kind
from migrator.entrypoints.commands import parity as command
from migrator.entrypoints.failures import run_guarded
from migrator.service.parity import ParityCheck, ParityJob, ParityMetrics, ProgressView
from migrator.settings import MigratorSettings, ParitySettings
from tests.unit.migrator.parity.rig import FAST, OTHER, ROOM, World, row


@dataclass
class Ran:
    code: int
    out: str
    err: str


class Catalog:
    def __init__(self, rooms: Sequence[int]) -> None:
        self._rooms = sorted(rooms)

    def room_ids(self) -> Iterator[int]:
        return iter(self._rooms)

    def exists(self, room_ids: Sequence[int]) -> set[int]:
        return {r for r in room_ids if r in self._rooms}


class Cli:
    def __init__(
        self, tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.world = World(tmp)
        self.reports = tmp / "reports"
        self.opened: list[ParitySettings] = []
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        monkeypatch.setattr(command, "job_logging", lambda ops: logging.getLogger("test.cli"))
        self.app = typer.Typer(name="chat-migrate", add_completion=False)

        @self.app.callback()
        def root() -> None:
            """chat-migrate, for tests."""

        command.register(self.app, self)

    def settings(self) -> MigratorSettings:
        settings = MigratorSettings.from_env()
        ops = settings.ops.model_copy(update={"metrics_port": 0, "who": "ops:default"})
        parity = self.world.settings.model_copy(update={"reports_dir": self.reports})
        return settings.model_copy(update={"ops": ops, "parity": parity})

    @asynccontextmanager
    async def job(
        self,
        settings: MigratorSettings,
        parity: ParitySettings,
        metrics: ParityMetrics,
        progress: ProgressView,
        log: logging.Logger,
    ) -> AsyncIterator[ParityJob]:
        self.opened.append(parity)
        w = self.world
        check = ParityCheck(
            w.monolith, w.store, MemoryRoomCursors(w.monolith), w.pipeline, w.phases, parity,
            metrics=metrics, progress=progress, log=log, tuning=FAST,
        )  # fmt: skip
        yield ParityJob(check, Catalog([ROOM, OTHER]))

    def __call__(self, *args: str) -> Ran:
        self._capsys.readouterr()
        self._monkeypatch.setattr(sys, "argv", ["chat-migrate", *args])
        code = run_guarded(self.app)
        out, err = self._capsys.readouterr()
        return Ran(code, out, err)


@pytest.fixture
def cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    made = Cli(tmp_path, capsys, monkeypatch)
    yield made
    made.world.store.close()


def reports(ran: Ran) -> tuple[Path, Path]:
    json_line = next(line for line in ran.out.splitlines() if line.startswith("JSON result: "))
    html_line = next(line for line in ran.out.splitlines() if line.startswith("HTML report: "))
    return Path(json_line.split(": ", 1)[1]), Path(html_line.split(": ", 1)[1].split(" (")[0])


def test_a_clean_run_exits_0_marks_and_says_where_its_reports_are(cli: Cli) -> None:
    cli.world.put(*(row(i) for i in range(1, 8)))
    cli.world.carry()
    ran = cli("parity", "all", "--who", "ops:alice")
    assert ran.code == 0, ran.err
    result, html = reports(ran)
    assert result.parent.parent == cli.reports and result.name == "parity.json"
    assert html == result.parent / "parity.html" and html.exists()
    assert "rooms: 2 clean, 0 different, 0 late (2 marked clean)" in ran.out
    assert cli.world.phases.marks(ROOM, 1)[0].who == "ops:alice"
    assert not list(result.parent.glob("*.partial"))


def test_differences_exit_1_and_the_reports_hold_them(cli: Cli, tmp_path: Path) -> None:
    cli.world.put(*(row(i) for i in range(1, 8)))
    cli.world.carry()
    cli.world.monolith.put(row(3, "changed behind the pipeline's back"))
    cli.world.pipeline.write()
    cli.world.pipeline.carry()
    ran = cli("parity", f"{ROOM}", "--out", str(tmp_path / "elsewhere"), "--no-mark")
    assert ran.code == 1, ran.err
    result, html = reports(ran)
    assert result.is_relative_to(tmp_path / "elsewhere")
    found = [item for item in read_result(result) if isinstance(item, Difference)]
    assert [(d.kind, d.message_id, d.field) for d in found] == [(Kind.FIELD_DIFFERS, 3, "body")]
    assert "changed behind the pipeline&#x27;s back" in html.read_text(encoding="utf-8")
    assert "room 7: different (1 field_differs)" in ran.out
    assert cli.world.phases.room(ROOM).parity_clean_at is None


def test_json_output_and_a_late_room_exit_4(cli: Cli) -> None:
    cli.world.put(row(1))  # never carried: the pipeline does not reach the frontier
    ran = cli("parity", str(ROOM), "--json")
    assert ran.code == 4, ran.err
    said = json.loads(ran.out)
    assert said["rooms"] == {"clean": 0, "different": 0, "late": 1} and said["exit_code"] == 4
    assert Path(said["result"]).exists() and Path(said["html"]).exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["parity", "abc"], "'abc' in ROOMS is not a room id"),
        (["parity", ""], "ROOMS is empty"),
        (["parity", "0"], "is not a room id"),
        (["parity", "150%"], "is not a percentage"),
        (["parity", "@/nonexistent/rooms.txt"], "cannot read the room list"),
        (["parity", "all", "--who", ""], "who must not be empty"),
        (["parity", "all", "--who", "two\nlines"], "who must be one line"),
        (["parity", "all", "--frobnicate"], "No such option"),
        (["parity", "12345"], "unknown room(s) 12345"),
    ],
)
def test_nonsense_is_refused_with_exit_2_and_nothing_run(
    cli: Cli, args: list[str], says: str
) -> None:
    ran = cli(*args)
    assert ran.code == 2, (ran.out, ran.err)
    assert says in ran.err
    assert not cli.reports.exists()  # nothing compared, no report
    assert cli.world.phases.room(ROOM).parity_clean_at is None


def test_out_must_be_a_directory(cli: Cli, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    ran = cli("parity", "all", "--out", str(a_file))
    assert ran.code == 2 and "is not a directory" in ran.err
    assert cli.opened == []


def test_help_says_what_the_exit_codes_mean(cli: Cli) -> None:
    ran = cli("parity", "--help")
    assert ran.code == 0
    flat = " ".join(ran.out.split())
    assert "1 differences found" in flat and "0 every room clean" in flat and "--no-mark" in flat
