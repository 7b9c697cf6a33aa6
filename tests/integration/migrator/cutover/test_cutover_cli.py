"""`chat-migrate cutover`, `rollback`, `kill-switch` and `status` with their real wiring
(`MigratorSettings.from_env`, `migrator/bootstrap.py`): a scratch monolith database with 60
rooms and a scratch control database on the real MariaDB. The console script runs as its own
process for the first and the failing calls; the others run the same app in this process
through `run_guarded` (the same wiring, read from the environment), to keep the module fast.

MariaDB missing is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from gateway.adapters.mariadb.control_schema import control_engine
from gateway.adapters.mariadb.phase_store import MariaDbPhaseStore
from gateway.domain.phases import Phase, bucket
from gateway.domain.shadow_record import ShadowCounts
from migrator.entrypoints.cli import app
from migrator.entrypoints.failures import run_guarded
from tests.support.control_db import scratch_control_database
from tests.support.scratch_db import scratch_database
from tests.support.stack import REPO, Stack

ROOMS = list(range(1001, 1061))
CHAT_MIGRATE = str(REPO / ".venv" / "bin" / "chat-migrate")
L, DW, SR = Phase.LEGACY, Phase.DUAL_WRITE, Phase.SHADOW_READ


@dataclass
class Ran:
    code: int
    out: str
    err: str


@dataclass
class World:
    env: dict[str, str]
    store: MariaDbPhaseStore


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    with (
        scratch_database(stack) as (monolith, engine),
        scratch_control_database(stack) as (
            _,
            control_db,
        ),
    ):
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO rooms (room_id, name, type) VALUES (%s, %s, 'group')",
                [(room, f"room {room}") for room in ROOMS],
            )
        env = {
            "MIG_MARIADB_HOST": stack.host,
            "MIG_MARIADB_PORT": str(stack.mariadb_port),
            "MIG_DB_NAME": monolith.db_name,
            "MIG_DB_USER": stack.db_user,
            "MIG_DB_PASSWORD": stack.db_password,
            "MIG_CONTROL_DB_NAME": control_db,
            "MIG_MIGRATOR_WHO": "ops:integration",
            "MIG_PARITY_MAX_AGE_S": "7200",
        }
        store = MariaDbPhaseStore(control_engine(monolith, control_db))
        try:
            yield World(env, store)
        finally:
            store.close()


def script(world: World, *args: str) -> Ran:
    """The console script, a process of its own."""
    done = subprocess.run(
        [CHAT_MIGRATE, *args], env={**os.environ, **world.env}, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Ran]]:
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> Ran:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["chat-migrate", *args])
        code = run_guarded(app)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    yield run


def test_the_console_script_moves_rooms_recording_who_and_why(world: World) -> None:
    ran = script(world, "cutover", "1001,1002", "--to", "dual_write", "--why", "MIG-7 first")
    assert ran.code == 0, ran.err
    assert "moved legacy -> dual_write (2): 1001, 1002" in ran.out
    assert [world.store.room(r).phase for r in (1001, 1002, 1003)] == [DW, DW, L]
    (moved,) = world.store.timeline(1001, 5)
    assert (moved.who, moved.why) == ("ops:integration", "MIG-7 first")


def test_unknown_rooms_percent_steps_dry_run_rollback_kill_switch_and_status(
    world: World, cli: Callable[..., Ran]
) -> None:
    run = cli
    store = world.store
    revision = store.revision()
    ran = run("cutover", "1003,99999", "--to", "dual_write", "--why", "typo")
    assert ran.code == 2
    assert "unknown room(s) 99999: not rooms of the monolith" in ran.err
    assert store.revision() == revision and store.room(1003).phase == L

    for step in ("1%", "10%", "100%"):
        ran = run("cutover", step, "--to", "dual_write", "--why", f"wave {step}", "--json")
        assert ran.code == 0, ran.err
        inside = {r for r in ROOMS if store.room(r).phase == DW}
        expected = {r for r in ROOMS if bucket(r) < float(step[:-1]) * 100} | {1001, 1002}
        assert inside == expected, step
    assert {r.room_id for r in store.rooms(DW)} == set(ROOMS)

    store.mark_backfilled(1005, "backfill")
    revision = store.revision()
    ran = run("cutover", "1005,1006", "--to", "shadow_read", "--why", "try", "--dry-run")
    assert ran.code == 0, ran.err
    assert "would be moved dual_write -> shadow_read (1): 1005" in ran.out
    assert "refused (1): 1006\n    because shadow_read needs the room's backfill done" in ran.out
    assert store.revision() == revision and store.room(1005).phase == DW

    assert run("cutover", "1005", "--to", "shadow_read", "--why", "backfilled").code == 0
    store.record_shadow({1005: ShadowCounts(same=4, late=1)})
    ran = run("cutover", "1005", "--to", "new_primary", "--why", "go")
    assert ran.code == 2
    assert "a clean parity check of the room within 2 h (none is recorded)" in ran.out
    assert "shadow" not in ran.out.split("because", 1)[1]  # the shadow record is clean

    ran = run("rollback", "1005,1006", "--to", "legacy", "--why", "incident 9", "--json")
    assert ran.code == 0, ran.err
    answer = json.loads(ran.out)
    assert {(m["room_id"], m["from"]) for m in answer["moved"]} == {
        (1005, "shadow_read"), (1006, "dual_write"),
    }  # fmt: skip
    assert "only moves forward" in run("cutover", "1006,1007", "--to", "legacy", "--why", "x").out

    assert run("kill-switch", "on", "--why", "incident 10").code == 0
    assert store.snapshot().kill_switch is True
    assert "kill switch ON" in run("kill-switch", "show").out
    assert run("kill-switch", "off", "--why", "over").code == 0

    answer = json.loads(run("status", "--json", "--rooms", "100").out)
    assert answer["rooms_listed"] == len(ROOMS)
    assert answer["rooms_by_phase"]["dual_write"] == len(ROOMS) - 2
    assert answer["rooms_by_phase"]["legacy"] == 2
    assert answer["backfilled_rooms"] == 1
    room = next(r for r in answer["rooms"] if r["room_id"] == 1005)
    assert room["shadow"]["same"] == 4 and room["backfilled_at"] is not None
    actions = answer["recent_actions"]
    assert actions[0]["kill_switch_on"] is False and actions[1]["kill_switch_on"] is True
    assert {(a["room_id"], a["to"]) for a in actions[2:4]} == {(1005, "legacy"), (1006, "legacy")}
    assert all(a["who"] == "ops:integration" for a in actions)
    assert "last operator actions (newest first):" in run("status").out


def test_a_store_it_cannot_reach_is_exit_4_without_a_traceback(
    cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIG_MARIADB_PORT", "1")
    ran = cli("status")
    assert ran.code == 4
    assert "chat-migrate: unavailable: control store" in ran.err and "Traceback" not in ran.err
