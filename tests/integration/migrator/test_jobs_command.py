"""`chat-migrate job ...` as an operator runs it (`.venv/bin/chat-migrate` in a subprocess)
against a scratch control database on the real MariaDB (MIG_CONTROL_DB_NAME): a running job
(`JobControls` on the MariaDB job board) obeys pause, rate, resume and panic within about a
second; bad input is one line, exit 2, nothing changed; a control database made before the job
tables gets them. MariaDB missing is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from gateway.adapters.mariadb.control_schema import control_engine
from gateway.adapters.mariadb.job_board import MariaDbJobBoard
from gateway.domain.jobs import JobState
from migrator.errors import PanicStop
from migrator.service.control import JobControls
from tests.support.control_db import scratch_control_database
from tests.support.stack import Stack

CLI = str(Path(sys.executable).with_name("chat-migrate"))
WHO = "ops:integration"


@pytest.fixture(scope="module")
def control(stack: Stack) -> Iterator[tuple[Engine, dict[str, str]]]:
    """The scratch control database's engine, and the environment that points the CLI at it."""
    with scratch_control_database(stack) as (server, name):
        engine = control_engine(server, name)
        env = os.environ | {
            "MIG_MARIADB_HOST": stack.host,
            "MIG_MARIADB_PORT": str(stack.mariadb_port),
            "MIG_DB_NAME": stack.db_name,
            "MIG_DB_USER": stack.db_user,
            "MIG_DB_PASSWORD": stack.db_password,
            "MIG_CONTROL_DB_NAME": name,
            "MIG_MIGRATOR_WHO": WHO,
        }
        try:
            yield engine, env
        finally:
            engine.dispose()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "job", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM job_controls ORDER BY job"))]


def test_a_running_job_obeys_the_cli_within_about_a_second(
    control: tuple[Engine, dict[str, str]],
) -> None:
    """A job's loop on the real board (poll every 0.2 s): the CLI pauses it (no unit of work
    done until resumed), sets its rate (seen at the next read), resumes it, and panics it
    (PanicStop naming who and why)."""
    engine, env = control
    job = "backfill-it"
    controls = JobControls(MariaDbJobBoard(engine), job, "backfill", "it-runner", poll_s=0.2)
    units: list[tuple[float, float | None]] = []

    async def work() -> None:
        while True:
            rate = await controls.checkpoint()
            units.append((time.monotonic(), rate))
            await controls.heartbeat({"units": len(units)})
            await asyncio.sleep(0.02)

    async def run_cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            CLI, "job", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def story() -> str:
        task = asyncio.create_task(work())
        await asyncio.sleep(0.5)
        assert units and units[-1][1] is None  # its own rate
        code, _, err = await run_cli("pause", job, "--why", "monolith slow")
        assert code == 0, err
        paused_at = time.monotonic()
        await asyncio.sleep(1.0)
        done_while_paused = [t for t, _ in units if t > paused_at + 0.5]
        assert done_while_paused == [], "units of work done while paused"
        listed = json.loads((await run_cli("list", "--json"))[1])["jobs"]
        mine = next(j for j in listed if j["job"] == job)
        assert mine["control"]["state"] == "pause" and mine["control"]["who"] == WHO
        assert mine["report"]["detail"]["obeys"]["state"] == "pause"  # heartbeat while paused
        assert (await run_cli("rate", job, "321", "--why", "slower"))[0] == 0
        assert (await run_cli("resume", job, "--why", "better"))[0] == 0
        resumed_at = time.monotonic()
        await asyncio.sleep(1.0)
        after = [(t, r) for t, r in units if t > resumed_at]
        assert after and after[-1][1] == 321.0
        assert after[0][0] - resumed_at < 1.0  # obeyed within about a second
        assert (await run_cli("panic", job, "--why", "capture lag"))[0] == 0
        try:
            await asyncio.wait_for(task, 5)
        except PanicStop as exc:
            return str(exc)
        raise AssertionError("the job did not stop on panic")

    stopped = asyncio.run(story())
    assert f"panic pressed by {WHO}" in stopped and "capture lag" in stopped
    assert "checkpoint is kept" in stopped
    assert MariaDbJobBoard(engine).control(job).state is JobState.PANIC


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rate", "backfill", "0", "--why", "x"], "N: a rate is above 0"),
        (["rate", "backfill", "-1", "--why", "x"], "N: a rate is above 0"),
        (["rate", "backfill", "abc", "--why", "x"], "N: a rate is a number"),
        (["stop", "backfill", "--why", "x"], "job 'stop': not a job command"),
        (["set", "backfill", "--state", "halt", "--why", "x"], "--state: a job state is one of"),
        (["pause", "Back_Fill", "--why", "x"], "JOB: a job name is"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    control: tuple[Engine, dict[str, str]], args: list[str], message: str
) -> None:
    engine, env = control
    MariaDbJobBoard(engine).set_control("backfill", "ops", "before", state=JobState.PAUSE, rate=9)
    before = rows(engine)
    ran = cli(env, *args)
    assert ran.returncode == 2, (ran.returncode, ran.stdout, ran.stderr)
    assert ran.stderr.startswith(f"chat-migrate: {message}"), ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1 and ran.stdout == ""
    assert rows(engine) == before


def test_a_control_database_made_before_the_job_tables_gets_them(
    control: tuple[Engine, dict[str, str]],
) -> None:
    engine, env = control
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE job_controls"))
        conn.execute(text("DROP TABLE job_reports"))
    ran = cli(env, "pause", "repair", "--why", "after an upgrade")
    assert ran.returncode == 0, ran.stderr
    assert "job repair: pause" in ran.stdout
    assert MariaDbJobBoard(engine).control("repair").who == WHO


def test_a_control_store_that_cannot_be_reached_is_exit_4(
    control: tuple[Engine, dict[str, str]],
) -> None:
    _, env = control
    ran = cli(env | {"MIG_MARIADB_PORT": "1"}, "pause", "backfill", "--why", "x")
    assert ran.returncode == 4, ran.stderr
    assert ran.stderr.startswith("chat-migrate: unavailable: control store")
