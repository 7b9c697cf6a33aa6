"""The HBase read store holds the ReadStore contract, on the real HBase through Thrift."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import happybase
import pytest

from newcore.adapters.hbase import cell, schema
from newcore.adapters.hbase.read_store import (
    HBaseReadStore,
    drop_tables,
    ensure_tables,
)
from newcore.domain.events import MessageUpserted
from newcore.domain.model import Message
from newcore.entrypoints import read_model_init
from newcore.errors import ReadStoreMisconfigured, UnreadableCell
from newcore.ports import ReadStore, ReadStoreUnavailable
from newcore.settings import HBaseSettings
from tests.contracts.read_store import ReadStoreContract
from tests.support.stack import Stack, require_port


@pytest.fixture(scope="module")
def hbase_settings(stack: Stack) -> Iterator[HBaseSettings]:
    """Tables of our own for this run (a prefix per run), dropped afterwards."""
    require_port("HBase Thrift", stack.host, stack.hbase_thrift_port)
    settings = HBaseSettings(
        host=stack.host,
        thrift_port=stack.hbase_thrift_port,
        table_prefix=f"test_{uuid.uuid4().hex[:8]}",
    )
    assert sorted(ensure_tables(settings)) == sorted(
        f"{settings.table_prefix}_{name}" for name in schema.FAMILIES
    )
    try:
        yield settings
    finally:
        drop_tables(settings)


class TestHBaseReadStore(ReadStoreContract):
    @pytest.fixture
    def store(self, hbase_settings: HBaseSettings) -> Iterator[ReadStore]:
        self._settings = hbase_settings
        store = HBaseReadStore(hbase_settings)
        yield store
        store.close()

    def reopen(self, store: ReadStore) -> ReadStore:
        store.close()
        return HBaseReadStore(self._settings)


def connect(settings: HBaseSettings) -> happybase.Connection:
    return happybase.Connection(
        settings.host, settings.thrift_port, table_prefix=settings.table_prefix
    )


def test_init_is_idempotent_and_keeps_one_version(hbase_settings: HBaseSettings) -> None:
    assert ensure_tables(hbase_settings) == []
    connection = connect(hbase_settings)
    try:
        for table, families in schema.FAMILIES.items():
            described = connection.table(table).families()
            for family in families:
                assert described[family.encode()]["max_versions"] == 1
    finally:
        connection.close()


def test_tables_are_created_with_one_region_per_salt(hbase_settings: HBaseSettings) -> None:
    connection = connect(hbase_settings)
    try:
        for table in schema.FAMILIES:
            regions = connection.table(table).regions()
            assert [(r["start_key"], r["end_key"]) for r in regions] == [
                (bytes([salt]) if salt else b"", bytes([salt + 1]) if salt < 15 else b"")
                for salt in range(schema.SALT_BUCKETS)
            ]
    finally:
        connection.close()


def test_a_table_not_split_at_the_salts_is_refused(stack: Stack) -> None:
    """A table made another way (by hand, or before the packed cell) is not used."""
    settings = HBaseSettings(
        host=stack.host, thrift_port=stack.hbase_thrift_port,
        table_prefix=f"test_{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    connection = connect(settings)
    try:
        for table, families in schema.FAMILIES.items():
            connection.create_table(table, families)
        with pytest.raises(ReadStoreMisconfigured, match=r"no region starting at 01, 02, .*, 0f"):
            ensure_tables(settings)
    finally:
        connection.close()
        drop_tables(settings)


def test_a_cell_this_reader_cannot_read_fails_the_read(hbase_settings: HBaseSettings) -> None:
    """A newer writer's version (or damage) is never skipped: the read fails, naming it."""
    room = 4343
    store = HBaseReadStore(hbase_settings)
    store.apply([MessageUpserted(Message(room, mid, 1, "x", 1, 0), 1, 1) for mid in (1, 2, 3)])
    connection = connect(hbase_settings)
    try:
        future = b"\x02" + cell.encode(Message(room, 2, 1, "from a newer writer", 1, 0))[1:]
        connection.table(schema.MESSAGES).put(
            schema.message_key(room, 2), {schema.PACKED: future}, timestamp=2
        )
        for read in (
            lambda: store.message(room, 2),
            lambda: store.latest(room, 10),
            lambda: store.after(room, 0, 10),
        ):
            with pytest.raises(UnreadableCell, match=f"room {room} message 2: unknown version 2"):
                read()
        assert store.message(room, 1) == Message(room, 1, 1, "x", 1, 0)
        assert [m.message_id for m in store.after(room, 2, 10)] == [3]
    finally:
        connection.close()
        store.close()


def test_one_room_is_contiguous_under_its_salt(hbase_settings: HBaseSettings) -> None:
    """The row key layout: a room's messages are one key range, ordered by id."""
    store = HBaseReadStore(hbase_settings)
    room = 4242
    store.apply(
        [MessageUpserted(Message(room, mid, 1, "x", 1, 0), 1, 1) for mid in (5, 300, 2**40)]
    )
    connection = connect(hbase_settings)
    try:
        keys = [
            key
            for key, _ in connection.table(schema.MESSAGES).scan(
                row_prefix=schema.room_prefix(room)
            )
        ]
    finally:
        connection.close()
        store.close()
    assert keys == [schema.message_key(room, mid) for mid in (5, 300, 2**40)]
    assert all(key[0] == schema.salt(room) < schema.SALT_BUCKETS for key in keys)


def test_hbase_down_is_read_store_unavailable(stack: Stack) -> None:
    store = HBaseReadStore(HBaseSettings(host=stack.host, thrift_port=1, timeout_ms=2000))
    with pytest.raises(ReadStoreUnavailable, match=r"HBase Thrift at 127\.0\.0\.1:1\b"):
        store.message(1, 1)
    with pytest.raises(ReadStoreUnavailable):
        store.apply([MessageUpserted(Message(1, 1, 1, "x", 1, 0), 1, 1)])


def test_init_command_creates_then_finds_the_tables(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_port("HBase Thrift", stack.host, stack.hbase_thrift_port)
    prefix = f"test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MIG_HBASE_TABLE_PREFIX", prefix)
    monkeypatch.setenv("MIG_HBASE_THRIFT_PORT", str(stack.hbase_thrift_port))
    try:
        assert read_model_init.main([]) == 0
        assert capsys.readouterr().out.strip() == (
            f"chat-read-model-init: created {prefix}_messages, {prefix}_cursors"
        )
        assert read_model_init.main([]) == 0
        assert "already there" in capsys.readouterr().out
    finally:
        drop_tables(
            HBaseSettings(host=stack.host, thrift_port=stack.hbase_thrift_port, table_prefix=prefix)
        )


def test_init_command_names_bad_settings_and_a_missing_hbase(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIG_HBASE_TABLE_PREFIX", "no spaces please")
    assert read_model_init.main([]) == 2
    err = capsys.readouterr().err
    assert "bad setting" in err and "table_prefix" in err.lower()  # the field or its variable
    monkeypatch.setenv("MIG_HBASE_TABLE_PREFIX", "chat")
    monkeypatch.setenv("MIG_HBASE_THRIFT_PORT", "1")
    assert read_model_init.main([]) == 4
    assert "Is HBase up?" in capsys.readouterr().err
