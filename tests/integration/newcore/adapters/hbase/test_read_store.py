"""The HBase read store holds the ReadStore contract, on the real HBase through Thrift."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import happybase
import pytest

from newcore.adapters.hbase import schema
from newcore.adapters.hbase.read_store import HBaseReadStore, drop_tables, ensure_tables
from newcore.domain.events import MessageUpserted
from newcore.domain.model import Message
from newcore.entrypoints import read_model_init
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


def test_init_is_idempotent_and_keeps_one_version(hbase_settings: HBaseSettings) -> None:
    assert ensure_tables(hbase_settings) == []
    connection = happybase.Connection(
        hbase_settings.host, hbase_settings.thrift_port, table_prefix=hbase_settings.table_prefix
    )
    try:
        for table, families in schema.FAMILIES.items():
            described = connection.table(table).families()
            for family in families:
                assert described[family.encode()]["max_versions"] == 1
    finally:
        connection.close()


def test_one_room_is_contiguous_under_its_salt(hbase_settings: HBaseSettings) -> None:
    """The row key layout: a room's messages are one key range, ordered by id."""
    store = HBaseReadStore(hbase_settings)
    room = 4242
    store.apply(
        [MessageUpserted(Message(room, mid, 1, "x", 1, 0), 1, 1) for mid in (5, 300, 2**40)]
    )
    connection = happybase.Connection(
        hbase_settings.host, hbase_settings.thrift_port, table_prefix=hbase_settings.table_prefix
    )
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
    assert "bad setting: table_prefix" in capsys.readouterr().err
    monkeypatch.setenv("MIG_HBASE_TABLE_PREFIX", "chat")
    monkeypatch.setenv("MIG_HBASE_THRIFT_PORT", "1")
    assert read_model_init.main([]) == 4
    assert "Is HBase up?" in capsys.readouterr().err
