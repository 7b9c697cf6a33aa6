"""`chat-migrate job ...` on an in-memory job board, through `run_guarded` (the real exit codes
and messages): each change recorded with who and why; bad input one line on stderr, exit 2,
the board never opened; a control store down exit 4."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import typer

from gateway.adapters.embedded.memory_job_board import MemoryJobBoard
from gateway.domain.jobs import JobControl, JobState
from gateway.errors import ControlStoreUnavailable
from migrator.entrypoints.commands import jobs
from migrator.entrypoints.commands.jobs import JobsParts
from migrator.entrypoints.failures import run_guarded

RUN, PAUSE, PANIC = JobState.RUN, JobState.PAUSE, JobState.PANIC


@dataclass
class Ran:
    code: int
    out: str
    err: str


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
        self.board = MemoryJobBoard()
        self.opened = 0
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        self.app = typer.Typer(name="chat-migrate", add_completion=False)

        @self.app.callback()
        def root() -> None:
            """chat-migrate, for tests."""

        @contextmanager
        def wiring() -> Iterator[JobsParts]:
            self.opened += 1
            yield JobsParts(self.board, "ops:default")

        jobs.register(self.app, wiring)

    def __call__(self, *args: str) -> Ran:
        self._capsys.readouterr()
        self._monkeypatch.setattr(sys, "argv", ["chat-migrate", *args])
        code = run_guarded(self.app)
        out, err = self._capsys.readouterr()
        return Ran(code, out, err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


def test_pause_resume_panic_and_rate_are_recorded_with_who_and_why(cli: Cli) -> None:
    ran = cli("job", "pause", "backfill", "--why", "monolith slow", "--who", "ops:alice")
    assert ran.code == 0, ran.err
    assert "job backfill: pause at its own rate (set by ops:alice" in ran.out
    assert "monolith slow" in ran.out and "job resume backfill" in ran.out
    control = cli.board.control("backfill")
    assert (control.state, control.who, control.why) == (PAUSE, "ops:alice", "monolith slow")

    assert cli("job", "rate", "backfill", "250", "--why", "slower").code == 0
    control = cli.board.control("backfill")
    assert (control.state, control.rate, control.who) == (PAUSE, 250.0, "ops:default")

    assert cli("job", "resume", "backfill", "--why", "better").code == 0
    assert (cli.board.control("backfill").state, cli.board.control("backfill").rate) == (RUN, 250)

    assert cli("job", "rate", "backfill", "1e3", "--why", "x").code == 0
    assert cli.board.control("backfill").rate == 1000.0
    assert cli("job", "rate", "backfill", "--clear", "--why", "own rate").code == 0
    assert cli.board.control("backfill").rate is None

    ran = cli("job", "panic", "backfill", "--why", "capture lag")
    assert ran.code == 0 and "stops at once" in ran.out and "checkpoint kept" in ran.out
    assert cli.board.control("backfill").state is PANIC


def test_set_changes_state_and_rate_in_one_change(cli: Cli) -> None:
    ran = cli("job", "set", "repair", "--state", "pause", "--rate", "12.5", "--why", "both",
              "--json")  # fmt: skip
    assert ran.code == 0, ran.err
    answer = json.loads(ran.out)
    assert answer["control"]["state"] == "pause" and answer["control"]["rate"] == 12.5
    assert cli("job", "set", "repair", "--clear-rate", "--why", "own").code == 0
    assert cli.board.control("repair").rate is None
    assert cli.board.control("repair").state is PAUSE


def test_list_and_show_give_controls_and_heartbeats(cli: Cli) -> None:
    assert cli("job", "list").out.strip() == "no job has been controlled or has reported yet"
    cli.board.set_control("repair", "ops:alice", "hold", state=PAUSE, rate=40)
    cli.board.report("backfill", "backfill", json.dumps({"detail": {"sent": 120}}))
    ran = cli("job", "list")
    assert ran.code == 0
    lines = ran.out.splitlines()
    assert lines[0].startswith("backfill: run at its own rate (never controlled)")
    assert "last heartbeat [backfill]" in lines[1] and '"sent": 120' in lines[1]
    assert lines[2].startswith("repair: pause at 40 messages/s (set by ops:alice")
    assert "no heartbeat" in lines[3]
    listed = json.loads(cli("job", "list", "--json").out)["jobs"]
    assert [j["job"] for j in listed] == ["backfill", "repair"]
    assert listed[0]["report"]["detail"] == {"detail": {"sent": 120}}
    assert listed[1]["control"]["state"] == "pause" and listed[1]["report"] is None
    shown = json.loads(cli("job", "show", "backfill", "--json").out)
    assert shown == listed[0]
    never = json.loads(cli("job", "show", "other", "--json").out)
    assert never["control"]["state"] == "run" and never["report"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["job", "rate", "backfill", "0", "--why", "x"], "N: a rate is above 0"),
        (["job", "rate", "backfill", "-1", "--why", "x"], "N: a rate is above 0 and at most "
         "10000000 messages/s, got '-1'"),
        (["job", "rate", "backfill", "abc", "--why", "x"], "N: a rate is a number"),
        (["job", "rate", "backfill", "nan", "--why", "x"], "N: a rate is a number"),
        (["job", "rate", "backfill", "inf", "--why", "x"], "N: a rate is above 0 and at most"),
        (["job", "rate", "backfill", "--why", "x"], "give N (messages per second) or --clear"),
        (["job", "rate", "backfill", "5", "--clear", "--why", "x"], "give N"),
        (["job", "set", "backfill", "--state", "stop", "--why", "x"],
         "--state: a job state is one of run, pause, panic, got 'stop'"),
        (["job", "set", "backfill", "--rate", "-1", "--why", "x"], "--rate: a rate is above 0"),
        (["job", "set", "backfill", "--why", "x"], "nothing to change"),
        (["job", "set", "backfill", "--rate", "5", "--clear-rate", "--why", "x"],
         "give a rate or clear it, not both"),
        (["job", "pause", "Backfill", "--why", "x"], "JOB: a job name is"),
        (["job", "pause", "back fill", "--why", "x"], "JOB: a job name is"),
        (["job", "pause", "x" * 65, "--why", "x"], "JOB: a job name is"),
        (["job", "show", "-x"], None),
        (["job", "pause", "backfill"], "job pause needs --why"),
        (["job", "panic", "backfill", "--why", "  "], "job panic needs --why"),
        (["job", "resume", "backfill", "--why", "x" * 1001], "--why: why is at most"),
        (["job", "pause", "backfill", "--why", "x", "--who", "a\nb"], "--who: who must be one line"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_nothing_opened(
    cli: Cli, args: list[str], message: str | None
) -> None:
    cli.board.set_control("backfill", "ops", "before", state=PAUSE, rate=7)
    before = cli.board.controls()
    ran = cli(*args)
    assert ran.code == 2, (ran.code, ran.out, ran.err)
    if message is not None:
        assert ran.err.startswith("chat-migrate: ") and message in ran.err, ran.err
        assert len(ran.err.strip().splitlines()) == 1, ran.err
    assert cli.opened == 0
    assert cli.board.controls() == before


@pytest.mark.parametrize("word", ["stop", "paused", "RUN"])
def test_an_unknown_state_word_is_one_line_and_exit_2(cli: Cli, word: str) -> None:
    ran = cli("job", word, "backfill", "--why", "x")
    assert ran.code == 2
    assert ran.err.strip() == (
        f"chat-migrate: job {word!r}: not a job command; a job's state is set with pause, "
        "resume (run) or panic, its rate with rate (`chat-migrate job --help`)"
    )
    assert cli.opened == 0 and cli.board.controls() == []


def test_a_control_store_down_is_exit_4(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: object, **kwargs: object) -> JobControl:
        raise ControlStoreUnavailable("control store, set job control: connection refused")

    monkeypatch.setattr(cli.board, "set_control", down)
    ran = cli("job", "pause", "backfill", "--why", "x")
    assert ran.code == 4 and "connection refused" in ran.err and "run the command again" in ran.err


def test_every_job_command_has_help(cli: Cli) -> None:
    for command in ["list", "show", "pause", "resume", "panic", "rate", "set"]:
        ran = cli("job", command, "--help")
        assert ran.code == 0 and "Usage" in ran.out, command
    assert "pause" in cli("job", "--help").out
