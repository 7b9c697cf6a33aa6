"""Smoke test of the real HBase through its Thrift 1 server, spoken to with happybase.

Runs against the server started by `deploy/hbase.sh start` (MIG_HBASE_THRIFT_PORT, default 9090).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import happybase
import pytest

from tests.support.stack import Stack, require_port

pytestmark = pytest.mark.services


@pytest.fixture
def connection(stack: Stack) -> Iterator[Any]:
    require_port("HBase Thrift", stack.host, stack.hbase_thrift_port)
    conn: Any = happybase.Connection(host=stack.host, port=stack.hbase_thrift_port, timeout=30_000)
    try:
        yield conn
    finally:
        conn.close()


def test_table_put_get_scan_batch_delete(connection: Any) -> None:
    name = f"smoke_{uuid.uuid4().hex[:12]}"
    table_name = name.encode()
    assert table_name not in connection.tables()
    connection.create_table(name, {"m": {"max_versions": 1}, "x": {}})
    try:
        assert table_name in connection.tables()
        table: Any = connection.table(name)
        assert set(table.families()) == {b"m", b"x"}

        table.put(b"user:0001", {b"m:body": b"hello", b"x:lang": b"en"})
        row: dict[bytes, bytes] = table.row(b"user:0001")
        assert row == {b"m:body": b"hello", b"x:lang": b"en"}
        assert table.row(b"user:0001", columns=[b"m"]) == {b"m:body": b"hello"}
        assert table.row(b"user:missing") == {}

        # Overwrite: with max_versions 1 the newest value is the one returned.
        table.put(b"user:0001", {b"m:body": b"hello again"})
        assert table.row(b"user:0001")[b"m:body"] == b"hello again"

        with table.batch(batch_size=50) as batch:
            for i in range(2, 122):
                batch.put(f"user:{i:04d}".encode(), {b"m:body": f"msg {i}".encode()})
            for i in range(10):
                batch.put(f"room:{i:04d}".encode(), {b"m:title": f"room {i}".encode()})

        users: list[tuple[bytes, dict[bytes, bytes]]] = list(table.scan(row_prefix=b"user:"))
        keys = [key for key, _ in users]
        assert len(keys) == 121
        assert keys == sorted(keys), "a scan returns rows in key order"
        assert keys[0] == b"user:0001"
        assert keys[-1] == b"user:0121"
        assert dict(users)[b"user:0077"] == {b"m:body": b"msg 77"}

        rooms = [key for key, _ in table.scan(row_prefix=b"room:")]
        assert rooms == [f"room:{i:04d}".encode() for i in range(10)]

        table.delete(b"room:0003")
        assert table.row(b"room:0003") == {}
        assert len(list(table.scan(row_prefix=b"room:"))) == 9
    finally:
        connection.delete_table(name, disable=True)
    assert table_name not in connection.tables()
