"""The MariaDB adapters of the backfill on the real MariaDB: the checkpoint store (and job
locks) and the room history hold their contracts; a job's lock dies with its connection; the
health probe measures the monolith's hot read and Threads_running.

Scratch databases only (a control database `migration_control_test_...`, a monolith database
`chat_test_...`), dropped afterwards. MariaDB missing is a failure, never a skip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text

from gateway.adapters.mariadb.control_schema import control_engine
from gateway.ports import ControlStoreMisconfigured, ControlStoreUnavailable
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.settings import LegacyDatabaseSettings
from migrator.adapters.mariadb.checkpoints import (
    TABLE,
    MariaDbCheckpointStore,
    ensure_checkpoints,
)
from migrator.adapters.mariadb.health import MariaDbMonolithHealth
from migrator.adapters.mariadb.history import MariaDbRoomHistory
from migrator.errors import JobRunning
from newcore.errors import MonolithUnavailable
from tests.contracts.checkpoint_store import CheckpointStoreContract, Store, fresh_job
from tests.contracts.room_history import RoomHistoryContract, World
from tests.support.control_db import scratch_control_database
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def control(stack: Stack) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one scratch control database, as two processes would have them."""
    with scratch_control_database(stack) as (server, name):
        one = control_engine(server, name, pool_size=4)
        other = control_engine(server, name, pool_size=4)
        ensure_checkpoints(one)
        ensure_checkpoints(other)  # idempotent, from another "process" too
        try:
            yield one, other
        finally:
            one.dispose()
            other.dispose()


class TestMariaDbCheckpointStore(CheckpointStoreContract):
    @pytest.fixture
    def stores(self, control: tuple[Engine, Engine]) -> tuple[Store, Store]:
        with control[0].begin() as conn:
            conn.execute(text(f"DELETE FROM {TABLE}"))
        return MariaDbCheckpointStore(control[0]), MariaDbCheckpointStore(control[1])


def test_a_killed_holder_frees_its_job(control: tuple[Engine, Engine]) -> None:
    """kill -9 of a running job ends its session: the server releases its lock, so the next
    run is never refused by a dead one; the lease of a lost session says so when checked."""
    one, other = MariaDbCheckpointStore(control[0]), MariaDbCheckpointStore(control[1])
    job = fresh_job()
    with one.hold(job) as lease:
        with control[1].connect() as conn:
            holder = conn.execute(
                text("SELECT IS_USED_LOCK(:name)"), {"name": one.lock_name(job)}
            ).scalar()
            assert holder is not None
            with pytest.raises(JobRunning, match=str(holder)), other.hold(job):
                pass
            conn.execute(text(f"KILL CONNECTION {int(holder)}"))
        deadline = time.monotonic() + 10
        while True:
            try:
                with other.hold(job):
                    break
            except JobRunning:
                assert time.monotonic() < deadline, "the lock outlived its connection"
                time.sleep(0.1)
        with pytest.raises(ControlStoreUnavailable, match="lost its hold"):
            lease.check()


def test_a_lock_name_belongs_to_the_database_and_the_job(control: tuple[Engine, Engine]) -> None:
    store = MariaDbCheckpointStore(control[0])
    assert store.lock_name("backfill") != store.lock_name("backfill2")
    assert len(store.lock_name("x" * 128)) <= 64


def test_a_missing_table_is_misconfigured_and_a_foreign_one_refused(stack: Stack) -> None:
    with scratch_control_database(stack) as (server, name):
        engine = control_engine(server, name, pool_size=1)
        try:
            with pytest.raises(ControlStoreMisconfigured, match=TABLE):
                MariaDbCheckpointStore(engine).load("backfill")
            with engine.begin() as conn:
                conn.execute(text(f"CREATE TABLE {TABLE} (job VARCHAR(10) PRIMARY KEY)"))
            with pytest.raises(ControlStoreMisconfigured, match="kind, saved_at, state"):
                ensure_checkpoints(engine)
        finally:
            engine.dispose()


def test_an_unreachable_store_is_unavailable(stack: Stack) -> None:
    server = LegacyDatabaseSettings(
        mariadb_host=stack.host, mariadb_port=1, db_name="chat", db_user=stack.db_user,
        db_password=SecretStr(stack.db_password),
    )  # fmt: skip
    engine = control_engine(server, "migration_control_test_nowhere", pool_size=1)
    try:
        store = MariaDbCheckpointStore(engine)
        with pytest.raises(ControlStoreUnavailable):
            store.save("backfill", "backfill", "{}")
        with pytest.raises(ControlStoreUnavailable), store.hold("backfill"):
            pass
    finally:
        engine.dispose()


# -- the monolith's side ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def monolith(stack: Stack) -> Iterator[tuple[LegacyDatabaseSettings, Engine]]:
    with scratch_database(stack) as found:
        yield found


def top_message_id(engine: Engine) -> int:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT COALESCE(MAX(message_id), 0) FROM messages")).scalar()
    return int(found or 0)


class SqlRows:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def room(self) -> int:
        with self._engine.begin() as conn:
            result = conn.execute(text("INSERT INTO rooms (name) VALUES ('r')"))
            return int(result.lastrowid)

    def message(
        self, room_id: int, message_id: int, send_time: int | None, deleted: int = 0
    ) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO messages (message_id, room_id, account_id, body, send_time,"
                    " update_time, deleted) VALUES (:m, :r, 1, 'b', :s, 0, :d)"
                ),
                {"m": message_id, "r": room_id, "s": send_time, "d": deleted},
            )

    def purge(self, message_id: int) -> None:
        with self._engine.begin() as conn:
            conn.execute(text("DELETE FROM messages WHERE message_id = :m"), {"m": message_id})


class TestMariaDbRoomHistory(RoomHistoryContract):
    @pytest.fixture
    def world(self, monolith: tuple[LegacyDatabaseSettings, Engine]) -> World:
        engine = monolith[1]
        base = top_message_id(engine)
        # Small pages, so that the paging of counts and walks is exercised too.
        history = MariaDbRoomHistory(engine, count_page=2, walk_page=2)
        return World(history, SqlRows(engine), base=base + 1000)


def test_the_fingerprint_names_the_server_and_the_schema(
    monolith: tuple[LegacyDatabaseSettings, Engine], stack: Stack
) -> None:
    settings, engine = monolith
    found = MariaDbRoomHistory(engine).fingerprint()
    assert found.startswith("mariadb:") and found.endswith(f"/{settings.db_name}")
    shared = make_engine(settings.model_copy(update={"db_name": stack.db_name}), pool_size=1)
    try:
        other = MariaDbRoomHistory(shared).fingerprint()
    finally:
        shared.dispose()
    assert other != found and other.split("/")[0] == found.split("/")[0]


def test_the_probe_reads_the_newest_room_and_threads_running(
    monolith: tuple[LegacyDatabaseSettings, Engine],
) -> None:
    engine = monolith[1]
    rows = SqlRows(engine)
    room = rows.room()
    top = top_message_id(engine)
    for offset in range(1, 151):
        rows.message(room, top + offset, 1_700_000_000)
    health = MariaDbMonolithHealth(engine)
    sample = health.sample()
    assert health.probe_room == room
    assert 0 < sample.probe_ms < 5000
    assert sample.threads_running >= 1


def test_an_unreachable_monolith_is_unavailable(stack: Stack) -> None:
    settings = LegacyDatabaseSettings(
        mariadb_host=stack.host, mariadb_port=1, db_name="chat", db_user=stack.db_user,
        db_password=SecretStr(stack.db_password),
    )  # fmt: skip
    engine = make_engine(settings, pool_size=1)
    try:
        with pytest.raises(MonolithUnavailable):
            MariaDbMonolithHealth(engine).sample()
        with pytest.raises(MonolithUnavailable):
            MariaDbRoomHistory(engine).bounds(1)
        with pytest.raises(MonolithUnavailable):
            MariaDbRoomHistory(engine).fingerprint()
    finally:
        engine.dispose()
