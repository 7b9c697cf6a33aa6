"""The seeder against real MariaDB, each test in a scratch database (the demo data stays).

The resume test kills `chat-seed` with SIGKILL in the middle of a run, runs it again, and
compares every table with an uninterrupted run of the same plan.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import Engine, text

from legacy_adapters.service.seeding.history import History
from legacy_adapters.service.seeding.loader import SeedRefused, seed
from legacy_adapters.service.seeding.world import SeedPlan, build_world
from legacy_adapters.settings import LegacyDatabaseSettings
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack

TABLES = ("messages", "room_cursors", "room_members", "rooms", "api_tokens", "accounts")


def checksums(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.exec_driver_sql(f"CHECKSUM TABLE {t}").one()[1] for t in TABLES}


def count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_seeds_the_plan_with_cursors_and_quirks(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    _, engine = scratch
    world = build_world(SeedPlan.sized(45_000, seed=5))
    outcome = seed(engine, world, lambda n: None)
    assert (outcome.inserted, outcome.skipped, outcome.already_done) == (45_000, 0, False)
    assert count(engine, "SELECT COUNT(*) FROM messages") == 45_000
    assert count(engine, "SELECT COUNT(*) FROM rooms") == len(world.rooms) + sum(
        1 for a in world.accounts if not a.withdrawn
    )
    assert count(engine, "SELECT COUNT(*) FROM room_cursors") > 0
    assert (
        count(engine, "SELECT COUNT(*) FROM messages WHERE created_at = '0000-00-00 00:00:00'") > 0
    )
    assert count(engine, "SELECT COUNT(*) FROM messages WHERE body_raw IS NOT NULL") > 0
    assert count(engine, "SELECT COUNT(*) FROM messages WHERE message_id >= 100000000000000000") > 0
    # Messages from withdrawn accounts stay, their account rows do not.
    assert (
        count(
            engine,
            "SELECT COUNT(*) FROM messages m LEFT JOIN accounts a ON a.account_id = m.account_id"
            " WHERE a.account_id IS NULL",
        )
        > 0
    )
    # Every utf8mb4 body (emoji included) comes back exactly as generated.
    with engine.connect() as conn:
        bodies = (
            conn.execute(text("SELECT body FROM messages WHERE body IS NOT NULL")).scalars().all()
        )
    history = History(world)
    expected = {
        row[3] for i in range(history.chunk_count) for row in history.chunk(i).rows if row[3]
    }
    assert set(bodies) == expected


def test_a_finished_plan_is_not_repeated_and_another_plan_is_refused(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    _, engine = scratch
    world = build_world(SeedPlan.sized(5_000, seed=1))
    seed(engine, world, lambda n: None)
    before = checksums(engine)
    assert seed(engine, world, lambda n: None).already_done
    assert checksums(engine) == before
    with pytest.raises(SeedRefused, match="another seeded data set"):
        seed(engine, build_world(SeedPlan.sized(5_000, seed=2)), lambda n: None)


def run_seed_cli(settings: LegacyDatabaseSettings, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MIG_DB_NAME": settings.db_name,
        "MIG_MARIADB_PORT": str(settings.mariadb_port),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "legacy_adapters.entrypoints.seed_cli", "--quiet", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


def test_killed_run_resumes_to_the_same_tables(
    stack: Stack, scratch: tuple[LegacyDatabaseSettings, Engine]
) -> None:
    settings, engine = scratch
    args = ("--messages", "160000", "--seed", "3")
    victim = run_seed_cli(settings, *args)
    deadline = time.monotonic() + 60
    while count(engine, "SELECT COUNT(*) FROM messages") < 40_000:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the seeder wrote nothing in 60 s"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    partial = count(engine, "SELECT COUNT(*) FROM messages")
    assert 40_000 <= partial < 160_000

    resumed = run_seed_cli(settings, *args)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err.decode()
    assert f"({partial} already there)" in out.decode()

    with scratch_database(stack) as (_, reference):
        seed(reference, build_world(SeedPlan.sized(160_000, seed=3)), lambda n: None)
        assert checksums(engine) == checksums(reference)


def test_sqlalchemy_over_pymysql_reads_committed_and_speaks_utf8mb4(
    scratch: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    _, engine = scratch
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO accounts (account_id, name) VALUES (:id, :name)"),
            {"id": 7, "name": "絵文字 😀 テスト"},
        )
    with engine.connect() as conn:
        isolation = conn.execute(text("SELECT @@tx_isolation")).scalar_one()
        name = conn.execute(
            text("SELECT name FROM accounts WHERE account_id = :id"), {"id": 7}
        ).scalar_one()
    assert isolation == "READ-COMMITTED"
    assert name == "絵文字 😀 テスト"
