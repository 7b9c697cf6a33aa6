"""The MariaDB control store holds the PhaseStore contract on the real MariaDB, and refuses what
this version cannot read with the table, the row and the reason.

One scratch control database (`migration_control_test_...`) for the session, emptied before
each test; dropped at the end. MariaDB missing is a failure, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert, text, update

from gateway.adapters.mariadb.control_schema import (
    SCHEMA_VERSION,
    control_engine,
    control_meta,
    ensure_schema,
    metadata,
    phase_transitions,
    room_phases,
)
from gateway.adapters.mariadb.phase_store import MariaDbPhaseStore
from gateway.domain.phases import Phase
from gateway.errors import ControlStoreMisconfigured, ControlStoreUnavailable
from gateway.ports import PhaseStore
from legacy_adapters.adapters.mariadb.engine import make_engine
from legacy_adapters.settings import LegacyDatabaseSettings
from tests.contracts.phase_store import WHO, PhaseStoreContract, fresh_room
from tests.support.control_db import scratch_control_database, server_settings
from tests.support.scratch_db import scratch_database
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def control_db(stack: Stack) -> Iterator[tuple[LegacyDatabaseSettings, str]]:
    with scratch_control_database(stack) as found:
        yield found


@pytest.fixture
def control(control_db: tuple[LegacyDatabaseSettings, str]) -> Iterator[Engine]:
    """An engine on the scratch control database, emptied and its schema ensured anew."""
    server, name = control_db
    engine = control_engine(server, name)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            conn.execute(text(f"TRUNCATE TABLE `{table.name}`"))
    ensure_schema(engine)
    yield engine
    engine.dispose()


class TestMariaDbPhaseStore(PhaseStoreContract):
    @pytest.fixture
    def store(self, control: Engine) -> Iterator[PhaseStore]:
        store = MariaDbPhaseStore(control)
        yield store
        store.close()


def test_an_unknown_phase_written_by_hand_is_misconfigured_naming_the_row(
    control: Engine,
) -> None:
    store = MariaDbPhaseStore(control)
    room = fresh_room()
    with control.begin() as conn:
        conn.execute(insert(room_phases).values(room_id=room, phase="new_primery"))
    reason = f"table room_phases, room_id={room}: unknown phase 'new_primery'"
    with pytest.raises(ControlStoreMisconfigured, match=reason):
        store.room(room)
    with pytest.raises(ControlStoreMisconfigured, match=reason):
        store.snapshot()
    with pytest.raises(ControlStoreMisconfigured, match=reason):
        store.rooms()
    with pytest.raises(ControlStoreMisconfigured, match=reason):
        store.move([room], Phase.DUAL_WRITE, WHO, "on a bad row")
    assert store.room(fresh_room()).phase == Phase.LEGACY  # other rooms still read


def test_an_unknown_phase_in_the_timeline_names_its_row(control: Engine) -> None:
    store = MariaDbPhaseStore(control)
    room = fresh_room()
    store.move([room], Phase.DUAL_WRITE, WHO, "start")
    with control.begin() as conn:
        conn.execute(update(phase_transitions).values(to_phase="dual-write"))
        row_id = conn.execute(text("SELECT MAX(id) FROM phase_transitions")).scalar_one()
    with pytest.raises(
        ControlStoreMisconfigured,
        match=f"table phase_transitions, id={row_id}: unknown phase 'dual-write'",
    ):
        store.timeline(room, 10)


def test_a_schema_of_another_version_is_misconfigured(control: Engine) -> None:
    store = MariaDbPhaseStore(control)
    with control.begin() as conn:
        conn.execute(update(control_meta).values(schema_version=SCHEMA_VERSION + 1))
    message = f"table control_meta, row id=1: schema version {SCHEMA_VERSION + 1}"
    for call in (store.revision, store.snapshot, store.kill_switch):
        with pytest.raises(ControlStoreMisconfigured, match=message):
            call()
    with pytest.raises(ControlStoreMisconfigured, match=message):
        ensure_schema(control)
    with pytest.raises(ControlStoreMisconfigured, match=message):
        store.move([fresh_room()], Phase.DUAL_WRITE, WHO, "refused")


def test_a_database_without_the_schema_is_misconfigured_naming_the_table(
    control_db: tuple[LegacyDatabaseSettings, str],
) -> None:
    server, name = control_db
    empty = f"{name}_empty"
    admin = make_engine(server)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{empty}`"))
    store = MariaDbPhaseStore(control_engine(server, empty))
    try:
        with pytest.raises(ControlStoreMisconfigured, match="control_meta' doesn't exist"):
            store.revision()
        with pytest.raises(ControlStoreMisconfigured, match="room_phases' doesn't exist"):
            store.room(1)
    finally:
        store.close()
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{empty}`"))
        admin.dispose()


def test_a_missing_database_is_misconfigured(
    control_db: tuple[LegacyDatabaseSettings, str],
) -> None:
    server, name = control_db
    store = MariaDbPhaseStore(control_engine(server, f"{name}_never_made"))
    try:
        with pytest.raises(ControlStoreMisconfigured, match="Unknown database"):
            store.revision()
    finally:
        store.close()


def test_an_unreachable_server_is_unavailable(
    control_db: tuple[LegacyDatabaseSettings, str],
) -> None:
    server, name = control_db
    store = MariaDbPhaseStore(control_engine(server.model_copy(update={"mariadb_port": 1}), name))
    try:
        with pytest.raises(ControlStoreUnavailable, match="control store, revision"):
            store.revision()
        with pytest.raises(ControlStoreUnavailable, match="control store, move"):
            store.move([fresh_room()], Phase.DUAL_WRITE, WHO, "down")
    finally:
        store.close()


def test_ensure_schema_is_idempotent_and_keeps_what_is_recorded(control: Engine) -> None:
    store = MariaDbPhaseStore(control)
    room = fresh_room()
    store.move([room], Phase.DUAL_WRITE, WHO, "start")
    revision, timeline = store.revision(), store.timeline(room, 10)
    ensure_schema(control)
    ensure_schema(control)
    assert store.revision() == revision
    assert store.timeline(room, 10) == timeline


def test_a_second_store_on_the_same_database_sees_every_change(
    control_db: tuple[LegacyDatabaseSettings, str], control: Engine
) -> None:
    """Two gateways share the store: one moves, the other's next poll sees it."""
    server, name = control_db
    one = MariaDbPhaseStore(control)
    other = MariaDbPhaseStore(control_engine(server, name))
    try:
        room = fresh_room()
        seen = other.revision()
        report = one.move([room], Phase.DUAL_WRITE, WHO, "start")
        assert other.revision() != seen
        assert other.snapshot().phase_of(room) == Phase.DUAL_WRITE
        assert other.timeline(room, 10) == report.moved
    finally:
        other.close()


def test_ensure_schema_refuses_the_monolith_database(stack: Stack) -> None:
    with scratch_database(stack) as (_, monolith):
        with pytest.raises(ControlStoreMisconfigured, match="holds the monolith's tables"):
            ensure_schema(monolith)
        with monolith.connect() as conn:
            tables = set(conn.execute(text("SHOW TABLES")).scalars())
        assert "messages" in tables and "control_meta" not in tables


def test_the_control_engine_refuses_the_monolith_database_name(stack: Stack) -> None:
    server = server_settings(stack)
    with pytest.raises(ValueError, match="is the monolith's"):
        control_engine(server, server.db_name)
    with pytest.raises(ValueError, match="letters, digits and _"):
        control_engine(server, "control; DROP")
